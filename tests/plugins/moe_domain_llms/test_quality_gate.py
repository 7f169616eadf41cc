"""The quality-cost gate: training from recorded outcomes, threshold calibration, routing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_domain_llms import artefacts, quality
from moe_domain_llms.quality_gate import PACKAGED
from moe_domain_llms.quality_training import load_outcomes, train_from_file
from tests.conftest import run_moe, user

EASY = "What is {a} plus {b}?"
HARD = (
    "A shop sells {a} boxes at ${b}.50 each, then {c}% more on Monday, and each week after that "
    "half of the remaining {d} crates are split into {e} parts. How many dollars per part, on "
    "average, after {f} weeks?"
)


def outcomes(n: int, seed: int) -> list[dict]:
    """Recorded outcomes where long, number-heavy word problems defeat the weak expert (80% of
    the time) and short sums almost never do: the signal a predictor must find."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        hard = rng.random() < 0.4
        numbers = {key: int(rng.integers(2, 500)) for key in "abcdef"}
        prompt = (HARD if hard else EASY).format(**numbers)
        weak_ok = rng.random() > (0.8 if hard else 0.05)
        strong_ok = rng.random() > (0.1 if hard else 0.02)
        rows.append({"prompt": prompt, "weak_ok": weak_ok, "strong_ok": strong_ok})
    return rows


def columns(rows: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The prompts and the weak and strong outcomes of ``rows``, as the trainers take them."""
    texts = [row["prompt"] for row in rows]
    weak = np.array([row["weak_ok"] for row in rows], dtype=float)
    strong = np.array([row["strong_ok"] for row in rows], dtype=float)
    return texts, weak, strong


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "weak_ok", "strong_ok"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A prompt-features-only artefact (no encoder), trained on 300 synthetic outcomes."""
    folder = tmp_path_factory.mktemp("quality")
    data = write_csv(folder / "outcomes.csv", outcomes(300, seed=0))
    output = folder / "quality.npz"
    result = train_from_file(data, output, target_strong_share=0.4, progress=False)
    assert result["metrics"]["heldout_apgr"] > 0.7, result["report"]
    return output


def gate_config(artefact: Path, **options) -> dict:
    return {
        "experts": {
            "cheap": {"kind": "echo", "prefix": "[cheap] "},
            "big": {"kind": "echo", "prefix": "[big] "},
        },
        "gate": {
            "kind": "quality-cost",
            "weak": "cheap",
            "strong": "big",
            "artefact": str(artefact),
            **options,
        },
    }


def test_training_writes_an_artefact_with_metadata_and_held_out_metrics(trained):
    artefact = artefacts.load(trained, "quality-cost", where="test")
    meta = artefact.meta
    assert meta["encoder"] is None and meta["features"] == list(quality.FEATURE_NAMES)
    assert meta["data_sha256"] == load_outcomes(trained.parent / "outcomes.csv").sha256
    assert meta["metrics"]["rows"] == 300
    assert meta["versions"]["scikit-learn"]
    # The threshold found on out-of-fold probabilities sends the target share there too.
    assert meta["metrics"]["heldout_strong_share"] == pytest.approx(0.4, abs=0.03)
    assert artefact.arrays["quantiles"].shape == (101,)


def test_the_calibrated_threshold_hits_the_target_share_on_unseen_prompts(trained):
    model = artefacts.load(trained, "quality-cost", where="test")
    predictor = quality.QualityPredictor.from_arrays(model.arrays)
    unseen = outcomes(1000, seed=7)
    p_ok = predictor.predict_proba([row["prompt"] for row in unseen])
    shares = {
        target: float(np.mean(p_ok < predictor.threshold_for(target))) for target in (0.2, 0.4, 0.6)
    }
    # 40% of prompts are hard: that target falls between the two templates and is met.
    assert shares[0.4] == pytest.approx(0.4, abs=0.05)
    # Features here are coarse (two prompt templates), so a target inside one template splits
    # it on small differences in its numbers, where the full-data model's probabilities sit a
    # little apart from the out-of-fold ones the quantiles came from (a real prompt population
    # is smoother: see bench/routing.py). The share still moves with the target, on the side
    # of the template boundary the target asks for.
    assert 0.1 <= shares[0.2] < shares[0.4] < shares[0.6] <= 0.7, shares
    hard = np.array([row["prompt"].startswith("A shop") for row in unseen])
    # Prompt-level predictions rank the hard prompts first.
    assert p_ok[hard].max() < p_ok[~hard].min()


async def test_the_gate_routes_hard_requests_to_the_strong_expert_with_its_reasons(trained):
    hard = HARD.format(a=12, b=3, c=15, d=40, e=4, f=3)
    # 40% of the training prompts are hard, so a 30% share sends only hard ones to strong.
    async with make_moe(gate_config(trained, target_strong_share=0.3)) as moe:
        easy_decision = await moe.route(user("What is 120 plus 45?"))
        hard_decision = await moe.route(user(hard))
        response = await moe.complete(user(hard))
    assert easy_decision.experts == ["cheap"] and easy_decision.fallbacks == ["big"]
    assert hard_decision.experts == ["big"] and hard_decision.fallbacks == ["cheap"]
    evidence = hard_decision.evidence[0]
    assert evidence["to_strong"] is True and evidence["target_strong_share"] == 0.3
    assert evidence["p_weak_as_good"] < evidence["threshold"]
    assert easy_decision.evidence[0]["p_weak_as_good"] >= easy_decision.evidence[0]["threshold"]
    assert "calibrated to a 30% strong share" in hard_decision.rationale
    assert hard_decision.scores["cheap"] + hard_decision.scores["big"] == pytest.approx(1)
    body = response.model_dump() if hasattr(response, "model_dump") else response
    text = json.dumps(body)
    assert "[big] " in text


async def test_a_fixed_threshold_overrides_calibration(trained):
    async with make_moe(gate_config(trained, threshold=1.0)) as moe:
        decision = await moe.route(user("What is 7 plus 5?"))
    assert decision.experts == ["big"]
    assert decision.evidence[0]["threshold"] == 1.0
    assert decision.evidence[0]["target_strong_share"] is None


async def test_the_gate_reads_embeddings_when_trained_with_them(tmp_path):
    from moe_domain_llms.embeddings import Encoder
    from moe_domain_llms.quality_training import train_quality

    rows = outcomes(200, seed=3)
    output = tmp_path / "with-embeddings.npz"
    result = train_quality(
        *columns(rows),
        output,
        encoder=Encoder(),
        progress=False,
    )
    assert result["metrics"]["heldout_apgr"] > 0.65  # random routing: 0.5
    # Hard prompts score about 0.3, easy ones about 0.9: a threshold between them.
    async with make_moe(gate_config(output, threshold=0.6)) as moe:
        decision = await moe.route(user(HARD.format(a=120, b=35, c=15, d=240, e=4, f=3)))
        easy = await moe.route(user("What is 120 plus 45?"))
    assert decision.experts == ["big"] and easy.experts == ["cheap"]
    assert artefacts.load(output, "quality-cost", where="t").meta["encoder"] == Encoder().identity


def test_moe_gate_train_reports_progress_and_metrics(tmp_path):
    data = tmp_path / "outcomes.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in outcomes(150, seed=5)) + "\n")
    output = tmp_path / "trained.npz"
    result = run_moe(
        "gate", "train", "--kind", "quality-cost", "--data", str(data), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    assert "held-out (5-fold): APGR" in result.stdout and "threshold" in result.stdout
    assert "embedding prompts" in result.stderr  # the progress bar
    assert artefacts.load(output, "quality-cost", where="t").meta["metrics"]["rows"] == 150
    missing = run_moe("gate", "train", "--kind", "quality-cost")
    assert missing.returncode == 2 and "gate.data" in missing.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompt,label\nhi,1\n", "expected columns prompt and weak_ok,strong_ok"),
        ("prompt,weak_ok,strong_ok\nhi,maybe,true\n", ":2 weak_ok: expected true/false"),
        ("prompt,weak_ok,strong_ok\n,true,true\n", ":2: empty prompt"),
        ("prompt,weak_score,strong_score\nhi,0.5,high\n", "strong_score: expected a number"),
        ("prompt,weak_ok,strong_ok\n", "no outcomes"),
    ],
)
def test_bad_outcome_files_get_a_clear_error(tmp_path, content, message):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    with pytest.raises(ConfigError, match=message):
        train_from_file(data, tmp_path / "out.npz", progress=False)


def test_too_few_or_one_sided_outcomes_are_refused(tmp_path):
    rows = [{"prompt": f"q{i}", "weak_ok": True, "strong_ok": True} for i in range(40)]
    with pytest.raises(ConfigError, match="at least 5 of each case"):
        train_from_file(write_csv(tmp_path / "same.csv", rows), tmp_path / "o.npz")
    with pytest.raises(ConfigError, match="at least 20 recorded outcomes"):
        train_from_file(write_csv(tmp_path / "few.csv", rows[:5]), tmp_path / "o.npz")


def test_graded_scores_train_with_a_margin(tmp_path):
    rows = outcomes(200, seed=11)
    data = tmp_path / "graded.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(
                {
                    "prompt": row["prompt"],
                    "weak_score": 7.0 if row["weak_ok"] else 3.0,
                    "strong_score": 7.5 if row["strong_ok"] else 3.0,
                }
            )
            for row in rows
        )
    )
    # Within a 1-point margin a 7 is as good as a 7.5: only real failures count.
    result = train_from_file(data, tmp_path / "g.npz", margin=1.0, progress=False)
    real_failures = np.mean([row["strong_ok"] and not row["weak_ok"] for row in rows])
    assert result["metrics"]["weak_as_good_share"] == pytest.approx(1 - real_failures, abs=1e-3)
    assert result["metrics"]["heldout_apgr"] > 0.6
    assert artefacts.load(tmp_path / "g.npz", "quality-cost", where="t").meta["graded"] is True


async def test_configuration_mistakes_stop_the_gateway(trained, tmp_path):
    config = gate_config(trained)
    config["gate"]["strong"] = "gpt5"
    with pytest.raises(ConfigError, match="strong -> gpt5 not configured"):
        async with make_moe(config):
            pass
    with pytest.raises(ConfigError, match="does not exist.*moe gate train"):
        async with make_moe(gate_config(tmp_path / "missing.npz")):
            pass
    with pytest.raises(ConfigError, match="target_strong_share or threshold, not both"):
        make_moe(gate_config(trained, threshold=0.5, target_strong_share=0.3))


def test_the_bundled_artefact_names_its_data_and_license():
    if not PACKAGED.is_file():
        pytest.skip("no bundled quality-cost artefact in this build")
    meta = artefacts.load(PACKAGED, "quality-cost", where="bundled").meta
    assert meta["license"] == "Apache-2.0" and "RouteLLM" in meta["source"]
    assert PACKAGED.stat().st_size < 5 * 1024 * 1024


async def test_the_bundled_artefact_sends_a_hard_question_to_strong_and_an_easy_one_to_weak():
    if not PACKAGED.is_file():
        pytest.skip("no bundled quality-cost artefact in this build")
    config = gate_config(PACKAGED)
    del config["gate"]["artefact"]  # the default
    easy = "What is the capital of France?\nA. Paris\nB. Lyon\nC. Nice\nD. Lille\nAnswer:"
    hard = (
        "Statement 1 | Every group of order p^2 is abelian. Statement 2 | Every ring "
        "homomorphism is injective.\nA. True, True\nB. False, False\nC. True, False\n"
        "D. False, True\nAnswer:"
    )
    async with make_moe(config) as moe:
        easy_decision = await moe.route(user(easy))
        hard_decision = await moe.route(user(hard))
    assert easy_decision.experts == ["cheap"] and hard_decision.experts == ["big"]
    assert hard_decision.evidence[0]["p_weak_as_good"] < easy_decision.evidence[0]["p_weak_as_good"]


def test_prompt_features_read_what_makes_a_question_hard():
    features = dict(
        zip(
            quality.FEATURE_NAMES,
            quality.prompt_features(
                "Which of the following is NOT true?\nA. 12\nB. 15\nC. 3.5\nD. 40\nAnswer:"
            ),
            strict=True,
        )
    )
    assert features["negation"] == 1 and features["which_of_the_following"] == 1
    assert features["options"] == 4 and features["numeric_options"] == 1
    assert quality.feature_matrix([]).shape == (0, len(quality.FEATURE_NAMES))


def test_grouped_folds_hold_out_whole_groups():
    rows = outcomes(200, seed=13)
    texts, weak, strong = columns(rows)
    topics = [f"topic{i % 7}" for i in range(len(rows))]
    predictor, held_out = quality.fit(texts, weak, strong, groups=topics)
    assert held_out.shape == (200,) and predictor.meta["c"] == list(quality.DEFAULT_C)
    # Each prompt's held-out probability came from a model that saw none of its topic:
    # calibration on it still sends the target share.
    assert np.mean(held_out < predictor.threshold_for(0.4)) == pytest.approx(0.4, abs=0.02)
    with pytest.raises(ValueError, match="at least two groups"):
        quality.fit(texts, weak, strong, groups=["one"] * 200)


def test_the_probability_averages_one_model_per_regularisation_strength():
    rows = outcomes(300, seed=3)
    texts, weak, strong = columns(rows)
    averaged, _ = quality.fit(texts, weak, strong, c=(0.05, 1.0))
    members = [quality.fit(texts, weak, strong, c=c)[0] for c in (0.05, 1.0)]
    assert averaged.coef.shape == (2, len(quality.FEATURE_NAMES))
    unseen = [row["prompt"] for row in outcomes(50, seed=11)]
    each = np.stack([member.predict_proba(unseen) for member in members])
    # Equal up to the solver's tolerance (each member starts from the one before it).
    assert np.allclose(averaged.predict_proba(unseen), each.mean(axis=0), atol=1e-4)


def test_a_single_model_artefact_still_loads_and_predicts():
    """Artefacts written before members were averaged hold one weight vector and a scalar
    intercept: they load as a one-member average and give that model's probability."""
    n = len(quality.FEATURE_NAMES)
    coef = np.zeros(n)
    coef[quality.FEATURE_NAMES.index("log_numbers")] = 2.0
    arrays = {
        "feature_mean": np.zeros(n),
        "feature_scale": np.ones(n),
        "coef": coef,
        "intercept": np.array(-1.0),
        "quantiles": np.linspace(0, 1, 101),
    }
    predictor = quality.QualityPredictor.from_arrays(arrays)
    assert not predictor.uses_embeddings
    text = "Add 3 and 4 and 5."
    logit = 2.0 * np.log1p(3) - 1.0
    assert predictor.predict_proba(text) == pytest.approx(1 / (1 + np.exp(logit)))


def test_a_prompt_splits_into_its_question_stem_and_its_answer_options():
    stem, options = quality.split_prompt(
        "Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide\nC) Helium\nD. Argon\nAnswer:"
    )
    assert stem == "Which gas do plants take in?"
    assert options == "Oxygen\nCarbon dioxide\nHelium\nArgon"
    assert quality.split_prompt("What is 7 times 8?") == ("What is 7 times 8?", "")


def test_the_lm_block_is_standardised_and_shrunk_and_sentence_blocks_kept_as_they_are():
    rows = outcomes(120, seed=17)
    texts, weak, strong = columns(rows)
    rng = np.random.default_rng(0)
    lm = rng.normal(5.0, 3.0, size=(120, 6))
    stem = rng.normal(size=(120, 4))
    predictor, _ = quality.fit(texts, weak, strong, embeddings={"stem": stem, "lm": lm})
    n = len(quality.FEATURE_NAMES)
    assert predictor.blocks == ("stem", "lm") and predictor.coef.shape[1] == n + 4 + 6
    assert np.all(predictor.mean[n : n + 4] == 0) and np.all(predictor.scale[n : n + 4] == 1)
    assert np.allclose(predictor.mean[n + 4 :], lm.mean(axis=0))
    assert np.allclose(predictor.scale[n + 4 :], lm.std(axis=0) / quality.LM_WEIGHT)
    with pytest.raises(ValueError, match="reads stem, lm; give them"):
        predictor.predict_proba(texts[:2])
    with pytest.raises(ValueError, match="unknown blocks"):
        quality.fit(texts, np.zeros(120), np.ones(120), embeddings={"title": stem})


def test_an_artefact_from_before_blocks_reads_the_whole_prompt_embedding():
    n = len(quality.FEATURE_NAMES)
    arrays = {
        "feature_mean": np.zeros(n),
        "feature_scale": np.ones(n),
        "coef": np.concatenate([np.zeros(n), np.full(3, 2.0)]),
        "intercept": np.array(0.0),
        "quantiles": np.linspace(0, 1, 101),
    }
    predictor = quality.QualityPredictor.from_arrays(arrays)
    assert predictor.blocks == ("prompt",) and predictor.uses_embeddings
    embedding = np.array([0.5, 0.0, 0.0])
    assert predictor.predict_proba("Hi", embedding) == pytest.approx(1 / (1 + np.exp(1.0)))


def test_lm_states_are_one_layers_mean_over_the_prompt_tokens(tiny_model):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from moe_domain_llms.lm_states import LMStates

    texts = ["the quick brown fox", "what is the capital of france? paris is the capital"]
    states = LMStates(tiny_model, layer=1).encode(texts)
    assert states.shape == (2, 32) and states.dtype == np.float32
    # The same as the full model's first-layer output, averaged over each text's own tokens:
    # padding beside a longer text changes nothing, and the later layers are not run.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    full = AutoModel.from_pretrained(tiny_model, dtype=torch.float32).eval()
    for text, state in zip(texts, states, strict=True):
        with torch.inference_mode():
            hidden = full(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
        assert np.allclose(state, hidden.hidden_states[1][0].mean(dim=0).numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="has 2 layers; layer 3 asked for"):
        LMStates(tiny_model, layer=3).load()


async def test_the_gate_reads_stem_options_and_lm_states_when_trained_with_them(
    tmp_path, tiny_model
):
    from moe_domain_llms.embeddings import Encoder
    from moe_domain_llms.lm_states import LMStates
    from moe_domain_llms.quality_training import train_quality

    rows = outcomes(120, seed=5)
    output = tmp_path / "blocks.npz"
    result = train_quality(
        *columns(rows),
        output,
        encoder=Encoder(),
        lm=LMStates(tiny_model, layer=2),
        progress=False,
    )
    meta = artefacts.load(output, "quality-cost", where="t").meta
    assert meta["blocks"] == ["stem", "options", "lm"]
    assert meta["lm"] == tiny_model and meta["lm_layer"] == 2
    assert result["metrics"]["heldout_apgr"] > 0.65
    config = gate_config(output, threshold=0.6, lm=tiny_model)
    async with make_moe(config) as moe:
        hard = await moe.route(user(HARD.format(a=120, b=35, c=15, d=240, e=4, f=3)))
        easy = await moe.route(user("What is 120 plus 45?"))
    assert hard.experts == ["big"] and easy.experts == ["cheap"]
    # Serving one request at a time gives what the batch gives.
    gate_p = hard.evidence[0]["p_weak_as_good"]
    predictor = quality.QualityPredictor.from_arrays(
        artefacts.load(output, "quality-cost", where="t").arrays,
        Encoder(),
        meta,
        LMStates(tiny_model, layer=2),
    )
    text = HARD.format(a=120, b=35, c=15, d=240, e=4, f=3)
    assert predictor.predict_proba([text])[0] == pytest.approx(gate_p, abs=1e-4)
    with pytest.raises(ConfigError, match="trained on states of"):
        async with make_moe(gate_config(output, threshold=0.6)):
            pass
