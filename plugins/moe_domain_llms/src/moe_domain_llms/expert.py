"""The ``hf-causal-lm`` expert: a transformers causal language model running in this process.

Generation runs in a worker thread so the event loop keeps serving other requests; one
generation runs at a time per model (a CPU model gains nothing from two at once, and a GPU one
needs batching, not racing, to gain). torch and transformers are imported in ``start``, never
at plugin import, so ``moe plugins`` stays fast.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field

from moe_core import (
    ChatRequest,
    Delta,
    Expert,
    ExpertCard,
    ExpertResult,
    ExpertUnavailable,
    Options,
    Usage,
)
from moe_domain_llms.source import ModelSource, default_cache_dir, ensure_converted, resolve
from moe_domain_llms.streaming import StopTrimmer, make_cancel_criteria, make_queue_streamer

log = structlog.get_logger(__name__)

_END = object()
_WARM_UP = ChatRequest(messages=[{"role": "user", "content": "Hi"}])


class HFCausalLMOptions(Options):
    model: str = Field(
        description="A local folder, a Hugging Face id in the local cache, a .gguf file, or "
        "package:<module>/<file>.gguf for a GGUF file shipped inside an installed package"
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    system_prompt: str | None = Field(
        None, description="Put first when the request has no system message"
    )
    max_new_tokens: int = Field(256, ge=1, description="When the request sets no max_tokens")
    cache_dir: str | None = Field(
        None, description="For converted GGUF files; default ~/.cache/moe"
    )
    trust_remote_code: bool = False


class HFCausalLMExpert(Expert):
    """A local transformers causal LM (folder, HF cache or GGUF), chat template applied."""

    options: HFCausalLMOptions

    def __init__(self, name: str, options: HFCausalLMOptions) -> None:
        super().__init__(name, options)
        self.source: ModelSource = resolve(options.model, where=f"experts.{name}.model")
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: str = "cpu"
        self._lock = asyncio.Lock()

    def card(self) -> ExpertCard:
        return ExpertCard(provider="local", description=f"{self.source.describe()}")

    # -- loading -------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        location = self.source.location
        if self.source.gguf_file is not None:
            cache = Path(self.options.cache_dir) if self.options.cache_dir else default_cache_dir()
            location = str(ensure_converted(self.source.gguf_file, cache))
        local_only = {"local_files_only": True, "trust_remote_code": self.options.trust_remote_code}
        self.device = _pick_device(self.options.device)
        dtype = _pick_dtype(self.options.dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(location, **local_only)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **local_only)
        self.model = model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch.set_grad_enabled(False)
        # One token of warm-up, so the first real request does not pay for lazy initialisation.
        self.model.generate(
            **self._prompt_ids(_WARM_UP),
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        log.info(
            "hf.loaded",
            expert=self.name,
            source=self.source.describe(),
            device=self.device,
            dtype=str(self.model.dtype),
            parameters=sum(p.numel() for p in self.model.parameters()),
        )

    async def close(self) -> None:
        self.model = None
        self.tokenizer = None

    # -- generation ------------------------------------------------------------------------

    def _prompt_ids(self, request: ChatRequest) -> Any:
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        if self.options.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.options.system_prompt})
        if self.tokenizer.chat_template:
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            encoded = self.tokenizer(text, return_tensors="pt")
        return {key: value.to(self.device) for key, value in encoded.items()}

    def _generate_kwargs(self, request: ChatRequest, inputs: dict[str, Any]) -> dict[str, Any]:
        max_new = request.output_limit or self.options.max_new_tokens
        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": max_new,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        # Unset or zero temperature means greedy decoding: deterministic, and the better choice
        # for small local models; any positive temperature samples.
        if request.temperature:
            kwargs.update(do_sample=True, temperature=request.temperature)
            if request.top_p is not None:
                kwargs["top_p"] = request.top_p
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop_sequences:
            kwargs.update(stop_strings=request.stop_sequences, tokenizer=self.tokenizer)
        return kwargs

    def _finish_reason(self, generated: int, max_new: int, last_token: int | None, stopped: bool):
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        if stopped or last_token in eos_ids or generated < max_new:
            return "stop"
        return "length"

    def _ready(self) -> None:
        if self.model is None:
            raise ExpertUnavailable(f"expert {self.name!r} has no model loaded")

    async def generate(self, request: ChatRequest) -> ExpertResult:
        self._ready()
        async with self._lock:
            return await asyncio.to_thread(self._generate_sync, request)

    def _generate_sync(self, request: ChatRequest) -> ExpertResult:
        import torch

        inputs = self._prompt_ids(request)
        kwargs = self._generate_kwargs(request, inputs)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        output = self.model.generate(**kwargs)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0][prompt_length:]
        trimmer = StopTrimmer(request.stop_sequences)
        text = trimmer.feed(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        text += trimmer.flush()
        last = int(new_tokens[-1]) if len(new_tokens) else None
        return ExpertResult(
            content=text,
            finish_reason=self._finish_reason(
                len(new_tokens), kwargs["max_new_tokens"], last, trimmer.stopped
            ),
            usage=Usage.of(prompt_length, len(new_tokens)),
            model=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self._ready()
        async with self._lock:
            async for delta in self._stream_locked(request):
                yield delta

    async def _stream_locked(self, request: ChatRequest) -> AsyncIterator[Delta]:
        import torch

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        inputs = self._prompt_ids(request)
        kwargs = self._generate_kwargs(request, inputs)
        streamer = make_queue_streamer(self.tokenizer, loop, queue)
        kwargs.update(streamer=streamer, stopping_criteria=[make_cancel_criteria(cancelled)])
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                output = self.model.generate(**kwargs)
                outcome["last"] = int(output[0][-1])
            except BaseException as exc:  # handed to the event loop, which re-raises it
                outcome["error"] = exc
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = asyncio.create_task(asyncio.to_thread(work))
        trimmer = StopTrimmer(request.stop_sequences)
        try:
            while (piece := await queue.get()) is not _END:
                shown = trimmer.feed(piece)
                if shown:
                    yield Delta(content=shown)
                if trimmer.stopped:
                    cancelled.set()
        finally:
            cancelled.set()
            await worker
        if "error" in outcome:
            raise outcome["error"]
        tail = trimmer.flush()
        if tail:
            yield Delta(content=tail)
        prompt_length = inputs["input_ids"].shape[1]
        generated = streamer.generated_tokens
        yield Delta(
            finish_reason=self._finish_reason(
                generated, kwargs["max_new_tokens"], outcome.get("last"), trimmer.stopped
            ),
            usage=Usage.of(prompt_length, generated),
        )


def _pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(requested: str, device: str) -> Any:
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    # Half precision on accelerators; float32 on CPU, where bfloat16 matmuls are often slower.
    return torch.bfloat16 if device == "cuda" else torch.float32
