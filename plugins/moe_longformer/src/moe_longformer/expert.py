"""The ``longformer`` expert: long documents, embedded with Longformer and summarised with LED.

Tasks, chosen by the request's ``moe.task_type`` (the ``/process`` API's ``task``):

- ``summarize`` (the default; ``process`` is the seed's name for it): LEDForConditionalGeneration
  with global attention on the first token. A document longer than LED's encoder window is cut
  into window-sized chunks, each summarised, the summaries joined in order.
- ``embed``: LongformerModel's last hidden states, global attention on the first token,
  mean-pooled over real tokens. A document longer than the window is cut into chunks, each
  embedded, and the chunk vectors averaged weighted by their token counts, so every part of the
  document counts by its length. Answered as a JSON array of floats. ``POST /v1/embeddings``
  reaches the same vectors through :meth:`LongformerExpert.embed`, the chunks of all of a
  request's texts run through the model together.

Either checkpoint may be ``null`` to leave that task out (the card then lists only the other).
torch and transformers are imported when the models load, never at plugin import.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from moe_core import (
    ChatRequest,
    Expert,
    ExpertCard,
    ExpertResult,
    InvalidRequest,
    Options,
    Usage,
)
from moe_localmodels import (
    LOADING_LOCK,
    ModelWorker,
    check_dimensions,
    pick_device,
    resolve_checkpoint,
)

DEFAULT_EMBED_CHECKPOINT = "allenai/longformer-base-4096"
DEFAULT_SUMMARIZE_CHECKPOINT = "allenai/led-base-16384"
# The seed's API called an expert's default text task ``process``.
DEFAULT_TASK_ALIAS = "process"


class LongformerOptions(Options):
    embed_checkpoint: str | None = Field(
        DEFAULT_EMBED_CHECKPOINT,
        description="Longformer model (local folder or HF id in the local cache); null: no embed",
    )
    summarize_checkpoint: str | None = Field(
        DEFAULT_SUMMARIZE_CHECKPOINT,
        description="LED model (local folder or HF id in the local cache); null: no summarize",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_window_tokens: int | None = Field(
        None, ge=8, description="Chunk size cap; default: each model's own window"
    )
    chunks_per_batch: int = Field(4, ge=1, description="Chunks run through a model together")
    max_new_tokens: int = Field(128, ge=1, description="Summary length per chunk by default")
    num_beams: int = Field(1, ge=1, description="Beam search width for summaries")
    max_queue: int = Field(16, ge=1, description="Requests waiting for the models; beyond, 503")

    @model_validator(mode="after")
    def _some_task(self) -> LongformerOptions:
        if self.embed_checkpoint is None and self.summarize_checkpoint is None:
            raise ValueError("set embed_checkpoint, summarize_checkpoint or both")
        return self


class LongformerExpert(Expert):
    """Longformer ``embed`` and LED ``summarize`` for long documents, chunked past the window."""

    options: LongformerOptions

    def __init__(self, name: str, options: LongformerOptions) -> None:
        super().__init__(name, options)
        where = f"experts.{name}"
        self.sources: dict[str, str] = {}
        if options.summarize_checkpoint is not None:
            self.sources["summarize"] = resolve_checkpoint(
                options.summarize_checkpoint, where=f"{where}.summarize_checkpoint"
            )
        if options.embed_checkpoint is not None:
            self.sources["embed"] = resolve_checkpoint(
                options.embed_checkpoint, where=f"{where}.embed_checkpoint"
            )
        self.tasks = tuple(self.sources)
        self.default_task = self.tasks[0]
        self.worker = ModelWorker(name, options.max_queue)
        self.device = "cpu"
        self._models: dict[str, Any] = {}
        self._tokenizers: dict[str, Any] = {}
        self.windows: dict[str, int] = {}

    def card(self) -> ExpertCard:
        return ExpertCard(
            provider="local",
            description="Long documents: "
            + ", ".join(f"{task} ({self._checkpoint(task)})" for task in self.tasks),
            capabilities=list(self.tasks),
            supports_streaming=False,
        )

    def _checkpoint(self, task: str) -> str | None:
        return getattr(self.options, f"{task}_checkpoint")

    async def start(self) -> None:
        await self.worker.run(self._load)

    def _load(self) -> None:
        self.device = pick_device(self.options.device)
        # Neither importing from transformers nor loading is safe in two threads at once.
        with LOADING_LOCK:
            from transformers import AutoTokenizer, LEDForConditionalGeneration, LongformerModel

            classes = {"embed": LongformerModel, "summarize": LEDForConditionalGeneration}
            for task, source in self.sources.items():
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                model = classes[task].from_pretrained(source, local_files_only=True)
                self._tokenizers[task] = tokenizer
                self._models[task] = model.to(self.device).eval()
                self.windows[task] = self._window(task, model.config)

    def _window(self, task: str, config: Any) -> int:
        """Tokens one forward pass takes, special tokens included."""
        if task == "embed":
            # RoBERTa-style positions start after the padding index.
            window = config.max_position_embeddings - (config.pad_token_id + 1)
        else:
            window = config.max_encoder_position_embeddings
        cap = self.options.max_window_tokens
        return min(window, cap) if cap else window

    async def close(self) -> None:
        self._models.clear()
        self._tokenizers.clear()
        self.worker.close()

    def task_of(self, request: ChatRequest) -> str:
        task = request.hints.task_type
        if task is None or task == DEFAULT_TASK_ALIAS:
            return self.default_task
        if task not in self.tasks:
            raise InvalidRequest(
                f"unknown task {task!r}; this expert does: {', '.join(self.tasks)}",
                param="task",
                code="unknown_task",
            )
        return task

    async def generate(self, request: ChatRequest) -> ExpertResult:
        task = self.task_of(request)
        text = request.last_user_text()
        if task == "embed":
            vector, used = await self.worker.run(self._embed, text)
            return ExpertResult(
                content=json.dumps(vector), usage=Usage.of(used, 0), model=self.name
            )
        limit = request.output_limit or self.options.max_new_tokens
        summary, used, made = await self.worker.run(self._summarize, text, limit)
        return ExpertResult(content=summary, usage=Usage.of(used, made), model=self.name)

    # -- model work (worker thread) ------------------------------------------------------------

    def _chunks(self, task: str, text: str) -> list[list[int]]:
        """The text's token ids cut to fit the window, each chunk framed by <s> ... </s>."""
        tokenizer = self._tokenizers[task]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        body = self.windows[task] - 2
        pieces = [ids[start : start + body] for start in range(0, len(ids), body)] or [[]]
        return [[tokenizer.bos_token_id, *piece, tokenizer.eos_token_id] for piece in pieces]

    def _batches(self, task: str, chunks: list[list[int]]) -> Any:
        """Padded tensors for groups of chunks, global attention on each chunk's first token."""
        import torch

        pad = self._tokenizers[task].pad_token_id
        step = self.options.chunks_per_batch
        for start in range(0, len(chunks), step):
            group = chunks[start : start + step]
            width = max(len(chunk) for chunk in group)
            ids = torch.full((len(group), width), pad, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for row, chunk in enumerate(group):
                ids[row, : len(chunk)] = torch.tensor(chunk)
                mask[row, : len(chunk)] = 1
            global_mask = torch.zeros_like(mask)
            global_mask[:, 0] = 1
            yield ids.to(self.device), mask.to(self.device), global_mask.to(self.device)

    async def embed(
        self, texts: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Each text's ``embed`` vector and the tokens they took, for ``POST /v1/embeddings``."""
        if "embed" not in self._models:
            raise InvalidRequest(
                f"expert {self.name!r} does not embed: it has no embed_checkpoint",
                param="model",
                code="model_not_supported",
            )
        size = self._models["embed"].config.hidden_size
        check_dimensions(f"expert {self.name!r}", size, dimensions)
        return await self.worker.run(self._embed_many, texts)

    def _embed(self, text: str) -> tuple[list[float], int]:
        vectors, used = self._embed_many([text])
        return vectors[0], used

    def _embed_many(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Every text's chunks, all run through the model in batches of ``chunks_per_batch``,
        then each text's chunk states averaged weighted by their token counts."""
        import torch

        model = self._models["embed"]
        chunks: list[list[int]] = []
        owners: list[int] = []
        for owner, text in enumerate(texts):
            mine = self._chunks("embed", text)
            chunks.extend(mine)
            owners.extend([owner] * len(mine))
        totals: list[Any] = [None] * len(texts)
        counts = [0] * len(texts)
        row = 0
        with torch.inference_mode():
            for ids, mask, global_mask in self._batches("embed", chunks):
                states = model(
                    input_ids=ids, attention_mask=mask, global_attention_mask=global_mask
                ).last_hidden_state
                # Summing masked states over a text's chunks, then dividing by its real tokens,
                # is the token-weighted average of the chunks' mean-pooled vectors.
                summed = (states * mask.unsqueeze(-1).to(states.dtype)).sum(dim=1)
                for chunk in range(ids.shape[0]):
                    owner = owners[row + chunk]
                    previous = totals[owner]
                    totals[owner] = summed[chunk] if previous is None else previous + summed[chunk]
                    counts[owner] += len(chunks[row + chunk])
                row += ids.shape[0]
        vectors = [
            (total / count).float().cpu().tolist()
            for total, count in zip(totals, counts, strict=True)
        ]
        return vectors, sum(counts)

    def _summarize(self, text: str, limit: int) -> tuple[str, int, int]:
        import torch

        model, tokenizer = self._models["summarize"], self._tokenizers["summarize"]
        chunks = self._chunks("summarize", text)
        summaries: list[str] = []
        made = 0
        with torch.inference_mode():
            for ids, mask, global_mask in self._batches("summarize", chunks):
                output = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    global_attention_mask=global_mask,
                    max_new_tokens=limit,
                    num_beams=self.options.num_beams,
                    do_sample=False,
                )
                for row in output:
                    made += int((row != tokenizer.pad_token_id).sum())
                    summaries.append(tokenizer.decode(row, skip_special_tokens=True).strip())
        used = sum(len(chunk) for chunk in chunks)
        return "\n".join(summaries), used, made
