"""``POST /process`` and ``POST /process/sync``: the seed's text-processing API, on the pipeline.

Body ``{"text": "...", "task": "process" | "generate" | "embed" | "summarize", "options": {...}}``;
answer ``{"result", "expert_used", "confidence", "processing_time", "input_features"}`` plus
``task``, ``gate``, ``rationale``, ``fallbacks`` and ``cached``. ``result`` is text, or for
``embed`` the vector (a list of numbers). ``options``: ``force_expert`` (an expert name, or a
label of the ``features`` gate such as ``byt5``), ``max_tokens``, and the seed's post-processing
``truncate_length`` and ``to_uppercase`` (text results only).

Every request goes through the gateway's pipeline (gate, combiner with fallbacks, trackers), as
a chat request whose ``moe.task_type`` is the task. The two paths answer identically: in the
seed, ``/process`` was an ``async`` handler and ``/process/sync`` a blocking one run in a thread
pool, a difference in how the server was written, not in what a caller gets; here model work
always runs off the event loop, so both are the same handler. ``/process/sync`` is kept because
the seed's chat client calls it.

Answers are kept in an LRU cache keyed by text, task, options and the expert the gate chose;
an answer that needed a fallback is not cached, so a recovered expert is used again.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moe_byt5 import features
from moe_byt5.gate import FeaturesGate
from moe_core import (
    MOE_KEY,
    Frontend,
    InvalidRequest,
    MoE,
    MoEResponse,
    Options,
    PayloadTooLarge,
    UpstreamError,
)
from moe_core.appkeys import REQUEST_ID_KEY
from moe_core.errors import invalid_request
from moe_core.http import json_response, read_json_body

DEFAULT_TASK = "process"


class ProcessOptions(Options):
    max_text_chars: int = Field(200_000, ge=1, description="Longer texts get a 413")
    cache_size: int = Field(256, ge=0, description="Answers kept in the LRU cache; 0: none")


class RequestOptions(BaseModel):
    """The body's ``options``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    force_expert: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    truncate_length: int | None = Field(None, ge=1)
    to_uppercase: bool = False


class ProcessBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str
    task: str = DEFAULT_TASK
    options: RequestOptions = Field(default_factory=RequestOptions)


class ResultCache:
    """Least-recently-used answers, at most ``size`` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> Any:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: tuple[str, ...], value: Any) -> None:
        if not self.size:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ProcessFrontend(Frontend):
    """``POST /process`` and ``/process/sync``: route a text to an expert and run a task."""

    options: ProcessOptions

    def __init__(self, name: str, options: ProcessOptions) -> None:
        super().__init__(name, options)
        self.cache = ResultCache(options.cache_size)

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/process", self.process)
        app.router.add_post("/process/sync", self.process)

    async def process(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        moe = request.app[MOE_KEY]
        body = self._parse(await read_json_body(request))
        forced = _expert_named(moe, body.options.force_expert)
        _check_task(moe, body.task, forced)
        if body.task == "embed" and (body.options.truncate_length or body.options.to_uppercase):
            raise InvalidRequest(
                "truncate_length and to_uppercase apply to text results, not to embed",
                param="options",
            )
        chat = {
            "model": forced or "auto",
            "messages": [{"role": "user", "content": body.text}],
            "moe": {"task_type": body.task},
        }
        if body.options.max_tokens is not None:
            chat["max_tokens"] = body.options.max_tokens
        decision = await moe.route(chat)
        key = (
            body.text,
            body.task,
            body.options.model_dump_json(exclude={"force_expert"}),
            decision.experts[0],
        )
        result = self.cache.get(key)
        if result is None:
            response = await moe.complete(chat, request_id=request[REQUEST_ID_KEY])
            metadata = response.metadata
            answer = {
                "result": _result(moe, response, body),
                "expert_used": response.model,
                "confidence": metadata.confidence,
                "gate": metadata.gate,
                "rationale": metadata.rationale,
                "fallbacks": [record.model_dump() for record in metadata.fallbacks],
                "cached": False,
            }
            if not metadata.fallbacks:
                self.cache.put(key, answer["result"])
        else:
            # The stored result, with this request's own routing decision.
            answer = {
                "result": result,
                "expert_used": decision.experts[0],
                "confidence": decision.confidence,
                "gate": decision.gate,
                "rationale": decision.rationale,
                "fallbacks": [],
                "cached": True,
            }
        return json_response(
            {
                **answer,
                "input_features": features.extract(body.text),
                "task": body.task,
                "processing_time": round(time.perf_counter() - started, 6),
            }
        )

    def _parse(self, raw: bytes) -> ProcessBody:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                f"The body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise InvalidRequest(
                'The body must be a JSON object: {"text": "...", "task": "...", "options": {}}',
                code="invalid_json",
            )
        text = data.get("text")
        if isinstance(text, str) and len(text) > self.options.max_text_chars:
            raise PayloadTooLarge(
                f"'text' has {len(text)} characters; the limit is {self.options.max_text_chars}",
                param="text",
            )
        try:
            body = ProcessBody.model_validate(data)
        except ValidationError as exc:
            raise invalid_request(exc) from None
        if not body.text.strip():
            raise InvalidRequest("'text' is empty", param="text")
        return body


def _result(moe: MoE, response: MoEResponse, body: ProcessBody) -> Any:
    """The answer as the seed's clients expect it: post-processed text, or the vector."""
    content = response.result.content
    if body.task == "embed":
        return _vector(moe, response.metadata.experts_used[-1], content)
    if body.options.truncate_length and len(content) > body.options.truncate_length:
        content = content[: body.options.truncate_length] + "..."
    if body.options.to_uppercase:
        content = content.upper()
    return content


def _vector(moe: MoE, expert: str, content: str) -> list[float]:
    """An embed answer as numbers. Text instead is a 400 from an expert whose card does not
    list ``embed`` (it was asked for what it does not do), a 502 from one that does."""
    try:
        vector = json.loads(content)
    except json.JSONDecodeError:
        vector = None
    if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
        if "embed" not in moe.experts.cards()[expert].capabilities:
            raise InvalidRequest(
                f"expert {expert!r} does not embed (its card lists no 'embed' capability); "
                "name one that does in options.force_expert",
                param="options.force_expert",
                code="unknown_task",
            )
        raise UpstreamError(
            f"expert {expert!r} answered task 'embed' with text, not a vector; does it embed?"
        )
    return vector


def _expert_named(moe: MoE, name: str | None) -> str | None:
    """The configured expert ``force_expert`` names, also by a label of the gate (``byt5``)."""
    if name is None or name in moe.experts:
        return name
    if isinstance(moe.gate, FeaturesGate) and moe.gate.expert_for(name) in moe.experts:
        return moe.gate.expert_for(name)
    raise InvalidRequest(
        f"unknown expert {name!r} in options.force_expert; configured experts: "
        f"{', '.join(moe.experts)}",
        param="options.force_expert",
        code="unknown_expert",
    )


def _check_task(moe: MoE, task: str, forced: str | None) -> None:
    """A 400 for a task no configured expert (or not the forced one) does."""
    if task == DEFAULT_TASK:
        return
    cards = moe.experts.cards()
    if forced is not None:
        offered = cards[forced].capabilities
        if offered and task not in offered:
            raise InvalidRequest(
                f"expert {forced!r} does not do task {task!r}; it does: {', '.join(offered)}",
                param="task",
                code="unknown_task",
            )
        return
    known = sorted({task for card in cards.values() for task in card.capabilities})
    if task not in known:
        raise InvalidRequest(
            f"unknown task {task!r}; tasks: {', '.join([DEFAULT_TASK, *known])}",
            param="task",
            code="unknown_task",
        )
