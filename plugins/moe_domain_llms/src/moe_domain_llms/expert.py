"""The ``hf-causal-lm`` expert: a transformers causal language model running in this process.

Experts naming the same model share one loaded copy (see :mod:`moe_domain_llms.models`), and
concurrent requests to it are grouped into batched ``generate`` calls in a worker thread, so the
event loop keeps serving and eight requests cost far less than eight times one. torch and
transformers are imported when the model loads, never at plugin import, so ``moe plugins`` stays
fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

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
from moe_domain_llms import models
from moe_domain_llms.engine import Job, Output
from moe_domain_llms.source import ModelSource, resolve

_END = object()


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
        None, description="For converted GGUF files; default $MOE_CACHE_DIR, else ~/.cache/moe"
    )
    trust_remote_code: bool = False
    max_batch_size: int = Field(8, ge=1, description="Requests generated together at most")
    max_wait_ms: float = Field(10.0, ge=0, description="How long a request waits for company")
    max_queue: int = Field(256, ge=1, description="Requests waiting at most; beyond, 503")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (process-wide); default: all cores but one"
    )


class HFCausalLMExpert(Expert):
    """A local transformers causal LM (folder, HF cache or GGUF), chat template applied."""

    options: HFCausalLMOptions

    def __init__(self, name: str, options: HFCausalLMOptions) -> None:
        super().__init__(name, options)
        self.source: ModelSource = resolve(options.model, where=f"experts.{name}.model")
        self.key = models.ModelKey(
            self.source,
            options.device,
            options.dtype,
            options.trust_remote_code,
            options.cache_dir,
        )
        self.loaded: models.LoadedModel | None = None

    def card(self) -> ExpertCard:
        return ExpertCard(provider="local", description=self.source.describe())

    async def start(self) -> None:
        batch = models.BatchSettings(
            self.options.max_batch_size,
            self.options.max_wait_ms,
            self.options.max_queue,
            self.options.torch_threads,
        )
        self.loaded = await models.acquire(self.key, batch)

    async def close(self) -> None:
        if self.loaded is not None:
            loaded, self.loaded = self.loaded, None
            await models.release(loaded)

    # -- requests ----------------------------------------------------------------------------

    def _job(self, request: ChatRequest, **extra: Any) -> Job:
        if self.loaded is None:
            raise ExpertUnavailable(f"expert {self.name!r} has no model loaded")
        return Job(
            input_ids=self._prompt_ids(request),
            max_new_tokens=request.output_limit or self.options.max_new_tokens,
            stops=request.stop_sequences,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            **extra,
        )

    def count_tokens(self, request: ChatRequest) -> int | None:
        """The prompt as this model will read it, system prompt and chat template included."""
        return None if self.loaded is None else len(self._prompt_ids(request))

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        assert self.loaded is not None
        tokenizer = self.loaded.tokenizer
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        if self.options.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.options.system_prompt})
        if tokenizer.chat_template:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            # Newer tokenizers return a BatchEncoding here; older ones the list itself.
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return tokenizer(text)["input_ids"]

    async def generate(self, request: ChatRequest) -> ExpertResult:
        job = self._job(request)
        assert self.loaded is not None
        output = await self.loaded.generate(job)
        return ExpertResult(
            content=output.text,
            finish_reason=output.finish_reason,
            usage=Usage.of(output.prompt_tokens, output.completion_tokens),
            model=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()
        job = self._job(
            request, sink=lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
        )
        assert self.loaded is not None
        generation = asyncio.ensure_future(self.loaded.generate(job))
        generation.add_done_callback(lambda _: pieces.put_nowait(_END))
        try:
            # The worker thread posts every piece before its batch completes, and the loop runs
            # callbacks in the order they were posted, so _END always comes last.
            while (piece := await pieces.get()) is not _END:
                yield Delta(content=piece)
            output: Output = generation.result()
        finally:
            # The caller went away (or failed): that row stops at its next token.
            job.cancelled.set()
        yield Delta(
            finish_reason=output.finish_reason,
            usage=Usage.of(output.prompt_tokens, output.completion_tokens),
        )
