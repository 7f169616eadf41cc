"""A gateway from `moe-core` and `moe-openai-compat` alone (with the small `moe-stores` library it
needs), in a fresh venv without torch.

What a user who only fronts remote models installs: the test builds that venv from this checkout
(packages from the registry, as `pip install` would), serves the README's remote configuration
(examples/remote.yaml) against the fake OpenAI upstream and talks to it with the official SDK.
Building the venv takes a minute, once for the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import free_port
from tests.integration.test_serve_process import _wait_ready

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "sklearn", "redis", "transformers")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding moe-core and moe-openai-compat (non-editable), and what they depend on.

    Built from a copy of the two source trees, so no build folder left in the checkout by an
    earlier install can slip stale modules into the wheels."""
    base = tmp_path_factory.mktemp("core-only")
    source = base / "source"
    skip = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(ROOT / "moe_core", source / "moe_core", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    plugin = source / "plugins" / "moe_openai_compat"
    shutil.copytree(ROOT / "plugins" / "moe_openai_compat", plugin, ignore=skip)
    stores = source / "plugins" / "moe_stores"
    shutil.copytree(ROOT / "plugins" / "moe_stores", stores, ignore=skip)
    path = base / "venv"
    venv.EnvBuilder(with_pip=True).create(path)
    subprocess.run(
        [path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         source, stores, plugin],
        check=True,
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MOE_CONFIG" and k != "PYTHONPATH"}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def test_the_core_alone_installs_no_heavy_library(core_venv: Path):
    script = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = subprocess.run(
        [core_venv / "bin" / "python", "-c", script, *HEAVY],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]"


def test_with_no_config_and_no_default_plugin_serve_says_what_to_do_in_one_line(core_venv: Path):
    result = subprocess.run(
        [core_venv / "bin" / "moe", "serve"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no configuration given" in lines[0] and "moe-domain-llms" in lines[0]


@pytest.fixture
def served(core_venv: Path, tmp_path: Path) -> Iterator[str]:
    """The README's remote configuration, pointed at a fake upstream, served by the core venv."""
    upstream_port, gateway_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "moe_openai_compat.testing", "--port", str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = yaml.safe_load((ROOT / "examples" / "remote.yaml").read_text())
    for expert in config["experts"].values():
        expert["base_url"] = f"http://127.0.0.1:{upstream_port}/v1"
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(config))
    gateway = subprocess.Popen(
        [core_venv / "bin" / "moe", "serve", "--config", tmp_path / "remote.yaml",
         "--port", str(gateway_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        _wait_ready(f"http://127.0.0.1:{gateway_port}/health", gateway)
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=30)


def test_the_remote_configuration_serves_chat_streams_models_and_errors(served: str):
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="moe-auto", messages=[{"role": "user", "content": "hello there"}]
    )
    assert answer.choices[0].message.content
    assert answer.model == "fast"

    chunks = client.chat.completions.create(
        model="strong", stream=True, messages=[{"role": "user", "content": "count to three"}]
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text

    assert [model.id for model in client.models.list()] == ["auto", "moe-auto", "fast", "strong"]

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"
    bad = httpx.post(f"{served}/v1/chat/completions", json={"messages": "not a list"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    # No catch-all is installed: an unknown path is a 404 and starts no generation.
    assert httpx.get(f"{served}/wp-admin").status_code == 404
