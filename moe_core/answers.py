"""What an answer shows of its own quality, with no model and no cost.

An empty or truncated answer, a refusal or admitted uncertainty, calculator annotations
(``<<6*4=25>>``) that do not add up, and self-corrections. The ``answer-check`` scorer uses the
estimate as it is; learned scorers use the same signs as features, which is why they live in the
contract rather than in one plugin.
"""

from __future__ import annotations

import math
import re

from moe_core.models import ExpertResult

CALCULATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
HEDGES = re.compile(
    r"\b(however|actually|wait|mistake|correction|instead|approximately|unclear|assum\w*)\b"
)
UNSURE = re.compile(
    r"\b(i'?m not sure|i am not sure|i don'?t know|i cannot|i can'?t|unable to|as an ai|"
    r"not enough information|impossible to (?:say|tell|determine))\b"
)
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()%]+$")


def wrong_calculations(answer: str) -> tuple[int, int]:
    """How many ``<<expr=value>>`` annotations an answer has, and how many do not add up."""
    calls = CALCULATION.findall(answer)
    wrong = 0
    for expression, value in calls:
        expression = expression.replace(",", "").replace("x", "*")
        try:
            if not _ARITHMETIC.match(expression):
                raise ValueError(expression)
            # Only digits, dots, brackets and operators get here (checked just above).
            computed = eval(expression, {"__builtins__": {}})
            wrong += not math.isclose(computed, float(value.replace(",", "")), rel_tol=1e-6)
        except (ValueError, SyntaxError, ZeroDivisionError, TypeError, OverflowError):
            wrong += 1
    return len(calls), wrong


def answer_check(answer: ExpertResult) -> float:
    """A no-cost estimate that an answer needs escalating, from what is visible in it."""
    text = answer.content.strip()
    if not text:
        return 1.0
    lowered = text.lower()
    score = 0.0
    if answer.finish_reason == "length":
        score += 0.4
    if UNSURE.search(lowered):
        score += 0.5
    if wrong_calculations(text)[1]:
        score += 0.5
    score += min(0.3, 0.1 * len(HEDGES.findall(lowered)))
    return min(1.0, score)
