"""A tiny randomly initialised Llama and a tokenizer trained on the spot: real code paths, no
download, a second to build. And a tiny domain-query data set that gates train on in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "what is the capital of france? paris is the capital of france.",
    "a mixture of experts routes each request to the model that answers it best",
    "def add(a, b): return a + b",
    "system user assistant hello there, how can i help you today?",
] * 20

# A few words per label: gates trained on questions naming them learn something in seconds.
WORDS = {
    "healthcare": "fever rash migraine insulin cough dizziness",
    "finance": "mortgage pension dividends invoice budget taxes",
    "cybersecurity": "phishing malware ransomware firewall password breach",
    "general": "lasagne football guitar holiday poetry gardening",
}


def write_tiny_queries(folder: Path) -> Path:
    """A data set in the bundled one's format: two questions per word, a third of them ``test``."""
    rows = ["query,label,split"]
    for label, vocabulary in WORDS.items():
        for i, word in enumerate(vocabulary.split() * 2):
            split = "test" if i % 3 == 2 else "train"
            rows.append(f"a question about {word} from me number {i},{label},{split}")
    data = folder / "tiny.csv"
    data.write_text("\n".join(rows) + "\n")
    return data


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<|end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        eos_token_id=None,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    # No end-of-sequence token: a random model would stop at random; without one every answer
    # runs to max_tokens (or a stop sequence), which is what the tests reason about.
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama")))
