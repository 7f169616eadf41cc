"""The ``features`` gate: what it measures, where it routes, what it reports, and training it
with ``moe gate train``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe_byt5 import artefact, features
from moe_core import ConfigError, InvalidRequest
from moe_core.testing import make_moe
from tests.conftest import run_moe

EXPERTS = {"byt5": "moe-expert-byt5", "longformer": "moe-expert-longformer"}
PROSE = "\n\n".join(
    [
        "The council met on Monday to discuss the plan for the new library. Several members "
        "said that the old building was too small for the number of people who use it, and "
        "that the reading rooms were cold in the winter.",
        "After a long discussion they agreed to ask the architects for two designs, one that "
        "extends the existing building and one that starts again on the site of the old market, "
        "so that residents can compare the costs and the benefits of each.",
        "A public meeting will be held next month, where people can see both designs and say "
        "which one they prefer before the council takes its final decision in the spring.",
    ]
)
CODE = "for (let i = 0; i < items.length; i++) { total += items[i].price * qty[i]; }"


def gate_config(**cards) -> dict:
    return {
        "experts": {
            name: {"kind": "echo", "card": cards.get(name, {})} for name in EXPERTS.values()
        },
        "gate": {"kind": "features", "experts": EXPERTS},
    }


def ask(text: str, task: str | None = None) -> dict:
    body: dict = {"messages": [{"role": "user", "content": text}]}
    if task:
        body["moe"] = {"task_type": task}
    return body


def test_features_are_measured_not_guessed() -> None:
    code = features.extract(CODE)
    prose = features.extract(PROSE)
    assert code["length"] == len(CODE)
    assert prose["line_count"] == 5
    assert code["code_likeness"] > 5 * prose["code_likeness"]
    assert code["special_char_ratio"] > prose["special_char_ratio"]
    assert prose["function_word_ratio"] > code["function_word_ratio"]
    assert features.extract("ABC def")["uppercase_ratio"] == 0.5
    assert features.extract("one two three")["avg_word_length"] == pytest.approx(11 / 3)


def test_is_binary_is_computed_from_the_bytes() -> None:
    assert features.is_binary("PNG\x00\x01\x02 header")
    assert features.is_binary(bytes(range(0, 32)).decode("latin-1") * 3)
    assert not features.is_binary("Ünïcødé, emoji 🎉 and\ttabs\nand newlines are text")
    assert not features.is_binary("")


async def test_code_goes_to_byt5_and_long_prose_to_longformer() -> None:
    async with make_moe(gate_config()) as moe:
        code = await moe.route(ask(CODE))
        prose = await moe.route(ask(PROSE))
    assert code.experts == ["moe-expert-byt5"]
    assert prose.experts == ["moe-expert-longformer"]
    for decision in (code, prose):
        assert decision.gate == "features"
        assert decision.confidence > 0.8
        assert set(decision.scores) == {"byt5", "longformer"}
        assert sum(decision.scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert code.runner_up == "moe-expert-longformer"
    assert "runner-up longformer" in code.rationale
    evidence = prose.evidence[0]
    assert evidence["label"] == "longformer"
    assert evidence["features"]["length"] == len(PROSE)
    assert set(evidence["features"]) == set(features.NAMES)


async def test_a_task_only_one_expert_does_goes_to_that_expert() -> None:
    cards = {
        "moe-expert-byt5": {"capabilities": ["generate", "embed"]},
        "moe-expert-longformer": {"capabilities": ["summarize", "embed"]},
    }
    async with make_moe(gate_config(**cards)) as moe:
        summarize_code = await moe.route(ask(CODE, "summarize"))
        generate_prose = await moe.route(ask(PROSE, "generate"))
        embed_prose = await moe.route(ask(PROSE, "embed"))
        with pytest.raises(InvalidRequest, match="unknown task 'translate'.*embed, generate"):
            await moe.route(ask(CODE, "translate"))
    assert summarize_code.experts == ["moe-expert-longformer"]
    assert "byt5 cannot do task 'summarize'" in summarize_code.rationale
    assert summarize_code.confidence == 1.0
    assert generate_prose.experts == ["moe-expert-byt5"]
    assert embed_prose.experts == ["moe-expert-longformer"]


async def test_force_expert_skips_the_gate() -> None:
    async with make_moe(gate_config()) as moe:
        decision = await moe.route({**ask(PROSE), "moe": {"force_expert": "moe-expert-byt5"}})
    assert decision.experts == ["moe-expert-byt5"]
    assert decision.gate == "direct"


def test_a_label_routed_to_an_expert_that_is_not_configured_stops_startup() -> None:
    config = gate_config()
    config["gate"]["experts"] = {"byt5": "moe-expert-byt5"}  # longformer -> "longformer"
    with pytest.raises(ConfigError, match="longformer -> longformer"):
        make_moe(config)


def test_gate_train_writes_an_artefact_without_pickle_that_routes(tmp_path) -> None:
    output = tmp_path / "features.npz"
    result = run_moe("gate", "train", "--kind", "features", "--output", str(output), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["rows"] >= 500
    assert metrics["validation_accuracy"] >= 0.95
    with np.load(output, allow_pickle=False) as data:  # plain arrays: no code runs on load
        meta = json.loads(str(data["__meta__"]))
    assert meta["kind"] == "features"
    assert meta["features"] == list(features.NAMES)
    assert meta["labels"] == ["byt5", "longformer"]


async def test_a_trained_artefact_is_used_when_configured(tmp_path) -> None:
    data = tmp_path / "rows.csv"
    # Labels flipped on purpose: a gate trained on this must route the other way round.
    data.write_text(
        "text,label\n"
        + "".join(f'"x = f({i}); y[{i}] += 1;",longformer\n' for i in range(30))
        + "".join(f'"{PROSE} {i}",byt5\n' for i in range(30))
    )
    output = tmp_path / "flipped.npz"
    result = run_moe(
        "gate", "train", "--kind", "features", "--data", str(data), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    assert "trained features gate on 60 rows" in result.stdout
    config = gate_config()
    config["gate"]["artefact"] = str(output)
    async with make_moe(config) as moe:
        assert (await moe.route(ask(CODE))).experts == ["moe-expert-longformer"]


def test_gate_train_without_output_leaves_the_packaged_artefact_alone(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MOE_DATA_DIR", str(tmp_path / "data"))
    before = artefact.PACKAGED.read_bytes()
    data = tmp_path / "rows.csv"
    data.write_text(
        "text,label\n"
        + "".join(f'"x = f({i}); y[{i}] += 1;",byt5\n' for i in range(30))
        + "".join(f'"{PROSE} {i}",longformer\n' for i in range(30))
    )
    try:
        result = run_moe("gate", "train", "--kind", "features", "--data", str(data))
    finally:
        changed = artefact.PACKAGED.read_bytes() != before
        if changed:  # put the shipped gate back, or every later test routes with this one
            artefact.PACKAGED.write_bytes(before)
    assert result.returncode == 0, result.stderr
    assert not changed
    written = tmp_path / "data" / "gates" / "features.npz"
    assert artefact.load(written, where="test").meta["labels"] == ["byt5", "longformer"]
    assert f"-> {written}" in result.stdout
    assert f"set `artefact: {written}` in the gate's config" in result.stdout


def test_an_artefact_of_another_kind_is_refused_with_how_to_fix(tmp_path) -> None:
    path = tmp_path / "other.npz"
    artefact.save(path, ["a", "b"], {"x": np.zeros(2)})
    bad = path.with_name("bad.npz")
    with np.load(path) as data:
        meta = json.loads(str(data["__meta__"]))
    meta["kind"] = "tfidf-nb"
    np.savez(bad, __meta__=np.array(json.dumps(meta)), x=np.zeros(2))
    config = gate_config()
    config["gate"]["artefact"] = str(bad)
    with pytest.raises(
        ConfigError, match="trained for kind 'tfidf-nb', not 'features'.*moe gate train"
    ):
        make_moe(config)
    config["gate"]["artefact"] = str(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="does not exist; retrain it"):
        make_moe(config)
