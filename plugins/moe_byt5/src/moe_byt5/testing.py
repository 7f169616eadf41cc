"""A tiny, randomly initialised ByT5 checkpoint, for tests that must not download.

ByT5 reads bytes, so the tokenizer needs no files: only the model's config and weights are saved.
"""

from __future__ import annotations

from pathlib import Path


def build_byt5(folder: Path) -> Path:
    """A 2+2-layer T5 over ByT5's 384-entry vocabulary (3 specials, 256 bytes, 125 sentinels);
    returns the folder."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=384,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    import torch

    model = T5ForConditionalGeneration(config)
    with torch.no_grad():
        # Random weights favour no token in particular, so greedy decoding often picks a special
        # or sentinel id, or bytes that are no valid UTF-8, and the answer decodes to nothing.
        # Silencing all but the ASCII rows makes the tiny model answer in text tests can compare.
        model.lm_head.weight[:3] = 0
        model.lm_head.weight[3 + 128 :] = 0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    return folder
