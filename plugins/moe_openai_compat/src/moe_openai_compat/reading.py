"""Reading an upstream's answers: a ``chat.completion`` into a result, a ``chat.completion.chunk``
into deltas, several completions (n separate calls) into one with n choices.

The canonical result and delta have fields for what every expert produces. What an OpenAI
upstream sends beyond them rides along as their extra members, under the names ``wire`` renders
them from, so that a client of the OpenAI frontend gets it as the upstream sent it:

=====================  =====================================================================
``message``            the first choice's message members beyond role, content, reasoning and
                       tool calls (``refusal``, ``annotations``, ``audio``...); for a delta:
``delta``              the same for a chunk's delta (members that are null left out)
``logprobs``           the choice's ``logprobs``
``choices``            (results only) the choices after the first, as the upstream sent them
``index``              (deltas only) the choice a delta belongs to, when not the first
``system_fingerprint`` ``service_tier``: the completion's (or chunk's) own
=====================  =====================================================================

Combiners that merge several answers build new results, which carry none of this: logprobs of
one upstream say nothing about a merged answer.
"""

from __future__ import annotations

from typing import Any

from moe_core import Delta, Usage

# Members of a message or delta that have canonical fields.
_CANONICAL = frozenset({"role", "content", "reasoning_content", "tool_calls"})
_COMPLETION_EXTRAS = ("system_fingerprint", "service_tier")
_KEPT = ("model", *_COMPLETION_EXTRAS)  # what a delta keeps of its chunk's top-level members
_validate_delta = Delta.__pydantic_validator__.validate_python


def result_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """An ``ExpertResult``'s fields (usage aside) for the first choice of a chat completion.

    Raises ``KeyError``, ``IndexError`` or ``TypeError`` for a payload that is not one."""
    choices = payload["choices"]
    choice = choices[0]
    message = choice["message"]
    fields: dict[str, Any] = {
        "content": message.get("content") or "",
        "reasoning_content": message.get("reasoning_content"),
        "tool_calls": message.get("tool_calls"),
        "finish_reason": choice.get("finish_reason") or "stop",
        "model": payload.get("model"),
    }
    if len(message) > 2:  # more than role and content: OpenAI's refusal, annotations, audio...
        extra = {key: value for key, value in message.items() if key not in _CANONICAL}
        if extra:
            fields["message"] = extra
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        fields["logprobs"] = logprobs
    for key in _COMPLETION_EXTRAS:
        value = payload.get(key)
        if value is not None:
            fields[key] = value
    if len(choices) > 1:
        fields["choices"] = choices[1:]
    return fields


def chunk_deltas(chunk: dict[str, Any], index_offset: int = 0) -> list[Delta]:
    """The deltas of one stream chunk: one per choice it carries (one, or none for a chunk
    with only usage); ``index_offset`` renumbers choices of a stream merged with others.

    Called for every chunk of every stream, so it reads each member once, and hands pydantic's
    validator the delta's fields as one dict (what ``Delta(**fields)`` does, less a copy)."""
    common: dict[str, Any] = {"model": chunk.get("model")}
    raw_usage = chunk.get("usage")
    if raw_usage is not None:
        common["usage"] = usage(raw_usage)
    for key in _COMPLETION_EXTRAS:
        value = chunk.get(key)
        if value is not None:
            common[key] = value
    choices = chunk.get("choices")
    if not choices:
        return [_validate_delta(common)]
    deltas = []
    for choice in choices:
        fields = common.copy()
        body = choice.get("delta")
        if body:
            fields["content"] = body.get("content")
            if len(body) > 1 or "content" not in body:
                fields["reasoning_content"] = body.get("reasoning_content")
                fields["tool_calls"] = body.get("tool_calls")
                extra = {
                    key: value
                    for key, value in body.items()
                    if key not in _CANONICAL and value is not None
                }
                if extra:
                    fields["delta"] = extra
        fields["finish_reason"] = choice.get("finish_reason")
        logprobs = choice.get("logprobs")
        if logprobs is not None:
            fields["logprobs"] = logprobs
        index = (choice.get("index") or 0) + index_offset
        if index:
            fields["index"] = index
        deltas.append(_validate_delta(fields))
    return deltas


def coalesced(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stream chunks that arrived together, with each run of consecutive chunks that only add
    text to the same choice joined into one chunk.

    Every chunk a gateway passes on costs it (and its client) the same whatever its length: a
    delta through the pipeline, an event on the wire, a system call. Upstreams that send a
    token per chunk send them faster than a busy gateway reads, so what one read brings is
    passed on as the fewest chunks that say the same thing. Nothing ever waits for more text:
    a chunk that arrived alone still leaves alone, at once. Chunks that carry anything beside
    text (a role, tool calls, log-probabilities, a finish reason, usage) are passed on as they
    came, so no information is merged away."""
    if len(chunks) < 2:
        return chunks
    out: list[dict[str, Any]] = []
    texts: list[str] = []  # the text of the run that ``out[-1]`` opened
    for chunk in chunks:
        text = _text_only(chunk)
        if text is not None and texts and _same_source(out[-1], chunk):
            texts.append(text)
            continue
        _close_run(out, texts)
        out.append(chunk)
        texts = [text] if text is not None else []
    _close_run(out, texts)
    return out


def _text_only(chunk: dict[str, Any]) -> str | None:
    """The text a chunk adds, if that is all it does."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or len(choice) > 4:  # index, delta, logprobs, finish_reason
        return None
    delta = choice.get("delta")
    if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    if type(delta) is not dict:
        return None
    if len(delta) > 1:  # the opening chunk's role and empty refusal say nothing a delta keeps
        if delta.keys() - _OPENING or delta.get("refusal") is not None:
            return None
        if delta.get("role") not in (None, "assistant"):
            return None
    text = delta.get("content")
    return text if type(text) is str else None


_OPENING = frozenset({"role", "content", "refusal"})


def _same_source(first: dict[str, Any], chunk: dict[str, Any]) -> bool:
    """The same choice, and the same members that a delta keeps (see ``chunk_deltas``: the
    chunk's ``id``, ``created`` and ``object`` are the stream's own, and are not kept)."""
    if first["choices"][0].get("index") != chunk["choices"][0].get("index"):
        return False
    return all(first.get(key) == chunk.get(key) for key in _KEPT)


def _close_run(out: list[dict[str, Any]], texts: list[str]) -> None:
    """Replace the run's first chunk with one that carries the whole run's text."""
    if len(texts) > 1:
        first = out[-1]
        choice = first["choices"][0]
        joined = {**choice, "delta": {"content": "".join(texts)}}
        out[-1] = {**first, "choices": [joined]}


def merged(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Completions of separate calls as one completion: their choices numbered in order, their
    usage added up (each call was billed its prompt)."""
    first = payloads[0]
    choices = [
        {**choice, "index": index}
        for index, choice in enumerate(c for payload in payloads for c in payload["choices"])
    ]
    totals = [usage(payload.get("usage")) for payload in payloads]
    known = [total for total in totals if total is not None]
    total = sum(known[1:], known[0]) if known else None
    return {
        **first,
        "choices": choices,
        "usage": None if total is None else total.model_dump(),
    }


def usage(raw: Any) -> Usage | None:
    """Usage read leniently (nulls, a missing total), as some servers send it."""
    if not isinstance(raw, dict):
        return None
    return Usage.of(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
