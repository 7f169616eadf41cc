"""Plain arithmetic in a question, worked out exactly instead of guessed by the model.

A small language model cannot multiply: asked what 17 times 23 is, SmolLM2-135M answers 381.
When the last user message holds a plain arithmetic expression (numbers, ``+ - * / ^ **``, the
multiplication and division signs, ``x`` between numbers, parentheses), :func:`find` evaluates
it exactly with a small evaluator over Python's AST: only number literals and those operators,
so no name, call or attribute can run; operands, exponents and results are bounded, so
``9^9^9`` cannot hold the CPU. Percentages, units, variables and word problems are out of scope
and left to the model.

The ``hf-causal-lm`` expert answers a message that is nothing but such an expression
("what is 17 * 23?", "calculate (12 + 8) * 3") itself, with the exact result, and gives the
exact results to the model as context when the expression sits inside a longer question.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_TIMES, _DIVIDED, _MINUS = (
    "\u00d7\u2715\u00b7",
    "\u00f7",
    "\u2212",
)  # as typed on phones and in prose
_OPERATOR = rf"(?:\*\*|[-+*/^{_TIMES}{_DIVIDED}{_MINUS}]|(?<=[\d\s)])[xX](?=[\s\d(]))"
_EXPRESSION = re.compile(
    rf"[(\s]*-?{_NUMBER}[)\s]*(?:{_OPERATOR}[(\s]*-?{_NUMBER}[)\s]*)+", re.UNICODE
)
# What may surround an expression for the message to be nothing but a request to work it out.
_ONLY = re.compile(
    r"^\s*(?:please\s+)?(?:(?:what\s+is|what's|whats|how\s+much\s+is|calculate|compute|evaluate"
    r"|solve|work\s+out)\s*:?\s*)?(?P<expression>.+?)\s*(?:=\s*)?\??\s*[.!]?\s*$",
    re.IGNORECASE,
)
# Inside a longer message "10-20 minutes", "3/4 cup" or "2024-05-01" are not sums to do: there,
# only an expression with an operator that is not "-" or "/", or one spaced out, counts.
_CLEARLY_ARITHMETIC = re.compile(rf"[+*^{_TIMES}{_DIVIDED}]|\s[-/xX{_MINUS}]\s")
_SPELLING = str.maketrans({**dict.fromkeys(_TIMES + "xX", "*"), _DIVIDED: "/", _MINUS: "-"})
MAX_LENGTH = 200
MAX_DIGITS = 30  # of an operand, and of a whole-number exponent's result
MAX_EXPONENT = 64

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@dataclass(frozen=True)
class Calculation:
    """One expression found in a message and its exact value."""

    expression: str  # as the user wrote it
    value: str  # to ten decimal places at most
    exact: bool = True

    def __str__(self) -> str:
        return f"{self.expression} {'=' if self.exact else '≈'} {self.value}"


@dataclass(frozen=True)
class Found:
    calculations: list[Calculation]
    whole_message: bool
    """The message asks for nothing but the one calculation: it can be answered without the
    model."""


def find(message: str) -> Found | None:
    """Every plain arithmetic expression in ``message`` with its value, or ``None``."""
    if len(message) > 4 * MAX_LENGTH:
        return None
    calculations = []
    for match in _EXPRESSION.finditer(message):
        written = _balanced(match.group().strip())
        calculation = _calculate(written) if written else None
        if calculation is not None:
            calculations.append(calculation)
    only = _ONLY.match(message)
    if (
        len(calculations) == 1
        and only is not None
        and _balanced(only.group("expression").strip()) == calculations[0].expression
    ):
        return Found(calculations, whole_message=True)
    calculations = [c for c in calculations if _CLEARLY_ARITHMETIC.search(c.expression)]
    return Found(calculations, whole_message=False) if calculations else None


def _balanced(text: str) -> str:
    """``text`` without unmatched parentheses at its ends (the regex cannot count them)."""
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].strip()
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].strip()
    return text


def _calculate(written: str) -> Calculation | None:
    if len(written) > MAX_LENGTH:
        return None
    source = written.translate(_SPELLING).replace("^", "**")
    source = re.sub(r"(?<=\d),(?=\d{3})", "", source)
    try:
        tree = ast.parse(source, mode="eval")
        value = _evaluate(tree.body)
        shown = _show(value)
        return Calculation(written, shown, exact=Fraction(shown) == value)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if len(str(node.value)) > MAX_DIGITS:
            raise ValueError("operand too long")
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        apply = _BINARY.get(type(node.op))
        if apply is not None:
            return apply(left, right)
    raise ValueError("not plain arithmetic")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ValueError("only small whole exponents")
    if base != 0 and abs(exponent) * len(str(abs(base.numerator))) > 4 * MAX_DIGITS:
        raise ValueError("result too large")
    return base ** int(exponent)


def _show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10f}".rstrip("0").rstrip(".")
