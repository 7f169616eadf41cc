"""The bundled routing data: the held-out split stays held out, so the reported accuracy is what
the gate does on queries it never saw."""

from __future__ import annotations

import re
from collections import Counter

from moe_domain_llms.gates import DEFAULT_DATA
from moe_domain_llms.training import load_dataset

LABELS = {"healthcare", "finance", "cybersecurity", "general"}


def normalised(text: str) -> str:
    """Case, spacing and punctuation do not make a query new: "What's a 401(k)?" and
    "whats a 401k" are the same query."""
    return re.sub(r"[\W_]+", "", text.lower())


def test_normalising_ignores_case_spacing_and_punctuation_but_not_words():
    assert normalised("What's a 401(k)?") == normalised("whats  a 401k")
    assert normalised("SQL-injection, explained!") == normalised("sql injection explained")
    assert normalised("what is a put option") != normalised("what is a call option")


def test_no_training_query_repeats_a_held_out_query():
    dataset = load_dataset(DEFAULT_DATA)
    train = {normalised(text) for text in dataset.part("train")[0]}
    leaked = [text for text in dataset.part("test")[0] if normalised(text) in train]
    assert not leaked, f"held-out queries also in the train split: {leaked[:5]}"


def test_every_row_has_a_known_label_and_split_and_no_query_is_listed_twice():
    dataset = load_dataset(DEFAULT_DATA)
    assert set(dataset.labels) == LABELS
    assert set(dataset.splits) == {"train", "test"}
    repeated = [q for q, n in Counter(map(normalised, dataset.texts)).items() if n > 1]
    assert not repeated, f"queries listed more than once: {repeated[:5]}"


def test_every_label_has_enough_training_and_held_out_queries():
    dataset = load_dataset(DEFAULT_DATA)
    train = Counter(dataset.part("train")[1])
    test = Counter(dataset.part("test")[1])
    assert all(train[label] >= 300 for label in LABELS), train
    assert all(test[label] >= 80 for label in LABELS), test
