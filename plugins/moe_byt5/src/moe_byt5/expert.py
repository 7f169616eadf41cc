"""The ``byt5`` expert: a ByT5-family model (T5 over raw UTF-8 bytes) running in this process.

Two tasks, chosen by the request's ``moe.task_type`` (the ``/process`` API's ``task``):

- ``generate`` (the default; ``process`` is the seed's name for it): text-to-text generation, for
  any ByT5 checkpoint, e.g. one fine-tuned for a transformation.
- ``embed``: the encoder's last hidden states mean-pooled over the real (unpadded) bytes, answered
  as a JSON array of floats. ``POST /v1/embeddings`` reaches the same vectors through
  :meth:`ByT5Expert.embed`, a request's texts in padded batches of similar length.

Because ByT5 reads bytes, it needs no vocabulary file and copes with code, identifiers and
symbol-heavy text that a subword vocabulary would shred. torch and transformers are imported when
the model loads, never at plugin import.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from moe_core import ChatRequest, Expert, ExpertCard, ExpertResult, InvalidRequest, Options, Usage
from moe_localmodels import (
    LOADING_LOCK,
    ModelWorker,
    check_dimensions,
    pick_device,
    resolve_checkpoint,
)

DEFAULT_CHECKPOINT = "google/byt5-small"
TASKS = ("generate", "embed")
# The seed's API called an expert's default text task ``process``.
DEFAULT_TASK_ALIAS = "process"
EMBED_GROUP = 16  # texts per forward pass when embedding many: padding wastes little


def task_of(request: ChatRequest, tasks: tuple[str, ...], default: str) -> str:
    """The task a request asks for, or a 400 naming the tasks this expert does."""
    task = request.hints.task_type
    if task is None:
        return default
    if task == DEFAULT_TASK_ALIAS:
        return default
    if task not in tasks:
        raise InvalidRequest(
            f"unknown task {request.hints.task_type!r}; this expert does: {', '.join(tasks)}",
            param="task",
            code="unknown_task",
        )
    return task


class ByT5Options(Options):
    checkpoint: str = Field(
        DEFAULT_CHECKPOINT,
        description="A local model folder or a Hugging Face id already in the local cache",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_input_bytes: int = Field(
        1024, ge=8, description="Inputs are cut to this many bytes (ByT5 was trained on 1024)"
    )
    max_new_tokens: int = Field(128, ge=1, description="When the request sets no max_tokens")
    max_queue: int = Field(16, ge=1, description="Requests waiting for the model; beyond, 503")


class ByT5Expert(Expert):
    """ByT5 (T5 over bytes): text-to-text ``generate`` and mean-pooled ``embed``."""

    options: ByT5Options
    tasks = TASKS
    default_task = "generate"

    def __init__(self, name: str, options: ByT5Options) -> None:
        super().__init__(name, options)
        self.source = resolve_checkpoint(options.checkpoint, where=f"experts.{name}.checkpoint")
        self.worker = ModelWorker(name, options.max_queue)
        self.device = "cpu"
        self._model: Any = None
        self._tokenizer: Any = None

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider="local",
            description=f"ByT5 byte-level model ({self.options.checkpoint})",
            capabilities=list(self.tasks),
            context_window=self.options.max_input_bytes,
            supports_streaming=False,
        )

    async def start(self) -> None:
        await self.worker.run(self._load)

    def _load(self) -> None:
        self.device = pick_device(self.options.device)
        # Neither importing from transformers nor loading is safe in two threads at once.
        with LOADING_LOCK:
            from transformers import ByT5Tokenizer, T5ForConditionalGeneration

            self._tokenizer = ByT5Tokenizer()
            model = T5ForConditionalGeneration.from_pretrained(self.source, local_files_only=True)
        self._model = model.to(self.device).eval()

    async def close(self) -> None:
        self._model = self._tokenizer = None
        self.worker.close()

    async def generate(self, request: ChatRequest) -> ExpertResult:
        task = task_of(request, self.tasks, self.default_task)
        text = request.last_user_text()
        if task == "embed":
            vector, used = await self.worker.run(self._embed, text)
            return ExpertResult(
                content=json.dumps(vector), usage=Usage.of(used, 0), model=self.name
            )
        limit = request.output_limit or self.options.max_new_tokens
        answer, used, made = await self.worker.run(
            self._generate, text, limit, request.temperature, request.seed
        )
        finish = "length" if made >= limit else "stop"
        return ExpertResult(
            content=answer, finish_reason=finish, usage=Usage.of(used, made), model=self.name
        )

    def _encode(self, text: str) -> Any:
        return self._tokenizer(
            [text],
            return_tensors="pt",
            truncation=True,
            max_length=self.options.max_input_bytes,
        ).to(self.device)

    def _generate(
        self, text: str, limit: int, temperature: float | None, seed: int | None
    ) -> tuple[str, int, int]:
        import torch

        inputs = self._encode(text)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature:
            sampling = {"do_sample": True, "temperature": temperature}
            if seed is not None:
                torch.manual_seed(seed)
        with torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=limit, **sampling)
        new = output[0][1:]  # the decoder start token is not part of the answer
        answer = self._tokenizer.decode(new, skip_special_tokens=True)
        return answer, int(inputs["input_ids"].shape[1]), int(new.shape[0])

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Each text's ``embed`` vector and the bytes they took, for ``POST /v1/embeddings``."""
        check_dimensions(f"expert {self.name!r}", self._model.config.d_model, dimensions)
        return await self.worker.run(self._embed_many, texts)

    def _embed(self, text: str) -> tuple[list[float], int]:
        vectors, used = self._embed_many([text])
        return vectors[0], used

    def _embed_many(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled encoder states of every text, sorted by length into padded groups of
        :data:`EMBED_GROUP` (masked padding leaves each vector as it is alone)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i].encode()))
        vectors: list[list[float]] = [[] for _ in texts]
        used = 0
        for start in range(0, len(order), EMBED_GROUP):
            group = order[start : start + EMBED_GROUP]
            inputs = self._tokenizer(
                [texts[i] for i in group],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.options.max_input_bytes,
            ).to(self.device)
            with torch.inference_mode():
                states = self._model.get_encoder()(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            for row, index in enumerate(group):
                vectors[index] = pooled[row].float().cpu().tolist()
            used += int(inputs["attention_mask"].sum())
        return vectors, used
