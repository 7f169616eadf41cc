"""The ``hf-causal-lm`` expert: a transformers causal language model running in this process.

Experts naming the same model share one loaded copy (see :mod:`moe_domain_llms.models`), and
concurrent requests to it are grouped into batched ``generate`` calls in a worker thread, so the
event loop keeps serving and eight requests cost far less than eight times one. torch and
transformers are imported when the model loads, never at plugin import, so ``moe plugins`` stays
fast.

The work a request may cause is bounded before it starts: its prompt must fit the model's context
window (and ``max_prompt_tokens``), its ``max_tokens`` the expert's ``max_output_tokens``, both
400s a caller can fix; a saturated model answers 503 with ``Retry-After``; a caller that leaves
(disconnect, timeout, shutdown) cancels its generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
    InvalidRequest,
    Options,
    Usage,
)
from moe_domain_llms import arithmetic, models
from moe_domain_llms.engine import Job, Output
from moe_domain_llms.source import ModelSource, resolve

log = structlog.get_logger(__name__)

_END = object()
# Prompts longer than this are tokenized in a thread: a megabyte takes seconds.
_TOKENIZE_INLINE_CHARS = 8192


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
    # How to decode when the request does not say; unset: the model's generation config.
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(
        None, gt=0, description="Divides the logit of every token already in the answer (1: off)"
    )
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    max_new_tokens: int = Field(
        256,
        ge=1,
        description="When the request sets no max_tokens: past this many tokens the answer ends "
        "at its next sentence end",
    )
    finish_sentence_tokens: int = Field(
        48, ge=0, description="How many more tokens past max_new_tokens an answer may take"
    )
    max_output_tokens: int = Field(
        2048, ge=1, description="The largest max_tokens a request may ask for (more: a 400)"
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Prompt tokens at most, template included (more: a 400); the context window "
        "less the answer's limit applies in any case",
    )
    calculator: bool = Field(
        True, description="Work out plain arithmetic in the question exactly (see arithmetic.py)"
    )
    cache_dir: str | None = Field(
        None, description="For converted GGUF files; default $MOE_CACHE_DIR, else ~/.cache/moe"
    )
    trust_remote_code: bool = False
    max_batch_size: int = Field(8, ge=1, description="Requests generated together at most")
    max_wait_ms: float = Field(10.0, ge=0, description="How long a request waits for company")
    max_queue: int = Field(
        32, ge=1, description="Requests waiting at most; beyond, 503 with Retry-After"
    )
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
        return ExpertCard(
            provider="local",
            description=self.source.describe(),
            # frequency_penalty and presence_penalty are honoured (see engine._penalties).
            capabilities=["penalties"],
            max_output_tokens=self.options.max_output_tokens,
        )

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

    async def _job(self, request: ChatRequest, **extra: Any) -> Job:
        loaded = self._ready()
        limit, soft = self._output_limit(request)
        # An asked-for max_tokens must fit beside the prompt; a default one shrinks to fit.
        reserve = limit if soft is None else 1
        messages = self._messages(request)
        self._check_prompt_chars(messages, reserve)
        if sum(len(m["content"]) for m in messages) > _TOKENIZE_INLINE_CHARS:
            input_ids = await asyncio.to_thread(self._encode, messages)
        else:
            input_ids = self._encode(messages)
        self._check_prompt_tokens(len(input_ids), reserve)
        if loaded.context_window is not None:
            limit = min(limit, loaded.context_window - len(input_ids))
        asked = _decoding_extras(request)

        def pick(name: str) -> Any:
            """The request's value, else the expert's, else the model's generation config's."""
            for source in (asked, self.options.model_dump(), vars(loaded.decoding)):
                if source.get(name) is not None:
                    return source[name]
            return None

        return Job(
            input_ids=input_ids,
            max_new_tokens=limit,
            end_sentence_after=soft,
            stops=request.stop_sequences,
            temperature=pick("temperature"),
            top_p=pick("top_p"),
            top_k=pick("top_k"),
            seed=request.seed,
            repetition_penalty=pick("repetition_penalty") or 1.0,
            frequency_penalty=pick("frequency_penalty") or 0.0,
            presence_penalty=pick("presence_penalty") or 0.0,
            **extra,
        )

    def _ready(self) -> models.LoadedModel:
        if self.loaded is None:
            raise ExpertUnavailable(f"expert {self.name!r} has no model loaded")
        return self.loaded

    def _output_limit(self, request: ChatRequest) -> tuple[int, int | None]:
        """The hard limit on the answer's tokens, and where a default limit ends it softly."""
        asked = request.output_limit
        ceiling = self.options.max_output_tokens
        if asked is not None and asked > ceiling:
            param = (
                "max_tokens" if request.max_completion_tokens is None else "max_completion_tokens"
            )
            raise InvalidRequest(
                f"{param} is too large: {asked}. Expert {self.name!r} writes at most {ceiling} "
                "tokens per answer.",
                param=param,
                code="invalid_value",
            )
        if asked is not None:
            return asked, None
        soft = min(self.options.max_new_tokens, ceiling)
        return min(soft + self.options.finish_sentence_tokens, ceiling), soft

    def _prompt_limit(self, answer_limit: int) -> tuple[int, str]:
        """The most prompt tokens, and why (for the error)."""
        assert self.loaded is not None
        window = self.loaded.context_window
        limits = []
        if window is not None:
            limits.append(
                (
                    window - answer_limit,
                    f"This model's maximum context length is {window} tokens, and the answer "
                    f"needs {answer_limit}",
                )
            )
        if self.options.max_prompt_tokens is not None:
            limits.append(
                (
                    self.options.max_prompt_tokens,
                    f"Expert {self.name!r} reads at most {self.options.max_prompt_tokens} "
                    "prompt tokens",
                )
            )
        return min(limits, default=(2**31, ""))

    def _check_prompt_chars(self, messages: list[dict[str, str]], answer_limit: int) -> None:
        """Refuse a prompt that cannot fit before spending time on tokenizing it."""
        assert self.loaded is not None
        most, why = self._prompt_limit(answer_limit)
        chars = sum(len(m["content"]) for m in messages)
        if chars > max(most, 0) * self.loaded.chars_per_token:
            self._too_long(f"{chars} characters, more than {most} tokens can hold", why)

    def _check_prompt_tokens(self, tokens: int, answer_limit: int) -> None:
        most, why = self._prompt_limit(answer_limit)
        if tokens > most:
            self._too_long(f"{tokens} tokens", why)

    def _too_long(self, size: str, why: str) -> None:
        raise InvalidRequest(
            f"{why}; the messages are {size} (system prompt and chat template included). "
            "Shorten the messages or ask for fewer max_tokens.",
            param="messages",
            code="context_length_exceeded",
        )

    def count_tokens(self, request: ChatRequest) -> int | None:
        """The prompt as this model will read it, system prompt and chat template included."""
        return None if self.loaded is None else len(self._encode(self._messages(request)))

    def _messages(self, request: ChatRequest) -> list[dict[str, str]]:
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        if self.options.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.options.system_prompt})
        found = self._calculation(request)
        if found is not None and messages[-1]["role"] == "user":
            # Beside the question, where a small model reads it best.
            worked = "; ".join(str(c) for c in found.calculations)
            last = messages[-1]
            messages[-1] = {**last, "content": f"{last['content']}\n\n(Calculator: {worked}.)"}
        return messages

    def _calculation(self, request: ChatRequest) -> arithmetic.Found | None:
        last = request.messages[-1]
        if not self.options.calculator or last.role != "user":
            return None
        return arithmetic.find(last.text())

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        assert self.loaded is not None
        tokenizer = self.loaded.tokenizer
        if tokenizer.chat_template:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            # Newer tokenizers return a BatchEncoding here; older ones the list itself.
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return tokenizer(text)["input_ids"]

    def _worked_out(self, request: ChatRequest) -> ExpertResult | None:
        """The answer to a message that is nothing but arithmetic, without the model."""
        found = self._calculation(request)
        if found is None or not found.whole_message:
            return None
        loaded = self._ready()
        content = f"{found.calculations[0]}"
        log.info("hf.calculated", expert=self.name, answer=content)
        prompt = len(self._encode(self._messages(request)))
        answer = len(loaded.tokenizer(content, add_special_tokens=False)["input_ids"])
        return ExpertResult(
            content=content,
            finish_reason="stop",
            usage=Usage.of(prompt, answer),
            model=self.name,
        )

    async def generate(self, request: ChatRequest) -> ExpertResult:
        worked = self._worked_out(request)
        if worked is not None:
            return worked
        job = await self._job(request)
        assert self.loaded is not None
        output = await self.loaded.generate(job)
        return ExpertResult(
            content=output.text,
            finish_reason=output.finish_reason,
            usage=Usage.of(output.prompt_tokens, output.completion_tokens),
            model=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        worked = self._worked_out(request)
        if worked is not None:
            yield Delta(content=worked.content)
            yield Delta(finish_reason="stop", usage=worked.usage)
            return
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()
        job = await self._job(
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
            # The caller went away (or failed): that row stops at its next token, and a request
            # still queued leaves the queue.
            job.cancelled.set()
            generation.cancel()
        yield Delta(
            finish_reason=output.finish_reason,
            usage=Usage.of(output.prompt_tokens, output.completion_tokens),
        )


_DECODING = (
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
)


def _decoding_extras(request: ChatRequest) -> dict[str, Any]:
    """How the request asks to decode: OpenAI's parameters, plus ``top_k`` and
    ``repetition_penalty`` as vLLM and llama.cpp's servers accept them beside OpenAI's."""
    asked = {name: getattr(request, name, None) for name in _DECODING}
    for name, kind, lowest in (("top_k", int, 0), ("repetition_penalty", float, 0)):
        value = asked[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < lowest:
            raise InvalidRequest(
                f"Invalid {name}: {value!r}; expected a number of at least {lowest}.",
                param=name,
                code="invalid_value",
            )
        if kind is int and value != int(value):
            raise InvalidRequest(f"Invalid top_k: {value!r}; expected a whole number.", param=name)
        asked[name] = kind(value)
    if asked["repetition_penalty"] == 0:
        raise InvalidRequest(
            "Invalid repetition_penalty: 0; expected more than 0.", param="repetition_penalty"
        )
    return asked
