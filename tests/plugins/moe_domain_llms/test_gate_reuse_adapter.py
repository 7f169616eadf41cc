"""Refitting the embedding gate on new rows with an earlier artefact's encoder adapter
(``reuse_adapter``): the adapter travels unchanged, the metadata says where it came from, and an
artefact with no adapter is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from moe_domain_llms import artefacts
from tests.conftest import run_moe
from tests.plugins.moe_domain_llms.conftest import WORDS, write_tiny_queries


def train(folder, data, output, **gate) -> str:
    config = folder / f"{output.stem}.yaml"
    experts = {name: {"kind": "echo"} for name in WORDS}
    config.write_text(yaml.safe_dump({"experts": experts, "gate": {"kind": "embedding", **gate}}))
    result = run_moe(
        "gate", "train", "-c", str(config), "--data", str(data), "-o", str(output),
        "--no-progress", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reuse")
    data = write_tiny_queries(folder)
    output = folder / "first.npz"
    train(folder, data, output, finetune_epochs=1, second_opinion=False)
    return folder, data, output


def test_a_refit_carries_the_earlier_adapter_and_says_so(first):
    folder, data, output = first
    more = folder / "more.csv"
    more.write_text(data.read_text() + "an extra question about mortgage number 99,finance,train\n")
    refit = folder / "refit.npz"
    report = train(folder, more, refit, reuse_adapter=str(output), second_opinion=False)
    assert "adapter reused from first.npz" in report
    before = artefacts.load(output, "embedding", where="test")
    after = artefacts.load(refit, "embedding", where="test")
    for name in ("lora_a", "lora_b", "lora_modules", "lora_scale"):
        np.testing.assert_array_equal(after.arrays[name], before.arrays[name])
    reused = after.meta["adapter"]["reused_from"]
    assert reused == {
        "artefact": "first.npz",
        "data_sha256": before.meta["data_sha256"],
        "train_rows": before.meta["train_rows"],
    }
    assert after.meta["data_sha256"] != before.meta["data_sha256"]


def test_reusing_from_an_artefact_without_an_adapter_is_a_clear_error(first, tmp_path):
    _, data, _ = first
    frozen = tmp_path / "frozen.npz"
    train(tmp_path, data, frozen, finetune_epochs=0, second_opinion=False)
    config = tmp_path / "bad.yaml"
    experts = {name: {"kind": "echo"} for name in WORDS}
    gate = {"kind": "embedding", "reuse_adapter": str(frozen)}
    config.write_text(yaml.safe_dump({"experts": experts, "gate": gate}))
    result = run_moe(
        "gate", "train", "-c", str(config), "--data", str(data), "-o", str(tmp_path / "x.npz"),
        "--no-progress", timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "gate.reuse_adapter" in result.stderr and "holds no encoder adapter" in result.stderr
    assert "Traceback" not in result.stderr
