"""What an input looks like, as numbers: the features the ``features`` gate routes on.

The seed's five (length, average word length, special-character ratio, uppercase ratio,
is_binary) are computed for real, plus what separates "short, symbol-dense, byte-level" inputs
from "long prose documents": code-likeness, line count, a token estimate, and how much of the
text is ordinary English function words. Every feature is cheap (one pass of regexes over the
text), so routing costs microseconds, not a model call.
"""

from __future__ import annotations

import math
import re

# Order matters: it is the column order of the trained classifier.
NAMES = (
    "length",
    "avg_word_length",
    "special_char_ratio",
    "uppercase_ratio",
    "is_binary",
    "code_likeness",
    "line_count",
    "token_estimate",
    "digit_ratio",
    "function_word_ratio",
    "avg_sentence_words",
)
# Counts spread over orders of magnitude; the classifier sees their logarithms.
LOG_SCALED = frozenset({"length", "line_count", "token_estimate", "avg_sentence_words"})

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_CODE_MARKERS = re.compile(
    r"[{};]|=>|->|::|==|!=|<=|>=|&&|\|\||\+=|\(\)|\[\]|</?\w+>|^\s*(?:def|class|import|from|"
    r"return|if|for|while|function|const|let|var|public|private|static|void|int|#include|SELECT|"
    r"INSERT|UPDATE|fn|impl|package|func)\b|\w+\(|\b\w+_\w+\b|\b[a-z]+[A-Z]\w*\b",
    re.MULTILINE,
)
_FUNCTION_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "with",
        "for",
        "on",
        "at",
        "by",
        "from",
        "as",
        "not",
        "which",
        "who",
        "what",
        "when",
        "where",
        "how",
        "than",
        "then",
        "so",
        "such",
        "can",
        "could",
        "would",
        "should",
        "will",
        "may",
        "might",
        "must",
        "our",
        "their",
        "there",
        "they",
        "we",
        "he",
        "she",
        "his",
        "her",
        "you",
        "your",
        "i",
        "into",
        "about",
        "over",
        "after",
        "before",
        "between",
        "during",
        "also",
        "more",
        "most",
        "other",
        "some",
        "any",
        "each",
        "all",
    ]
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def extract(text: str) -> dict[str, float]:
    """The named features of one input (``is_binary`` is 1.0 or 0.0)."""
    length = len(text)
    words = _WORD.findall(text)
    letters = sum(ch.isalpha() for ch in text)
    visible = sum(not ch.isspace() for ch in text) or 1
    special = sum(not ch.isalnum() and not ch.isspace() for ch in text)
    tokens = _TOKEN.findall(text)
    sentences = max(1, len(_SENTENCE_END.findall(text)))
    return {
        "length": float(length),
        "avg_word_length": sum(map(len, words)) / len(words) if words else 0.0,
        "special_char_ratio": special / visible,
        "uppercase_ratio": sum(ch.isupper() for ch in text) / letters if letters else 0.0,
        "is_binary": 1.0 if is_binary(text) else 0.0,
        "code_likeness": len(_CODE_MARKERS.findall(text)) / max(1, len(tokens)),
        "line_count": float(text.count("\n") + 1 if text else 0),
        "token_estimate": float(len(tokens)),
        "digit_ratio": sum(ch.isdigit() for ch in text) / visible,
        "function_word_ratio": (
            sum(word.lower() in _FUNCTION_WORDS for word in words) / len(words) if words else 0.0
        ),
        "avg_sentence_words": len(words) / sentences,
    }


def is_binary(text: str) -> bool:
    """Whether the text is really bytes that are not text: NULs, or control and replacement
    characters (what undecodable bytes become) making up over 10% of it."""
    if not text:
        return False
    if "\x00" in text:
        return True
    return len(_CONTROL.findall(text)) / len(text) > 0.10


def vector(features: dict[str, float]) -> list[float]:
    """The features in the classifier's column order, counts log-scaled."""
    return [math.log1p(features[name]) if name in LOG_SCALED else features[name] for name in NAMES]
