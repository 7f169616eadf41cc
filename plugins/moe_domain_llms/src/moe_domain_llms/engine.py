"""Batched generation for one causal LM: many requests, one ``generate`` call.

Runs in a worker thread (see :class:`moe_domain_llms.batching.MicroBatcher`). Prompts are
left-padded so every row's next token lines up; each row keeps its own limit, stop sequences,
cancellation and streaming sink, enforced by a per-row stopping criterion that transformers
calls after every step. A row that is done is padded by transformers while the others go on,
and its answer is cut exactly where it finished, so a batched answer is the same as the answer
generated alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moe_domain_llms.streaming import StopTrimmer

Sink = Callable[[str], None]


@dataclass
class Job:
    """One request, ready for the model: token ids and how to decode."""

    input_ids: list[int]
    max_new_tokens: int
    stops: list[str] = field(default_factory=list)
    temperature: float | None = None  # None or 0: greedy
    top_p: float | None = None
    seed: int | None = None
    sink: Sink | None = None  # receives text pieces as they are decided (from the worker thread)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def batch_key(self) -> Hashable:
        """Jobs share a batch only when they decode the same way; a seeded job runs alone so
        its random stream is its own."""
        if self.seed is not None:
            return ("seeded", id(self))
        if not self.temperature:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p)


@dataclass
class Output:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class _Row:
    """Decoding state of one job inside a batch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.trimmer = StopTrimmer(job.stops)
        self.decoded = ""  # text decoded so far (before stop trimming)
        self.shown: list[str] = []
        self.done_at: int | None = None  # generated tokens when this row finished
        self.finish_reason = "length"

    def advance(self, tokenizer: Any, generated: list[int], eos_ids: set[int]) -> bool:
        """Take the row's tokens so far; return True when the row is finished."""
        if self.done_at is not None:
            return True
        ended_by_eos = bool(generated) and generated[-1] in eos_ids
        visible = generated[:-1] if ended_by_eos else generated
        text = tokenizer.decode(visible, skip_special_tokens=True)
        # A trailing replacement character is half of a multi-byte character: wait for the rest.
        if not text.endswith("\ufffd") or ended_by_eos:
            piece, self.decoded = text[len(self.decoded) :], text
            self._show(self.trimmer.feed(piece))
        if self.trimmer.stopped or ended_by_eos:
            self._finish(len(generated), "stop")
        elif len(generated) >= self.job.max_new_tokens:
            self._finish(len(generated), "length")
        elif self.job.cancelled.is_set():
            self._finish(len(generated), "stop")
        return self.done_at is not None

    def _show(self, text: str) -> None:
        if text:
            self.shown.append(text)
            if self.job.sink is not None:
                self.job.sink(text)

    def _finish(self, generated: int, reason: str) -> None:
        self._show(self.trimmer.flush())
        self.done_at, self.finish_reason = generated, reason


def generate_batch(model: Any, tokenizer: Any, jobs: Sequence[Job]) -> list[Output]:
    """Generate every job's answer in one ``model.generate`` call (all jobs share a batch key)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    rows = [_Row(job) for job in jobs]
    width = max(len(job.input_ids) for job in jobs)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(j.input_ids)) + j.input_ids for j in jobs])
    attention = torch.tensor(
        [[0] * (width - len(j.input_ids)) + [1] * len(j.input_ids) for j in jobs]
    )
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    class PerRow(StoppingCriteria):
        def __call__(self, ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = ids[:, width:].tolist()
            return torch.tensor(
                [row.advance(tokenizer, generated[i], eos_ids) for i, row in enumerate(rows)],
                dtype=torch.bool,
                device=ids.device,
            )

    first = jobs[0]
    sampling: dict[str, Any]
    if first.temperature:
        sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
    else:
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if first.seed is not None:
        torch.manual_seed(first.seed)
    device = model.device
    model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        max_new_tokens=max(job.max_new_tokens for job in jobs),
        pad_token_id=pad,
        stopping_criteria=StoppingCriteriaList([PerRow()]),
        **sampling,
    )
    return [
        Output(
            text="".join(row.shown),
            prompt_tokens=len(row.job.input_ids),
            completion_tokens=row.done_at or 0,
            finish_reason=row.finish_reason,
        )
        for row in rows
    ]
