"""The typed server-sent events of a streamed response, in the order OpenAI sends them.

``response.created`` and ``response.in_progress`` open the stream. Each output item is announced
(``response.output_item.added``), filled (a message's ``response.content_part.added`` then
``response.output_text.delta`` events; a call's ``response.function_call_arguments.delta``;
reasoning's ``response.reasoning_text.delta``), finished (the matching ``.done`` events, then
``response.output_item.done``), and the stream ends with ``response.completed`` (or
``response.incomplete``) carrying the whole response. A failure after the first byte is an
``error`` event followed by ``response.failed``. Every event has a ``sequence_number``, from 0.

Chat deltas do not say when an item ends, so an item stays open until something else starts:
text after reasoning closes the reasoning, a tool call closes the text before it, and the end
of the answer closes everything still open, in output order.
"""

from __future__ import annotations

from typing import Any

import orjson

from moe_core import Delta, MoEError
from moe_openai_compat.responses_output import (
    Item,
    function_call_item,
    message_item,
    new_id,
    reasoning_item,
    text_part,
)


class _Open:
    """An output item being streamed: the item, its index, and the text gathered so far."""

    def __init__(self, item: Item, index: int) -> None:
        self.item = item
        self.index = index
        self.text = ""


class ResponseEvents:
    """Turns one answer's deltas into the frames of a streamed ``response``.

    :param response: the response object as it starts (``in_progress``, no output); the frames
        of ``response.created``/``in_progress`` carry it, and :meth:`finish` completes it.
    """

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.items: list[Item] = []
        self._sequence = 0
        self._message: _Open | None = None
        self._reasoning: _Open | None = None
        self._calls: dict[int, _Open] = {}
        self._open: list[_Open] = []

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def start(self) -> bytes:
        return self._event("response.created", response=self.response) + self._event(
            "response.in_progress", response=self.response
        )

    def _add(self, item: Item) -> tuple[_Open, bytes]:
        opened = _Open(item, len(self.items))
        self.items.append(item)
        self._open.append(opened)
        added = {**item, "status": "in_progress"} if "status" in item else item
        return opened, self._event(
            "response.output_item.added", output_index=opened.index, item=added
        )

    def delta(self, delta: Delta) -> bytes:
        """The frames for one delta (empty when it carries nothing to show)."""
        frames = b""
        if delta.reasoning_content:
            frames += self._reasoning_text(delta.reasoning_content)
        if delta.content:
            frames += self._text(delta.content)
        for position, call in enumerate(delta.tool_calls or ()):
            frames += self._call(position, call)
        return frames

    def _reasoning_text(self, text: str) -> bytes:
        frames = b""
        if self._reasoning is None:
            self._reasoning, frames = self._add(reasoning_item(new_id("rs"), None))
        opened = self._reasoning
        opened.text += text
        return frames + self._event(
            "response.reasoning_text.delta",
            item_id=opened.item["id"],
            output_index=opened.index,
            content_index=0,
            delta=text,
        )

    def _text(self, text: str) -> bytes:
        frames = self._close(self._reasoning) if self._reasoning is not None else b""
        if self._message is None:
            frames += self._open_message()
        opened = self._message
        assert opened is not None
        opened.text += text
        return frames + self._event(
            "response.output_text.delta",
            item_id=opened.item["id"],
            output_index=opened.index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _call(self, position: int, call: dict[str, Any]) -> bytes:
        """One chat tool-call delta: the first for an index announces the call (its id and
        name), the others add to its arguments. Whole calls (no index) come one per position."""
        index = call.get("index", position)
        function = call.get("function") or {}
        frames = b""
        opened = self._calls.get(index)
        if opened is None:
            for before in (self._reasoning, self._message):
                if before is not None:
                    frames += self._close(before)
            item = function_call_item(
                new_id("fc"), call.get("id") or new_id("call"), function.get("name") or "", ""
            )
            opened, added = self._add(item)
            self._calls[index] = opened
            frames += added
        elif function.get("name") and not opened.item["name"]:
            opened.item["name"] = function["name"]
        arguments = function.get("arguments") or ""
        if not arguments:
            return frames
        opened.text += arguments
        return frames + self._event(
            "response.function_call_arguments.delta",
            item_id=opened.item["id"],
            output_index=opened.index,
            delta=arguments,
        )

    def _close(self, opened: _Open, status: str = "completed") -> bytes:
        self._open.remove(opened)
        item, where = opened.item, {"item_id": opened.item["id"], "output_index": opened.index}
        frames = b""
        if item["type"] == "message":
            self._message = None
            part = text_part(opened.text)
            frames += self._event(
                "response.output_text.done", **where, content_index=0, text=opened.text, logprobs=[]
            )
            frames += self._event("response.content_part.done", **where, content_index=0, part=part)
            item.update(content=[part], status=status)
        elif item["type"] == "reasoning":
            self._reasoning = None
            frames += self._event(
                "response.reasoning_text.done", **where, content_index=0, text=opened.text
            )
            item["content"] = [{"type": "reasoning_text", "text": opened.text}]
        else:
            frames += self._event(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=opened.text,
            )
            item.update(arguments=opened.text, status=status)
        return frames + self._event(
            "response.output_item.done", output_index=opened.index, item=item
        )

    def finish(self, response: dict[str, Any]) -> bytes:
        """Close every open item, then ``response.completed`` (or ``response.incomplete``) with
        ``response``, whose ``output`` becomes the streamed items."""
        frames = b""
        if not self.items:  # an empty answer is still a message, as when not streamed
            frames += self._open_message()
        item_status = "incomplete" if response["status"] == "incomplete" else "completed"
        for opened in list(self._open):
            frames += self._close(opened, item_status)
        response["output"] = self.items
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return frames + self._event(kind, response=response)

    def _open_message(self) -> bytes:
        self._message, added = self._add(message_item(new_id("msg"), None, "in_progress"))
        return added + self._event(
            "response.content_part.added",
            item_id=self._message.item["id"],
            output_index=self._message.index,
            content_index=0,
            part=text_part(""),
        )

    def fail(self, error: MoEError, response: dict[str, Any]) -> bytes:
        """An ``error`` event, then ``response.failed`` with ``response`` (status ``failed``)."""
        frames = self._event("error", code=error.code, message=error.message, param=error.param)
        response["output"] = self.items
        return frames + self._event("response.failed", response=response)
