"""Loaded models, shared by every expert that names the same one.

Four domain experts over one small model differ only in their system prompt; loading four copies
would cost four times the memory and split their requests into four queues that cannot batch
together. Experts therefore acquire a :class:`LoadedModel` by key (where the weights come from,
device, dtype) and release it when they close; the last release frees it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from moe_domain_llms.batching import MicroBatcher
from moe_domain_llms.engine import ForwardGuard, Job, Output, generate_batch
from moe_domain_llms.source import ModelSource, default_cache_dir, ensure_converted
from moe_localmodels import LOADING_LOCK, pick_device

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ModelKey:
    source: ModelSource
    device: str
    dtype: str
    trust_remote_code: bool
    cache_dir: str | None


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    torch_threads: int | None = None


@dataclass(frozen=True)
class Decoding:
    """How the model's own generation config says to decode (``None``: not said)."""

    temperature: float | None = None  # None: greedy
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None

    @classmethod
    def of(cls, config: Any) -> Decoding:
        sampled = bool(getattr(config, "do_sample", False))
        return cls(
            temperature=(getattr(config, "temperature", None) or 1.0) if sampled else None,
            top_p=getattr(config, "top_p", None) if sampled else None,
            top_k=getattr(config, "top_k", None) if sampled else None,
            repetition_penalty=getattr(config, "repetition_penalty", None),
        )


@dataclass
class LoadedModel:
    key: ModelKey
    model: Any
    tokenizer: Any
    device: str
    batcher: MicroBatcher[Job, Output] = field(repr=False)
    context_window: int | None = None
    """Positions the model was trained for (prompt and answer together), if its config says."""
    chars_per_token: int = 1
    """The most characters one token stands for: a prompt longer than this many times the
    limit is over it, known without tokenizing it."""
    decoding: Decoding = field(default_factory=Decoding)
    users: int = 0

    async def generate(self, job: Job) -> Output:
        return await self.batcher.submit(job)


_loaded: dict[ModelKey, LoadedModel] = {}
_loading: dict[ModelKey, asyncio.Future[LoadedModel]] = {}


async def acquire(key: ModelKey, batch: BatchSettings) -> LoadedModel:
    """The loaded model for ``key``, loading it (off the event loop) if nobody has yet."""
    loaded = _loaded.get(key)
    if loaded is None:
        pending = _loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            _loading[key] = pending
            try:
                loaded = await asyncio.to_thread(_load, key, batch)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here, so a lone loader leaves no warning
                raise
            finally:
                _loading.pop(key, None)
            _loaded[key] = loaded
            pending.set_result(loaded)
        else:
            loaded = await asyncio.shield(pending)
    loaded.users += 1
    return loaded


async def release(loaded: LoadedModel) -> None:
    loaded.users -= 1
    if loaded.users <= 0 and _loaded.get(loaded.key) is loaded:
        del _loaded[loaded.key]
        await loaded.batcher.close()
        log.info("hf.unloaded", source=loaded.key.source.describe())


def _load(key: ModelKey, batch: BatchSettings) -> LoadedModel:
    import torch

    _set_torch_threads(batch.torch_threads)
    local_only = {"local_files_only": True, "trust_remote_code": key.trust_remote_code}
    device = pick_device(key.device)
    # Neither importing from transformers nor loading is safe in two threads at once.
    with LOADING_LOCK:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        location = key.source.location
        if key.source.gguf_file is not None:
            cache = Path(key.cache_dir) if key.cache_dir else default_cache_dir()
            location = str(ensure_converted(key.source.gguf_file, cache))
        tokenizer = AutoTokenizer.from_pretrained(location, **local_only)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=_pick_dtype(key.dtype, device), **local_only
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device).eval()
    torch.set_grad_enabled(False)
    # One token of warm-up, so the first real request does not pay for lazy initialisation.
    warm = tokenizer("Hi", return_tensors="pt").to(device)
    model.generate(**warm, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    log.info(
        "hf.loaded",
        source=key.source.describe(),
        device=device,
        dtype=str(model.dtype),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    guard = ForwardGuard(model)
    batcher: MicroBatcher[Job, Output] = MicroBatcher(
        lambda jobs: generate_batch(model, tokenizer, jobs, guard),
        name=f"model {key.source.location}",
        max_batch=batch.max_batch_size,
        max_wait_s=batch.max_wait_ms / 1000,
        max_queue=batch.max_queue,
        key=Job.batch_key,
        cancel=lambda job: job.cancelled.set(),
    )
    return LoadedModel(
        key,
        model,
        tokenizer,
        device,
        batcher,
        context_window=_context_window(model.config),
        chars_per_token=max(len(token) for token in tokenizer.get_vocab()),
        decoding=Decoding.of(model.generation_config),
    )


def _context_window(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _set_torch_threads(requested: int | None) -> None:
    """Leave a core to the event loop unless told otherwise.

    torch's CPU kernels spin-wait on all their threads; if one of them shares a core with the
    event loop (or the gate's encoder), every parallel step waits for it, and generation can run
    tens of times slower than with one thread fewer. The setting is process-wide.
    """
    import os

    import torch

    threads = requested or max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        log.info("torch.threads", threads=threads)


def _pick_dtype(requested: str, device: str) -> Any:
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    # Half precision on accelerators; float32 on CPU, where bfloat16 matmuls are often slower.
    return torch.bfloat16 if device == "cuda" else torch.float32
