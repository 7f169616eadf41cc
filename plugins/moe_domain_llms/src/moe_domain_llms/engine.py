"""Batched generation for one causal LM: many requests, one ``generate`` call.

Runs in a worker thread (see :class:`moe_domain_llms.batching.MicroBatcher`). Prompts are
left-padded so every row's next token lines up; each row keeps its own limit, stop sequences,
penalties, cancellation and streaming sink, enforced by a per-row logits processor and a per-row
stopping criterion that transformers calls after every step. A row that is done is padded by
transformers while the others go on, and its answer is cut exactly where it finished, so a
batched answer is the same as the answer generated alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moe_domain_llms.streaming import StopTrimmer

Sink = Callable[[str], None]
# The end of a sentence or a line: where an answer past its soft limit may stop. A full stop right
# after a digit is skipped, as it is more often a list number or a decimal point than an end.
_SENTENCE_END = re.compile(r"(?:(?<!\d)\.|[!?\u2026]|\n)[\"'\u201d\u2019)\]*]*$")


@dataclass
class Job:
    """One request, ready for the model: token ids and how to decode."""

    input_ids: list[int]
    max_new_tokens: int
    stops: list[str] = field(default_factory=list)
    temperature: float | None = None  # None or 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    end_sentence_after: int | None = None
    """Past this many tokens the answer ends at its next sentence end (``max_new_tokens`` still
    holds): a default limit then ends an answer instead of cutting a sentence in two."""
    sink: Sink | None = None  # receives text pieces as they are decided (from the worker thread)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def batch_key(self) -> Hashable:
        """Jobs share a batch only when they pick tokens the same way (penalties are per row);
        a seeded job runs alone so its random stream is its own."""
        if self.seed is not None:
            return ("seeded", id(self))
        if not self.temperature:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p, self.top_k)


@dataclass
class Output:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class Cancelled(Exception):
    """Every job of the running batch was cancelled: the forward pass stops between layers."""


class ForwardGuard:
    """Stops a batch whose every caller has gone, even in the middle of a forward pass.

    The stopping criterion is asked only after each new token; reading a long prompt is one
    forward pass of many seconds on a CPU. A hook before every layer (the members of the model's
    ``ModuleList``\\ s) checks the running batch's cancellation flags, so a cancelled batch
    stops within one layer's work, and shutdown is never held by a prompt nobody waits for.
    """

    def __init__(self, model: Any) -> None:
        import torch

        self.jobs: Sequence[Job] = ()
        for module in model.modules():
            if isinstance(module, torch.nn.ModuleList):
                for layer in module:
                    layer.register_forward_pre_hook(self._check)

    def _check(self, module: Any, args: Any) -> None:
        jobs = self.jobs
        if jobs and all(job.cancelled.is_set() for job in jobs):
            raise Cancelled


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
        job = self.job
        if self.trimmer.stopped or ended_by_eos:
            self._finish(len(generated), "stop")
        elif len(generated) >= job.max_new_tokens or (
            # A default limit ends the answer at a sentence end, not in the middle of one.
            job.end_sentence_after is not None
            and len(generated) >= job.end_sentence_after
            and _SENTENCE_END.search(self.decoded)
        ):
            self._finish(len(generated), "length")
        elif job.cancelled.is_set():
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


def _penalties(width: int, jobs: Sequence[Job], exempt: set[int]) -> Any:
    """A logits processor applying each row's repetition, frequency and presence penalties.

    Only the answer so far counts, never the prompt: a prompt's chat template is full of the
    end-of-turn token, and penalising it would keep the model from ever ending. The
    end-of-sequence tokens are exempt for the same reason. ``repetition_penalty`` divides a seen
    token's positive logit (multiplies a negative one), as transformers and llama.cpp do;
    ``frequency_penalty`` and ``presence_penalty`` subtract, as OpenAI documents:
    ``logit - count * frequency - (count > 0) * presence``.
    """
    import torch
    from transformers import LogitsProcessor

    repetition = torch.tensor([[job.repetition_penalty] for job in jobs])
    frequency = torch.tensor([[job.frequency_penalty] for job in jobs])
    presence = torch.tensor([[job.presence_penalty] for job in jobs])
    exempt_ids = sorted(exempt)

    class Penalties(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            generated = input_ids[:, width:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            if exempt_ids:
                counts[:, exempt_ids] = 0
            seen = counts > 0
            rep = repetition.to(scores.device, scores.dtype)
            penalised = torch.where(scores > 0, scores / rep, scores * rep)
            scores = torch.where(seen, penalised, scores)
            freq = frequency.to(scores.device, scores.dtype)
            pres = presence.to(scores.device, scores.dtype)
            return scores - freq * counts - pres * seen.to(scores.dtype)

    return Penalties()


def generate_batch(
    model: Any, tokenizer: Any, jobs: Sequence[Job], guard: ForwardGuard | None = None
) -> list[Output]:
    """Generate every job's answer in one ``model.generate`` call (all jobs share a batch key)."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

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
        sampling = {
            "do_sample": True,
            "temperature": first.temperature,
            "top_p": first.top_p,
            "top_k": first.top_k,
        }
    else:
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    processors = LogitsProcessorList()
    if any(j.repetition_penalty != 1 or j.frequency_penalty or j.presence_penalty for j in jobs):
        processors.append(_penalties(width, jobs, eos_ids))
    if first.seed is not None:
        torch.manual_seed(first.seed)
    device = model.device
    if guard is not None:
        guard.jobs = jobs
    try:
        model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max(job.max_new_tokens for job in jobs),
            pad_token_id=pad,
            # Our processor applies the model's own repetition_penalty (see HFCausalLMExpert),
            # over the answer only; transformers' would apply it a second time, prompt included.
            repetition_penalty=1.0,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([PerRow()]),
            **sampling,
        )
    except Cancelled:
        for row in rows:
            if row.done_at is None:
                row.done_at, row.finish_reason = 0, "cancelled"
    finally:
        if guard is not None:
            guard.jobs = ()
    return [
        Output(
            text="".join(row.shown),
            prompt_tokens=len(row.job.input_ids),
            completion_tokens=row.done_at or 0,
            finish_reason=row.finish_reason,
        )
        for row in rows
    ]
