"""Tiny Llamas whose next token is known: real transformers code paths, predictable answers.

A random model's answers cannot show a loop broken, a sentence ended or a penalty applied. The
scripted model's attention and MLP outputs are zeroed, so each step's hidden state is the
current token's embedding, and its output layer maps each token of one sentence to the next
one with logit ``logit``, forever: the loop a small model falls into. Every token of the
sentence also gives the end-of-answer token ``end_logit``, the model's "I could stop here": a
penalty that brings the loop's logit below it ends the answer instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.plugins.moe_domain_llms.conftest import build_tiny_model

SENTENCE = " a mixture of experts routes each request."


def build_looping_model(
    folder: Path, *, logit: float = 3.0, end_logit: float = 2.7, sentence: str = SENTENCE
) -> Path:
    """A model that answers ``sentence`` over and over (see the module docstring)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    build_tiny_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder)
    cycle = tokenizer.encode(sentence)
    assert len(set(cycle)) == len(cycle), "the sentence's tokens must be distinct"
    start, end = tokenizer.convert_tokens_to_ids(["<|assistant|>", "<|end|>"])
    hidden = model.config.hidden_size
    assert len(cycle) + 1 <= hidden
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        # After RMSNorm a unit vector is scaled by sqrt(hidden): divide it out of the head.
        scale = hidden**-0.5
        for position, token in enumerate([start, *cycle]):
            embeddings[token] = torch.nn.functional.one_hot(torch.tensor(position), hidden)
            following = cycle[position % len(cycle)]
            head[following, position] = logit * scale
            head[end, position] = end_logit * scale
    model.generation_config.eos_token_id = end
    model.save_pretrained(folder)
    return folder


def with_context_window(source: str, folder: Path, positions: int) -> Path:
    """A copy of a model folder that says it reads ``positions`` tokens (rope has no limit)."""
    shutil.copytree(source, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = positions
    (folder / "config.json").write_text(json.dumps(config))
    return folder
