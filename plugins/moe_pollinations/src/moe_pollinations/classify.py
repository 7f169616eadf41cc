"""What a prompt asks for: task type, complexity, creativity, and whether it needs a picture or
speech. Two classifiers give the same :class:`Classification`: a fast local one made of keyword
and shape features (always available, microseconds), and an LLM one that asks a fast text model
for JSON (better on unusual phrasing); the gate uses the LLM one when it answers in time with
valid JSON, and the local one otherwise.
"""

from __future__ import annotations

import re
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TaskType = Literal[
    "text", "code", "reasoning", "creative", "image", "image_edit", "speech", "multimodal"
]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]


class Classification(BaseModel):
    """The classifier's verdict on one prompt (scores in 0..1)."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    complexity: float = Field(ge=0, le=1)
    creativity: float = Field(ge=0, le=1)
    visual_need: float = Field(ge=0, le=1, description="How much a picture would help or is asked")
    audio_need: float = Field(ge=0, le=1, description="How much speech is asked for")
    needs_detail: bool = Field(
        False, description="The picture must render text or fine detail (slow image model)"
    )


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


_IMAGE = _words(
    "draw",
    "drawing",
    "paint",
    "painting",
    "picture",
    "image",
    "illustrate",
    "illustration",
    "sketch",
    "photo",
    "render",
    "diagram",
    "logo",
    "poster",
    "visuali[sz]e",
    "show me",
    "wallpaper",
    "portrait",
    "infographic",
)
_EDIT = _words(
    "edit",
    "modify",
    "change",
    "recolou?r",
    "replace",
    "remove",
    "add",
    "make",
    "turn",
    "put",
    "give",
    "convert",
    "transform",
    "restyle",
    "colou?ri[sz]e",
    "erase",
    "swap",
)
_QUESTION = re.compile(
    r"\?\s*$|^\s*(?:what|who|which|where|when|why|how|describe|is|are|does|do|can|tell)\b",
    re.IGNORECASE,
)
_SPEECH = _words(
    "aloud",
    "read out",
    "say it",
    "speak",
    "narrate",
    "narration",
    "voice",
    "audio",
    "pronounce",
    "text to speech",
    "tts",
    "out loud",
    "podcast",
)
_CODE = _words(
    "code",
    "function",
    "class",
    "python",
    "javascript",
    "typescript",
    "java",
    "rust",
    "golang",
    "sql",
    "bug",
    "debug",
    "compile",
    "regex",
    "script",
    "api",
    "implement",
    "refactor",
    "stack trace",
    "exception",
    "algorithm",
)
_CODE_SHAPE = re.compile(r"```|def \w+\(|\w+\(\)|;\s*$|=>|\{\s*\}", re.MULTILINE)
_REASONING = _words(
    "why",
    "prove",
    "proof",
    "derive",
    "analy[sz]e",
    "analysis",
    "compare",
    "evaluate",
    "implications",
    "explain",
    "reason",
    "calculate",
    "solve",
    "math",
    "equation",
    "logic",
    "trade-?offs?",
    "step by step",
)
_CREATIVE = _words(
    "story",
    "poem",
    "poetry",
    "haiku",
    "lyrics",
    "song",
    "fiction",
    "novel",
    "creative",
    "imagine",
    "invent",
    "joke",
    "limerick",
    "screenplay",
    "fairy tale",
)
_COMPLEX = _words(
    "complex",
    "detailed",
    "in depth",
    "in-depth",
    "comprehensive",
    "thorough",
    "technical",
    "architecture",
    "quantum",
    "cryptography",
    "theorem",
    "optimi[sz]e",
    "distributed",
)
_DETAIL = _words(
    "text",
    "label",
    "labell?ed",
    "caption",
    "words",
    "writing",
    "sign",
    "title",
    "typography",
    "detailed",
    "intricate",
    "infographic",
    "diagram",
    "chart",
    "menu",
)


def heuristic(prompt: str, *, has_image: bool = False) -> Classification:
    """The fast local classifier: keyword families and the prompt's shape."""
    words = len(prompt.split())
    image_hits = len(_IMAGE.findall(prompt))
    speech_hits = len(_SPEECH.findall(prompt))
    code_hits = len(_CODE.findall(prompt)) + 2 * len(_CODE_SHAPE.findall(prompt))
    reasoning_hits = len(_REASONING.findall(prompt))
    creative_hits = len(_CREATIVE.findall(prompt))
    complex_hits = len(_COMPLEX.findall(prompt))

    complexity = min(
        1.0,
        0.1
        + 0.2 * (words > 50)
        + 0.2 * (words > 100)
        + 0.15 * min(complex_hits, 3)
        + 0.1 * min(reasoning_hits, 3)
        + 0.05 * min(code_hits, 3),
    )
    creativity = min(1.0, 0.1 + 0.3 * min(creative_hits, 3))
    # With a picture attached, an instruction to change it is an edit; a question about it is a
    # vision task for a text model, and its picture words do not ask for a new picture.
    edit = has_image and bool(_EDIT.search(prompt)) and not _QUESTION.search(prompt)
    visual = 1.0 if edit else 0.0 if has_image else min(1.0, 0.45 * image_hits)
    audio = min(1.0, 0.6 * speech_hits)
    needs_detail = bool(_DETAIL.search(prompt)) and visual >= 0.4

    wants_text = reasoning_hits + code_hits + creative_hits > 0 or words > 12
    if edit:
        task: str = "image_edit"
    elif visual >= 0.4 and audio >= 0.6:
        task = "multimodal"
    elif visual >= 0.4:
        task = "multimodal" if wants_text and not _only_picture(prompt) else "image"
    elif audio >= 0.6:
        task = "multimodal" if wants_text and reasoning_hits else "speech"
    elif code_hits and code_hits >= creative_hits:
        task = "code"
    elif reasoning_hits and (complexity >= 0.4 or reasoning_hits >= 2):
        task = "reasoning"
    elif creative_hits:
        task = "creative"
    else:
        task = "text"
    return Classification(
        task_type=task,  # type: ignore[arg-type]
        complexity=round(complexity, 3),
        creativity=round(creativity, 3),
        visual_need=round(visual, 3),
        audio_need=round(audio, 3),
        needs_detail=needs_detail,
    )


_PICTURE_ONLY = re.compile(
    r"^\s*(?:please\s+)?(?:draw|paint|sketch|generate|create|make|render)\b(?:\s+me)?"
    r"\s+(?:an?\s+)?(?:image|picture|photo|drawing|painting|illustration|logo|poster)?",
    re.IGNORECASE,
)


def _only_picture(prompt: str) -> bool:
    """``Draw a cat`` asks for a picture, not for an essay about cats."""
    return bool(_PICTURE_ONLY.match(prompt)) and not _REASONING.search(prompt)


CLASSIFIER_PROMPT = (
    "Classify the user's request for a router. Answer with one JSON object and nothing else, "
    'with exactly these keys: "task_type" (one of: ' + ", ".join(TASK_TYPES) + "), "
    '"complexity", "creativity", "visual_need", "audio_need" (numbers from 0 to 1) and '
    '"needs_detail" (true if a requested picture must render text or fine detail). '
    "image_edit means changing a picture the user supplied; multimodal means a text answer "
    "together with a picture or speech."
)


def parse_llm_answer(text: str) -> Classification:
    """Validate an LLM's JSON verdict; ``ValueError`` names what is wrong with it."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the classifier's answer: {text[:120]!r}")
    try:
        return Classification.model_validate(orjson.loads(cleaned[start : end + 1]))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"invalid classifier JSON: {exc}".splitlines()[0]) from None
