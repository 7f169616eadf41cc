"""The embedding gate's second opinion: a model on a language model's states and character
n-grams, trained beside the first one and consulted only where the first is unsure.

A tiny random Llama stands in for SmolLM2 (the code path is the same; the figures are not)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_domain_llms import artefacts
from moe_domain_llms.gates import DEFAULT_DATA, EmbeddingGate, EmbeddingGateOptions
from moe_domain_llms.second_opinion import CONSULT_BELOW
from moe_domain_llms.terms import TfidfFeatures
from moe_domain_llms.training import _tfidf_arrays, evaluate, load_dataset
from tests.conftest import user
from tests.plugins.moe_domain_llms.conftest import WORDS, write_tiny_queries


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """Two gates from the same rows, frozen encoder (seconds): one with a second opinion read
    from the tiny model's second layer, one without."""
    folder = tmp_path_factory.mktemp("second-opinion")
    data = write_tiny_queries(folder)
    options = {"data": str(data), "finetune_epochs": 0, "lm": tiny_model, "lm_layer": 2}
    with_lm, without = folder / "with.npz", folder / "without.npz"
    result = gate_for(with_lm, **options).train(with_lm, progress=False)
    gate_for(without, **options, second_opinion=False).train(without, progress=False)
    return data, with_lm, without, result, tiny_model


def gate_for(path, **options) -> EmbeddingGate:
    return EmbeddingGate("g", EmbeddingGateOptions(artefact=str(path), **options))


def config_for(path, **gate) -> dict:
    return {
        "experts": {name: {"kind": "echo"} for name in WORDS},
        "gate": {"kind": "embedding", "artefact": str(path), **gate},
    }


def test_the_artefact_records_the_second_opinion_and_what_it_was_worth(trained):
    _, with_lm, _, result, tiny_model = trained
    artefact = artefacts.load(with_lm, "embedding", where="test")
    opinion = artefact.meta["second_opinion"]
    assert opinion["lm"] == tiny_model and opinion["layer"] == 2
    assert opinion["consult_below"] == CONSULT_BELOW
    assert 0 <= opinion["validation_consulted"] <= 1
    assert opinion["validation_metrics_first_model"]["n"] == artefact.meta["validation_rows"]
    assert artefact.arrays["second_coef_lm"].shape == (32, len(WORDS))  # the tiny model's width
    assert artefact.arrays["char_analyzer"] == "char_wb"
    assert "second opinion from" in result["report"] and result["second_opinion"] == opinion


async def test_routing_repeats_the_cascade_training_reported(trained):
    """The numpy path (first model, then the second where unsure) gives exactly the decisions
    training scored, one query at a time and through the gateway with batching."""
    data, with_lm, _, _, tiny_model = trained
    texts, truth = load_dataset(data).part("test")
    gate = gate_for(with_lm, lm=tiny_model)
    predicted = [gate.decide(gate.probabilities(text), "x").experts[0] for text in texts]
    reported = artefacts.load(with_lm, "embedding", where="test").meta["metrics"]
    assert evaluate(truth, predicted, gate.labels) == reported
    async with make_moe(config_for(with_lm, lm=tiny_model)) as moe:
        decisions = await asyncio.gather(*(moe.route(user(text)) for text in texts))
    assert [d.experts[0] for d in decisions] == predicted
    unsure = [gate.unsure(gate.first_opinion(gate.encoder.encode([t])[0], t)[0]) for t in texts]
    assert [d.evidence[0]["second_opinion"] for d in decisions] == unsure


async def test_it_is_consulted_below_the_threshold_only(trained):
    data, with_lm, without, _, tiny_model = trained
    texts, _ = load_dataset(data).part("test")
    async with make_moe(config_for(with_lm, lm=tiny_model, consult_below=1.0)) as moe:
        everything = await asyncio.gather(*(moe.route(user(text)) for text in texts))
        batcher = moe.gate.second.lm.batcher
        # Concurrent routes share the language model's forward passes too.
        assert batcher.items == len(texts) and batcher.batches < len(texts)
    assert all(d.evidence[0]["second_opinion"] for d in everything)
    assert all("second opinion from" in d.rationale for d in everything)
    async with make_moe(config_for(with_lm, lm=tiny_model, consult_below=0.0)) as moe:
        never = [await moe.route(user(text)) for text in texts]
        assert moe.gate.second is None  # the language model is not even loaded
    assert not any(d.evidence[0]["second_opinion"] for d in never)
    assert "second opinion" not in never[0].rationale
    # Without it the first model decides alone, as a gate trained without one does.
    async with make_moe(config_for(without)) as moe:
        alone = [await moe.route(user(text)) for text in texts]
    assert [d.experts for d in never] == [d.experts for d in alone]
    assert [d.scores for d in never] == [d.scores for d in alone]


def test_an_artefact_without_a_second_opinion_still_routes(trained):
    data, _, without, _, _ = trained
    artefact = artefacts.load(without, "embedding", where="test")
    assert "second_opinion" not in artefact.meta
    assert not any(name.startswith(("second_", "char_")) for name in artefact.arrays)
    gate = gate_for(without)  # the default language model: never needed, never loaded
    texts, truth = load_dataset(data).part("test")
    predicted = [gate.decide(gate.probabilities(text), "x").experts[0] for text in texts]
    assert gate.second is None
    assert evaluate(truth, predicted, gate.labels) == artefact.meta["metrics"]


def test_a_second_opinion_from_another_language_model_is_a_clear_error(trained, tmp_path):
    _, with_lm, _, _, tiny_model = trained
    with pytest.raises(ConfigError, match=f"trained on states of {tiny_model}.*gate.lm"):
        gate_for(with_lm).model  # noqa: B018 - the default lm is SmolLM2, not the tiny one
    with np.load(with_lm) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    del meta["second_opinion"]
    undescribed = tmp_path / "undescribed.npz"
    np.savez(undescribed, __meta__=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ConfigError, match="second-opinion arrays but no description"):
        gate_for(undescribed, lm=tiny_model).model  # noqa: B018


def test_character_ngrams_equal_scikit_learn():
    """Routing repeats the char_wb transform in plain Python; it must agree with scikit-learn
    on words shorter and longer than the n-grams, capitals, digits and odd whitespace."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, _ = load_dataset(DEFAULT_DATA).part("train")
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
    ).fit(texts)
    features = TfidfFeatures(_tfidf_arrays(vectorizer, prefix="char_"), prefix="char_")
    probes = [
        *texts[:200],
        "I a b  c\tdd   eee",
        "Metformin 500mg vs.  GLIPIZIDE?",
        "CVE-2024-3094 xz backdoor!!",
        "",
        "   ",
    ]
    expected = vectorizer.transform(probes).toarray()
    ours = np.zeros_like(expected)
    for row, text in enumerate(probes):
        indices, weights = features(text)
        ours[row, indices] = weights
    np.testing.assert_allclose(ours, expected, atol=1e-12)
