"""Bridging transformers' synchronous generation to asyncio, and cutting at stop sequences."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class StopTrimmer:
    """Cuts text at the first stop sequence, as OpenAI does (the stop itself is not returned).

    When streaming, the last ``len(longest stop) - 1`` characters are held back until the next
    piece arrives, because they could be the start of a stop sequence split across tokens.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.hold = max((len(stop) for stop in self.stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what can be shown now."""
        if self.stopped:
            return ""
        self.buffer += text
        cut = min((i for stop in self.stops if (i := self.buffer.find(stop)) >= 0), default=-1)
        if cut >= 0:
            shown, self.buffer, self.stopped = self.buffer[:cut], "", True
            return shown
        keep = min(self.hold, len(self.buffer))
        shown = self.buffer[: len(self.buffer) - keep]
        self.buffer = self.buffer[len(self.buffer) - keep :]
        return shown

    def flush(self) -> str:
        """What was held back, once generation has ended without a stop sequence."""
        shown, self.buffer = ("" if self.stopped else self.buffer), ""
        return shown


def make_queue_streamer(tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
    """A transformers streamer that hands each decoded piece to an asyncio queue.

    transformers decodes incrementally (it waits for whole words so multi-byte characters are
    never split); every finished piece is posted to the event loop thread-safely. It also counts
    generated tokens, which the streamer is the only one to see.
    """
    from transformers import TextStreamer

    class QueueStreamer(TextStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.generated_tokens = 0

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:
                self.generated_tokens += int(value.numel())
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

    return QueueStreamer()


def make_cancel_criteria(cancelled: threading.Event):
    """A stopping criterion that ends generation when the caller has gone away."""
    import torch
    from transformers import StoppingCriteria

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

    return Cancelled()
