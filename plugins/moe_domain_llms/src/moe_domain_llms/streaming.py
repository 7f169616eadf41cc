"""Cutting generated text at stop sequences, exactly as OpenAI does, even while streaming."""

from __future__ import annotations


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
