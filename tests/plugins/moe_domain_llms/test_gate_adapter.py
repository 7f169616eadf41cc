"""The embedding gate's LoRA-adapted encoder: trained by ``moe gate train``, shipped in the
artefact, merged at load, and refused when it does not belong to the configured encoder."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from moe_core import ConfigError
from moe_core.testing import make_moe
from moe_domain_llms import artefacts
from moe_domain_llms.embeddings import Encoder
from moe_domain_llms.gates import EmbeddingGate, EmbeddingGateOptions
from moe_domain_llms.training import evaluate, load_dataset
from tests.conftest import run_moe, user
from tests.plugins.moe_domain_llms.conftest import WORDS, write_tiny_queries


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A gate trained end to end on a few dozen rows (seconds, not the real ten minutes)."""
    folder = tmp_path_factory.mktemp("adapter")
    data = write_tiny_queries(folder)
    output = folder / "embedding.npz"
    result = run_moe(
        "gate", "train", "--kind", "embedding", "--data", str(data), "-o", str(output),
        "--no-progress", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "LoRA-adapted encoder" in result.stdout and "validation slice" in result.stdout
    return data, output


def gate_for(path) -> EmbeddingGate:
    return EmbeddingGate("g", EmbeddingGateOptions(artefact=str(path)))


def test_the_artefact_carries_a_small_adapter_and_says_what_made_it(adapted):
    data, output = adapted
    artefact = artefacts.load(output, "embedding", where="test")
    adapter = artefact.meta["adapter"]
    assert adapter["method"] == "lora" and adapter["rank"] == 8
    epochs = EmbeddingGateOptions().finetune_epochs
    assert 1 <= adapter["chosen_epoch"] <= adapter["epochs"] == epochs
    assert [row["epoch"] for row in adapter["history"]] == list(range(1, epochs + 1))
    assert all(0 <= row["validation_accuracy"] <= 1 for row in adapter["history"])
    assert artefact.arrays["lora_a"].dtype == np.float16
    assert artefact.arrays["lora_a"].shape == (24, 8, 384)  # 4 projections x 6 layers
    assert output.stat().st_size < 1_000_000
    assert artefact.meta["data_sha256"] == load_dataset(data).sha256
    assert artefact.meta["versions"]["torch"] and artefact.meta["encoder"]
    assert artefact.meta["validation_rows"] >= len(WORDS)


async def test_an_adapted_gate_routes_as_its_training_report_said(adapted):
    """Merging at load reproduces the encoder training evaluated: same decisions, same figures."""
    data, output = adapted
    texts, truth = load_dataset(data).part("test")
    gate = gate_for(output)
    predicted = [gate.decide(gate.probabilities(text), "x").experts[0] for text in texts]
    reported = artefacts.load(output, "embedding", where="test").meta["metrics"]
    assert evaluate(truth, predicted, gate.labels) == reported
    config = {
        "experts": {name: {"kind": "echo"} for name in WORDS},
        "gate": {"kind": "embedding", "artefact": str(output)},
    }
    async with make_moe(config) as moe:  # the gateway's path: artefact at startup, batching
        decisions = await asyncio.gather(*(moe.route(user(text)) for text in texts))
    assert [decision.experts[0] for decision in decisions] == predicted


def test_the_adapter_changes_the_encoders_vectors(adapted):
    _, output = adapted
    gate = gate_for(output)
    gate.model  # noqa: B018 - merges the adapter
    adapted_vector = gate.encoder.encode(["my invoice is overdue"])[0]
    frozen_vector = EmbeddingGate("f", EmbeddingGateOptions()).encoder.encode(
        ["my invoice is overdue"]
    )[0]
    assert not np.allclose(adapted_vector, frozen_vector, atol=1e-4)


def test_onnx_runtime_gives_the_adapted_encoders_vectors_that_torch_gives(adapted):
    """The default runtime exports the encoder after the adapter is merged: one padded batch of
    texts from one word to many gets torch's vectors, and so the same decisions."""
    data, output = adapted
    texts, _ = load_dataset(data).part("test")
    texts = [*texts, "hi", "a much longer question, " * 12 + "that goes on and on"]
    runs = {}
    for runtime in ("onnx", "torch"):
        gate = EmbeddingGate("g", EmbeddingGateOptions(artefact=str(output), runtime=runtime))
        gate.model  # noqa: B018 - merges the adapter
        vectors = gate.encoder.encode(texts)
        runs[runtime] = (gate, vectors, [gate.decide(gate.probabilities(t), "x") for t in texts])
    assert runs["onnx"][0].encoder.session is not None and runs["torch"][0].encoder.session is None
    np.testing.assert_allclose(runs["onnx"][1], runs["torch"][1], atol=1e-5)
    assert [d.experts for d in runs["onnx"][2]] == [d.experts for d in runs["torch"][2]]
    assert not runs["onnx"][0].encoder.model.training  # the export leaves the model as it was


def rewrite(source, target, change) -> None:
    with np.load(source) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    change(meta)
    np.savez(target, __meta__=np.array(json.dumps(meta)), **arrays)


def test_an_adapter_for_other_weights_or_a_newer_format_is_a_clear_error(adapted, tmp_path):
    _, output = adapted
    other = tmp_path / "other-base.npz"
    rewrite(output, other, lambda meta: meta["adapter"].update(base_fingerprint="0123456789abcdef"))
    with pytest.raises(ConfigError, match="trained on base weights 0123456789abcdef.*retrain"):
        gate_for(other).probabilities("my invoice is overdue")
    newer = tmp_path / "newer.npz"
    rewrite(output, newer, lambda meta: meta["adapter"].update(format=99))
    with pytest.raises(ConfigError, match="encoder adapter of format 99.*reads format 1"):
        gate_for(newer).model  # noqa: B018
    elsewhere = tmp_path / "elsewhere.npz"
    rewrite(output, elsewhere, lambda meta: meta.update(encoder="another-encoder"))
    with pytest.raises(ConfigError, match="trained on embeddings from another-encoder"):
        gate_for(elsewhere).model  # noqa: B018


def test_training_without_fine_tuning_ships_no_adapter(adapted, tmp_path):
    data, _ = adapted
    output = tmp_path / "frozen.npz"
    gate = EmbeddingGate("g", EmbeddingGateOptions(data=str(data), finetune_epochs=0))
    result = gate.train(output, progress=False)
    assert result["adapter"] is None and "frozen encoder" in result["report"]
    artefact = artefacts.load(output, "embedding", where="test")
    assert "lora_a" not in artefact.arrays and "adapter" not in artefact.meta
    assert gate_for(output).probabilities("my invoice is overdue").sum() == pytest.approx(1)


def test_an_encoder_onnx_cannot_express_is_a_clear_error_naming_the_way_out(monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::novel' to ONNX is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ConfigError, match="gate.encoder: .* could not be exported to ONNX .*"
                       "aten::novel.*set runtime: torch"):  # fmt: skip
        Encoder(where="gate.encoder", runtime="onnx").load()
    # The torch runtime needs no export.
    assert Encoder(where="gate.encoder", runtime="torch").load().session is None
