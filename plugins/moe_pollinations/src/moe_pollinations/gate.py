"""The ``task-classifier`` gate: classify the prompt, tune its parameters, pick a strategy.

The prompt is classified by a fast Pollinations text model asked for JSON; when that model is
slow, down, or answers something that is not a valid verdict, the local heuristic classifier
decides instead, and the decision's evidence says which one was used and why. The verdict then
picks the strategy:

- text, code, creative, simple reasoning: one model suited to the task, the rest as fallbacks;
- complex reasoning: several strong models combined (``parallel-vote`` by default);
- image, image edit, speech, multimodal: the ``multimodal`` workflow with the text, image and
  speech experts it needs (the slow image model only when the picture needs text or detail).

Every preference list names experts; names not configured are skipped, and an empty list is
filled from the experts' cards, so the gate works with any subset of Pollinations models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import structlog
from pydantic import Field

from moe_core import (
    ChatRequest,
    ExpertCard,
    ExpertUnavailable,
    Gate,
    MoEError,
    RoutingDecision,
    Tracker,
)
from moe_pollinations.classify import (
    CLASSIFIER_PROMPT,
    TASK_TYPES,
    Classification,
    heuristic,
    parse_llm_answer,
)
from moe_pollinations.client import ConnectionOptions, PollinationsClient
from moe_pollinations.tuning import tune

log = structlog.get_logger(__name__)


class TaskClassifierOptions(ConnectionOptions):
    classifier: Literal["llm", "heuristic"] = Field(
        "llm", description="llm: ask classifier_model for JSON, heuristic on failure"
    )
    classifier_model: str = Field("openai-fast", description="Pollinations model that classifies")
    classifier_timeout_s: float = Field(4.0, gt=0, le=60, description="Then: heuristic")
    tune_parameters: bool = Field(True, description="Tune sampling parameters per task")
    fast: list[str] = Field(default_factory=lambda: ["openai-fast", "openai", "mistral"])
    strong: list[str] = Field(
        default_factory=lambda: ["openai-large", "deepseek-reasoning", "openai-reasoning"]
    )
    code: list[str] = Field(default_factory=lambda: ["qwen-coder", "openai-large", "openai"])
    reasoning: list[str] = Field(
        default_factory=lambda: ["deepseek-reasoning", "openai-reasoning", "openai-large"]
    )
    creative: list[str] = Field(default_factory=lambda: ["mistral", "openai-large", "openai"])
    image_fast: list[str] = Field(default_factory=lambda: ["flux", "turbo"])
    image_detailed: list[str] = Field(default_factory=lambda: ["gptimage", "flux"])
    image_edit: list[str] = Field(default_factory=lambda: ["kontext", "gptimage"])
    speech: list[str] = Field(default_factory=lambda: ["openai-audio"])
    combine_above: float = Field(
        0.6, ge=0, le=1, description="Complexity from which reasoning is asked of several models"
    )
    combine_count: int = Field(3, ge=2, le=8)
    combined_strategy: str = Field("parallel-vote", description="Combiner for several models")
    single_strategy: str = Field("single", description="Combiner for one model with fallbacks")
    multimodal_strategy: str = Field("multimodal", description="Combiner for text+image+speech")
    max_fallbacks: int = Field(3, ge=0)


class TaskClassifierGate(Gate):
    """Classifies each prompt (LLM, heuristic fallback) and routes by task, tuning parameters."""

    options: TaskClassifierOptions

    def __init__(self, name: str, options: TaskClassifierOptions) -> None:
        super().__init__(name, options)
        # The classifier must be quick or not at all: no retries, the heuristic is the fallback.
        quick = options.model_copy(update={"max_retries": 0})
        self.client = PollinationsClient(quick, who=f"gate {name!r} classifier")

    async def start(self) -> None:
        if self.options.classifier == "llm":
            await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    # -- classification ----------------------------------------------------------------------

    async def classify(self, request: ChatRequest) -> tuple[Classification, str]:
        """The verdict and how it was reached (``llm:<model>``, ``heuristic (<why>)``...)."""
        prompt = request.last_user_text()
        has_image = _has_image(request)
        hinted = request.hints.task_type
        if hinted in TASK_TYPES:
            verdict = heuristic(prompt, has_image=has_image)
            return verdict.model_copy(update={"task_type": hinted}), "caller (moe.task_type)"
        if self.options.classifier == "heuristic":
            return heuristic(prompt, has_image=has_image), "heuristic"
        try:
            payload = await self.client.chat(
                {
                    "model": self.options.classifier_model,
                    "messages": [
                        {"role": "system", "content": CLASSIFIER_PROMPT},
                        {"role": "user", "content": prompt[:4000]},
                    ],
                    "response_format": {"type": "json_object"},
                    "temperature": 0,
                    "private": True,
                },
                timeout_s=self.options.classifier_timeout_s,
            )
            verdict = parse_llm_answer(payload["choices"][0]["message"].get("content") or "")
        except (MoEError, ValueError) as exc:
            reason = exc.message if isinstance(exc, MoEError) else str(exc)
            log.info("pollinations.classifier_fallback", reason=reason)
            return heuristic(prompt, has_image=has_image), f"heuristic (llm failed: {reason})"
        if verdict.task_type == "image_edit" and not has_image:
            verdict = verdict.model_copy(update={"task_type": "image"})
        return verdict, f"llm:{self.options.classifier_model}"

    # -- routing -----------------------------------------------------------------------------

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        verdict, how = await self.classify(request)
        pick = _Picker(experts, self.options, vision=_has_image(request))
        task = verdict.task_type
        o = self.options
        missing = ""
        chosen: list[str] = []
        fallbacks: list[str] = []
        if task in ("image", "image_edit", "speech", "multimodal"):
            chosen, fallbacks = pick.multimodal(verdict)
            strategy = o.multimodal_strategy
            if not chosen:
                # No model for the modality asked: a text answer is better than none.
                missing = f"; no configured model makes {task} output, so text answers"
                task = "text"
        if not chosen:
            chosen, fallbacks, strategy = self._text_route(task, verdict, pick)
        if not chosen:
            raise ExpertUnavailable(
                f"gate {self.name!r}: no configured expert can handle a {task} request; "
                f"configured: {', '.join(experts)}"
            )
        fallbacks = [name for name in fallbacks if name not in chosen][: o.max_fallbacks]
        overrides = tune(request, verdict) if o.tune_parameters else {}
        if strategy == o.multimodal_strategy and not pick.has_text(chosen):
            overrides = {}
        return RoutingDecision(
            experts=chosen,
            strategy=strategy,
            fallbacks=fallbacks,
            gate=self.name,
            confidence=_confidence(verdict),
            rationale=(
                f"{task} task (complexity {verdict.complexity:.2f}, creativity "
                f"{verdict.creativity:.2f}, visual {verdict.visual_need:.2f}, audio "
                f"{verdict.audio_need:.2f}) classified by {how}: {strategy} with "
                f"{', '.join(chosen)}{missing}"
            ),
            scores={
                "complexity": verdict.complexity,
                "creativity": verdict.creativity,
                "visual_need": verdict.visual_need,
                "audio_need": verdict.audio_need,
            },
            evidence=[
                {"classifier": how, **verdict.model_dump()},
            ],
            overrides=overrides,
        )

    def _text_route(
        self, task: str, verdict: Classification, pick: _Picker
    ) -> tuple[list[str], list[str], str]:
        """Experts, fallbacks and strategy for a text answer."""
        o = self.options
        if task == "reasoning" and verdict.complexity >= o.combine_above:
            strong = pick.text(o.strong + o.reasoning)
            if len(strong) >= 2:
                return strong[: o.combine_count], [], o.combined_strategy
        preferred = {"code": o.code, "reasoning": o.reasoning, "creative": o.creative}
        ranked = pick.text(preferred.get(task, o.fast) + o.fast)
        return ranked[:1], ranked[1:], o.single_strategy


class _Picker:
    """Preference lists resolved against the configured experts and their cards."""

    def __init__(
        self, experts: Mapping[str, ExpertCard], options: TaskClassifierOptions, *, vision: bool
    ) -> None:
        self.experts = experts
        self.options = options
        self.images = [n for n, c in experts.items() if "image" in c.modalities_out]
        self.speakers = [n for n, c in experts.items() if "audio" in c.modalities_out]
        # A request carrying a picture can only go to text models that see pictures.
        self.texts = [
            n
            for n, c in experts.items()
            if "text" in c.modalities_out
            and n not in self.speakers
            and n not in self.images
            and (not vision or "image" in c.modalities_in)
        ]

    def has_text(self, names: list[str]) -> bool:
        return any(name in self.texts for name in names)

    @staticmethod
    def _resolve(preferred: list[str], available: list[str]) -> list[str]:
        ranked = [name for name in dict.fromkeys(preferred) if name in available]
        return ranked + [name for name in available if name not in ranked]

    def text(self, preferred: list[str]) -> list[str]:
        return self._resolve(preferred, self.texts)

    def image(self, preferred: list[str], *, edit: bool) -> list[str]:
        pool = self.images
        if edit:
            pool = [n for n in pool if "image-edit" in self.experts[n].capabilities]
        return self._resolve(preferred, pool)

    def multimodal(self, verdict: Classification) -> tuple[list[str], list[str]]:
        """The text, image and speech experts a multimodal answer needs (each group's best
        first, the next one of each group as fallbacks)."""
        o, task = self.options, verdict.task_type
        chosen: list[str] = []
        fallbacks: list[str] = []
        if task in ("multimodal",):
            texts = self.text(
                o.strong + o.fast if verdict.complexity >= o.combine_above else o.fast
            )
            chosen += texts[:1]
            fallbacks += texts[1:2]
        if task == "image_edit":
            images = self.image(o.image_edit, edit=True)
        elif task == "image" or (task == "multimodal" and verdict.visual_need >= 0.4):
            images = self.image(
                o.image_detailed if verdict.needs_detail else o.image_fast, edit=False
            )
        else:
            images = []
        chosen += images[:1]
        fallbacks += images[1:2]
        if task == "speech" or (task == "multimodal" and verdict.audio_need >= 0.6):
            speakers = self._resolve(o.speech, self.speakers)
            chosen += speakers[:1]
        return chosen, fallbacks


def _has_image(request: ChatRequest) -> bool:
    for message in reversed(request.messages):
        if message.role == "user":
            return not isinstance(message.content, str) and any(
                part.type == "image_url" for part in message.content or []
            )
    return False


def _confidence(verdict: Classification) -> float:
    """How clear-cut the verdict is: strong signals on one axis make a confident call."""
    signal = max(verdict.visual_need, verdict.audio_need, verdict.creativity, verdict.complexity)
    return round(0.5 + 0.5 * signal, 3)
