"""Tiny, randomly initialised Longformer and LED checkpoints, for tests that must not download.

The tokenizer is a small byte-level BPE trained on the fly with ``tokenizers`` and saved in the
vocab.json + merges.txt form the real checkpoints use, so the expert loads it exactly as it would
load ``allenai/longformer-base-4096``'s. The window is tiny (``WINDOW`` tokens) so a paragraph is
already "longer than the window" and the chunking path runs.
"""

from __future__ import annotations

from pathlib import Path

WINDOW = 32  # tokens per forward pass, special tokens included
_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_CORPUS = [
    "The committee reviewed the annual report and agreed on the budget for the next year.",
    "Long documents need models that keep context across many paragraphs of prose.",
    "Researchers compared two methods and found that the second one was more reliable.",
    "The contract states the obligations of both parties and the terms of payment.",
    "Summaries should keep the main findings and the relations between them.",
]


def build_tokenizer(folder: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(_CORPUS * 20, vocab_size=400, special_tokens=_SPECIALS)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(folder))


def build_longformer(folder: Path) -> Path:
    """A 2-layer Longformer with a ``WINDOW``-token window; returns the folder."""
    from transformers import LongformerConfig, LongformerModel, LongformerTokenizerFast

    build_tokenizer(folder)
    LongformerTokenizerFast.from_pretrained(str(folder)).save_pretrained(str(folder))
    config = LongformerConfig(
        vocab_size=400,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        attention_window=[8, 8],
        max_position_embeddings=WINDOW + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    LongformerModel(config).save_pretrained(str(folder))
    return folder


def build_led(folder: Path) -> Path:
    """A 1+1-layer LED with a ``WINDOW``-token encoder window; returns the folder."""
    from transformers import LEDConfig, LEDForConditionalGeneration, LEDTokenizerFast

    build_tokenizer(folder)
    LEDTokenizerFast.from_pretrained(str(folder)).save_pretrained(str(folder))
    config = LEDConfig(
        vocab_size=400,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        attention_window=[8],
        max_encoder_position_embeddings=WINDOW,
        max_decoder_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    LEDForConditionalGeneration(config).save_pretrained(str(folder))
    return folder
