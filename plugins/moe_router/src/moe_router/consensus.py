"""Combiners that ask several experts and pick one answer: vote, quality-weighted, judge.

Answers are compared by what they conclude, not by how they are worded: when an answer states a
short final answer (``#### 18``, ``The answer is 18``, ``\\boxed{18}``, or a final number), that
is what is compared. Otherwise, with an ``embedder`` (an expert that answers
``moe.task_type: embed`` with a JSON array of floats, such as ``sentence-embedding``), answers
whose embeddings' cosine similarity is at least ``semantic_similarity`` count as the same answer,
so two wordings of one answer agree; without one (or if it fails), answers whose words overlap
enough (Jaccard similarity of their word sets at least ``similarity``) do. The winning group's
answer from its highest-quality expert is returned, and ``moe_metadata.notes`` says how the vote
went.

The response's ``model`` names the expert whose answer was returned, never the embedder or the
judge that helped pick it; ``moe_metadata.experts_used`` still lists every expert called.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping

import orjson
from pydantic import Field

from moe_core.errors import GateError, MoEError
from moe_core.models import ChatRequest, ExpertCard, ExpertResult
from moe_core.parts import ParallelCombiner, ParallelOptions, require_known_experts
from moe_core.run import Run

_FINAL = [
    re.compile(r"####\s*\$?\s*([-\d.,/]+)"),
    re.compile(r"\\boxed\{([^}]*)\}"),
    re.compile(r"(?:final answer|the answer) is:?\s*\$?\s*([-\w.,/]+)", re.IGNORECASE),
]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"\w+")
DEFAULT_QUALITY = 0.5

JUDGE_PROMPT = (
    "Question:\n{question}\n\nCandidate answers:\n{candidates}\n\n"
    "Which candidate answers the question best? Start your reply with 'Best: <number>', then "
    "give one sentence saying why."
)


def expert_quality(run: Run, expert: str) -> float:
    """The card's quality, or a neutral 0.5 for an expert whose card does not say."""
    quality = run.card(expert).quality
    return DEFAULT_QUALITY if quality is None else quality


def answered_by(run: Run, expert: str) -> None:
    """Make ``expert`` the last of ``run.experts_used``.

    The gateway reports the last expert used as the answer's ``model`` (and feedback credits
    it), but an embedder or a judge is called after the answers it helps pick, so without this
    the judge would be named as the author of an answer it only chose.
    """
    run.experts_used.remove(expert)
    run.experts_used.append(expert)


def final_answer(text: str) -> str | None:
    """The short answer a response concludes with, normalised, if it states one."""
    for pattern in _FINAL:
        found = pattern.findall(text)
        if found:
            return _normalise(found[-1])
    numbers = _NUMBER.findall(text.strip()[-80:])
    return _normalise(numbers[-1]) if numbers else None


def _normalise(answer: str) -> str:
    answer = answer.strip().strip(".").replace(",", "").lower()
    try:
        number = float(answer)
    except ValueError:
        return answer
    return str(int(number)) if number.is_integer() else str(number)


def group_answers(
    answers: list[tuple[str, ExpertResult]],
    similarity: float,
    vectors: list[list[float]] | None = None,
    semantic_similarity: float = 0.85,
) -> list[list[int]]:
    """Indices of answers that say the same thing, grouped: by final answer where both state
    one, else by the cosine of their ``vectors`` (unit length) when given, else by word overlap."""
    finals = [final_answer(result.content) for _, result in answers]
    words = [set(_WORD.findall(result.content.lower())) for _, result in answers]
    groups: list[list[int]] = []
    for index in range(len(answers)):
        for group in groups:
            first = group[0]
            if finals[index] is not None and finals[first] is not None:
                same = finals[index] == finals[first]
            elif vectors is not None:
                cosine = sum(a * b for a, b in zip(vectors[index], vectors[first], strict=True))
                same = cosine >= semantic_similarity
            else:
                union = words[index] | words[first]
                same = bool(union) and len(words[index] & words[first]) / len(union) >= similarity
            if same:
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


class VoteOptions(ParallelOptions):
    similarity: float = Field(0.6, gt=0, le=1, description="Word overlap that counts as agreeing")
    embedder: str | None = Field(
        None, description="An expert that embeds text, to compare free-text answers by meaning"
    )
    semantic_similarity: float = Field(
        0.85, gt=-1, le=1, description="Embedding cosine that counts as agreeing"
    )


class VoteCombiner(ParallelCombiner):
    """Asks every expert; the answer most of them agree on wins, ties going to quality."""

    options: VoteOptions
    weighted = False

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        super().check_experts(experts)
        require_known_experts(experts, "combiner", {"embedder": self.options.embedder})

    async def complete(self, run: Run) -> ExpertResult:
        answers = await self.answers(run)
        vectors = await self._embed(run, answers)
        groups = group_answers(
            answers, self.options.similarity, vectors, self.options.semantic_similarity
        )

        def quality(index: int) -> float:
            return expert_quality(run, answers[index][0])

        def standing(group: list[int]) -> tuple[float, float]:
            votes = sum(quality(i) if self.weighted else 1.0 for i in group)
            return votes, max(quality(i) for i in group)

        best = max(groups, key=standing)
        chosen = max(best, key=quality)
        votes, _ = standing(best)
        total = sum(standing(group)[0] for group in groups)
        agreeing = ", ".join(answers[i][0] for i in best)
        kind = "quality-weighted votes" if self.weighted else "votes"
        run.note(
            f"{kind}: {votes:g} of {total:g} for the answer of {agreeing}; "
            f"{len(groups)} distinct answer(s); returned {answers[chosen][0]}'s wording"
        )
        answered_by(run, answers[chosen][0])
        return answers[chosen][1].model_copy(update={"usage": run.usage})

    async def _embed(
        self, run: Run, answers: list[tuple[str, ExpertResult]]
    ) -> list[list[float]] | None:
        """Every answer's embedding from the embedder, or None (word overlap decides then)."""
        embedder = self.options.embedder
        if embedder is None or len(answers) < 2:
            return None
        requests = [
            ChatRequest(
                messages=[{"role": "user", "content": result.content}], moe={"task_type": "embed"}
            )
            for _, result in answers
        ]
        try:
            replies = await asyncio.gather(*(run.call(embedder, r) for r in requests))
            vectors = [_unit(orjson.loads(reply.content)) for reply in replies]
        except (MoEError, ValueError, TypeError) as exc:
            reason = exc.message if isinstance(exc, MoEError) else f"not a vector: {exc}"
            run.note(f"embedder {embedder!r} failed ({reason}); answers compared by their words")
            return None
        return vectors


def _unit(vector: object) -> list[float]:
    """A JSON array of numbers scaled to length 1."""
    if not isinstance(vector, list) or not vector:
        raise ValueError("expected a non-empty JSON array of numbers")
    values = [float(x) for x in vector]
    norm = math.sqrt(sum(x * x for x in values)) or 1.0
    return [x / norm for x in values]


class QualityWeightedCombiner(VoteCombiner):
    """Like the vote, but each expert's vote counts as much as its card's quality."""

    weighted = True


class JudgeOptions(ParallelOptions):
    judge: str | None = Field(
        None, description="The expert that picks the best answer; default: the decision's judge"
    )


class JudgeCombiner(ParallelCombiner):
    """Asks every expert, then a judge expert picks the best answer and says why."""

    options: JudgeOptions

    def check_experts(self, experts: Mapping[str, ExpertCard]) -> None:
        super().check_experts(experts)
        require_known_experts(experts, "combiner", {"judge": self.options.judge})

    async def complete(self, run: Run) -> ExpertResult:
        answers = await self.answers(run)
        if len(answers) == 1:
            run.note(f"only {answers[0][0]} answered; nothing to judge")
            return answers[0][1]
        candidates = "\n\n".join(
            f"[{number}] {result.content.strip()}"
            for number, (_, result) in enumerate(answers, start=1)
        )
        prompt = JUDGE_PROMPT.format(question=run.request.last_user_text(), candidates=candidates)
        request = ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=200)
        judge = self.options.judge or run.decision.judge
        try:
            if judge is None:
                raise GateError(
                    "the judge combiner needs a judge: set combiner.judge, or use a gate that "
                    "names one in its decision (multi-factor)"
                )
            verdict = (await run.call(judge, request)).content
        except MoEError as exc:
            verdict, failure = "", f"the judge failed ({exc.message})"
        else:
            failure = f"the judge's reply settled on no candidate ({verdict[:80]!r})"
        pick = judged_pick(verdict, len(answers))
        if pick is None:
            # A judge that rambles or fails must not fail the request: fall back to quality.
            pick = max(range(len(answers)), key=lambda i: expert_quality(run, answers[i][0]))
            run.note(f"{failure}; picked {answers[pick][0]}, the highest-quality expert")
        else:
            reason = verdict.split("\n")[0].strip()
            run.note(f"the judge picked {answers[pick][0]}: {reason[:300]}")
        answered_by(run, answers[pick][0])
        return answers[pick][1].model_copy(update={"usage": run.usage})


def judged_pick(verdict: str, count: int) -> int | None:
    """The 0-based candidate a judge chose, or None when its reply does not settle it.

    An explicit "best: N" wins. Otherwise the reply must mention exactly one candidate: a judge
    that discusses several without saying which is best has not chosen, and guessing from the
    first number it mentions would often pick the one it is criticising.
    """
    lowered = verdict.lower()
    for found in re.findall(r"best\W{0,3}(?:answer|candidate|is)?\W{0,3}\[?#?(\d+)", lowered):
        if 1 <= int(found) <= count:
            return int(found) - 1
    mentioned = {
        int(number)
        for pair in re.findall(r"(?:answer|candidate)\s*\[?#?(\d+)|\[(\d+)\]", lowered)
        for number in pair
        if number and 1 <= int(number) <= count
    }
    return mentioned.pop() - 1 if len(mentioned) == 1 else None
