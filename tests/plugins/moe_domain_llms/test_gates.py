"""Learned domain gates: routing decisions, abstention, artefact safety, training, /predict."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_domain_llms import artefacts
from moe_domain_llms.gates import DEFAULT_DATA
from moe_domain_llms.training import load_dataset
from tests.conftest import run_moe, user

DOMAINS = ("healthcare", "finance", "cybersecurity", "general")


def domain_config(gate: dict) -> dict:
    """The four domain experts as echo experts, so routing is tested without an LLM."""
    return {
        "experts": {name: {"kind": "echo", "prefix": f"[{name}] "} for name in DOMAINS},
        "gate": gate,
    }


CLEAR = {
    "my chest feels tight and I get dizzy when I climb stairs": "healthcare",
    "should I put my bonus into my pension or pay down the mortgage": "finance",
    "someone keeps trying to log into my email account from another country": "cybersecurity",
    "give me a recipe for a quick vegetarian lasagne": "general",
}


@pytest.mark.parametrize("kind", ["embedding", "tfidf-nb"])
async def test_clear_queries_reach_their_domain_with_a_rationale(kind):
    async with make_moe(domain_config({"kind": kind})) as moe:
        for query, domain in CLEAR.items():
            decision = await moe.route(user(query))
            assert decision.experts == [domain], query
            assert decision.gate == kind and 0 < decision.confidence <= 1
            assert decision.runner_up in DOMAINS and decision.runner_up != domain
            assert set(decision.scores) == set(DOMAINS)
            assert abs(sum(decision.scores.values()) - 1) < 1e-3
            assert domain in decision.rationale and "runner-up" in decision.rationale
            # A domain expert that fails falls back to general.
            assert decision.fallbacks == ([] if domain == "general" else ["general"])


async def test_the_embedding_gate_abstains_to_general_below_its_threshold():
    async with make_moe(domain_config({"kind": "embedding", "threshold": 0.999999})) as moe:
        query = "should I refinance my mortgage now that rates dropped"
        decision = await moe.route(user(query))
        response = await moe.complete(user(query))
    assert decision.experts == ["general"]
    assert "abstains to general" in decision.rationale
    assert decision.evidence[0]["abstained"] is True
    assert decision.evidence[0]["predicted"] != "general"
    assert response.result.content.startswith("[general]")


async def test_labels_can_be_mapped_to_any_expert_and_missing_ones_fail_at_startup():
    config = domain_config({"kind": "tfidf-nb", "experts": {"healthcare": "doctor"}})
    config["experts"]["doctor"] = config["experts"].pop("healthcare")
    async with make_moe(config) as moe:
        decision = await moe.route(user("what are the side effects of ibuprofen"))
    assert decision.experts == ["doctor"]
    del config["experts"]["doctor"]
    with pytest.raises(ConfigError, match="healthcare -> doctor"):
        make_moe(config)


async def test_concurrent_routing_shares_embedding_forward_passes():
    async with make_moe(domain_config({"kind": "embedding"})) as moe:
        queries = [f"{query} ({i})" for i in range(4) for query in CLEAR]
        decisions = await asyncio.gather(*(moe.route(user(q)) for q in queries))
        batcher = moe.gate.encoder.batcher
        assert batcher.items == len(queries) and batcher.batches < len(queries)
    assert [d.experts[0] for d in decisions] == [CLEAR[q.rsplit(" (", 1)[0]] for q in queries]


def test_the_fast_tfidf_path_equals_scikit_learn(tmp_path):
    """Routing runs the trained model in numpy; it must agree with the scikit-learn pipeline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB

    from moe_domain_llms.gates import LearnedGateOptions, TfidfNBGate

    dataset = load_dataset(DEFAULT_DATA)
    texts, labels = dataset.part("train")
    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2))
    reference = MultinomialNB().fit(vectorizer.fit_transform(texts), labels)
    gate = TfidfNBGate("gate", LearnedGateOptions())
    held_out, _ = dataset.part("test")
    expected = reference.predict_proba(vectorizer.transform(held_out))
    ours = np.array([gate.probabilities(text) for text in held_out])
    assert gate.labels == list(reference.classes_)
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_bad_artefacts_are_clear_errors(tmp_path):
    from moe_domain_llms.gates import (
        EmbeddingGate,
        EmbeddingGateOptions,
        LearnedGateOptions,
        TfidfNBGate,
    )

    def load(gate_class, options_class, path):
        # Artefacts are read on first use; at startup that is check_experts.
        return gate_class("g", options_class(artefact=str(path))).model

    packaged_nb = artefacts.PACKAGED / "tfidf-nb.npz"
    with pytest.raises(ConfigError, match="trained for kind 'tfidf-nb', not 'embedding'"):
        load(EmbeddingGate, EmbeddingGateOptions, packaged_nb)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an artefact")
    with pytest.raises(ConfigError, match="not a readable artefact.*moe gate train"):
        load(TfidfNBGate, LearnedGateOptions, junk)
    future = tmp_path / "future.npz"
    artefacts.save(future, "tfidf-nb", ["general", "b"], {"x": np.zeros(2)})
    with pytest.raises(ConfigError, match="lacks the array 'tfidf_terms'.*moe gate train"):
        load(TfidfNBGate, LearnedGateOptions, future)
    with np.load(future) as data:
        meta = json.loads(str(data["__meta__"]))
    meta["format"] = 99
    np.savez(future, __meta__=np.array(json.dumps(meta)), x=np.zeros(2))
    with pytest.raises(ConfigError, match="artefact format 99.*reads format 1"):
        load(TfidfNBGate, LearnedGateOptions, future)
    other_encoder = tmp_path / "other.npz"
    artefacts.save(
        other_encoder, "embedding", ["general", "x"], {"x": np.zeros(2)}, encoder="elsewhere"
    )
    with pytest.raises(ConfigError, match="trained on embeddings from elsewhere"):
        load(EmbeddingGate, EmbeddingGateOptions, other_encoder)
    with pytest.raises(ConfigError, match="does not exist.*moe gate train"):
        load(TfidfNBGate, LearnedGateOptions, tmp_path / "missing.npz")


def tiny_domain_data(path):
    """Four labels, twelve queries each, most of them held out: trains in well under a second."""
    rows = ["query,label,split"]
    words = {
        "healthcare": "doctor fever pills",
        "finance": "money stocks taxes",
        "cybersecurity": "malware phishing password",
        "general": "recipe football music",
    }
    for label, vocabulary in words.items():
        for i, word in enumerate(vocabulary.split() * 4):
            rows.append(
                f"my question about {word} number {i},{label},{'test' if i % 4 else 'train'}"
            )
    path.write_text("\n".join(rows) + "\n")
    return path


def test_moe_gate_train_writes_an_artefact_with_its_metadata(tmp_path):
    data = tiny_domain_data(tmp_path / "tiny.csv")
    output = tmp_path / "gate.npz"
    result = run_moe(
        "gate", "train", "--kind", "tfidf-nb", "--data", str(data), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    assert "precision" in result.stdout and "confusion" in result.stdout
    artefact = artefacts.load(output, "tfidf-nb", where="test")
    assert artefact.labels == sorted(DOMAINS)
    assert artefact.meta["data_sha256"] == load_dataset(data).sha256
    assert artefact.meta["versions"]["scikit-learn"]
    assert artefact.meta["metrics"]["n"] == 36  # the rows not marked train
    not_trainable = run_moe("gate", "train", "--kind", "fixed")
    assert not_trainable.returncode == 2 and "does not learn from data" in not_trainable.stderr


def test_moe_gate_train_without_output_leaves_the_packaged_artefact_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_DATA_DIR", str(tmp_path / "data"))
    packaged = artefacts.PACKAGED / "tfidf-nb.npz"
    before = packaged.read_bytes()
    data = tiny_domain_data(tmp_path / "tiny.csv")
    try:
        result = run_moe("gate", "train", "--kind", "tfidf-nb", "--data", str(data))
    finally:
        changed = packaged.read_bytes() != before
        if changed:  # put the shipped gate back, or every later test routes with this one
            packaged.write_bytes(before)
    assert result.returncode == 0, result.stderr
    assert not changed
    written = tmp_path / "data" / "gates" / "tfidf-nb.npz"
    assert artefacts.load(written, "tfidf-nb", where="test").meta["data_sha256"] == (
        load_dataset(data).sha256
    )
    assert f"-> {written}" in result.stdout
    assert f"set `artefact: {written}` in the gate's config" in result.stdout


def test_the_bundled_artefacts_match_the_bundled_data():
    """A changed data file without retraining would ship a gate that is not what it claims."""
    digest = load_dataset(DEFAULT_DATA).sha256
    for kind in ("tfidf-nb", "embedding"):
        meta = artefacts.load(artefacts.PACKAGED / f"{kind}.npz", kind, where=kind).meta
        assert meta["data_sha256"] == digest, f"retrain: moe gate train --kind {kind}"


async def test_predict_answers_and_rejects_bad_queries(gateway):
    client = await gateway(domain_config({"kind": "tfidf-nb"}))
    body = await (
        await client.post("/predict", json={"query": "how do I treat a sprained ankle"})
    ).json()
    assert body["expert"] == "healthcare"
    assert body["response"] == "[healthcare] how do I treat a sprained ankle"
    assert body["gate"] == "tfidf-nb" and 0 < body["confidence"] <= 1 and body["latency_ms"] > 0
    seed_form = await client.post("/predict/?query=is%20my%20router%20hacked")
    assert (await seed_form.json())["expert"] == "cybersecurity"
    for payload, status, fragment in [
        ({}, 400, "Missing required parameter: 'query'"),
        ({"query": 42}, 400, "must be a string, got int"),
        ({"query": "   "}, 400, "'query' is empty"),
        ({"query": "x" * 5000}, 413, "the limit is 4000"),
        (["query"], 400, "must be a JSON object"),
    ]:
        response = await client.post("/predict", json=payload)
        assert response.status == status, payload
        assert fragment in (await response.json())["error"]["message"]
    malformed = await client.post(
        "/predict", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400
