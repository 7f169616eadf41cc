"""hookspecs.md is generated from the code, and its tutorial works as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from moe_core.hookdoc import render
from tests.conftest import run_moe

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run `make hookspecs` to regenerate it"


def test_hookspecs_md_matches_the_code():
    committed = (ROOT / "hookspecs.md").read_text()
    assert committed == render(), (
        f"hookspecs.md has drifted from moe_core/hookspecs.py; {REGENERATE}"
    )


def test_every_hook_is_documented():
    from moe_core import hookspecs

    text = render()
    for name in vars(hookspecs):
        if name.startswith("moe_"):
            assert f"### `{name}(" in text


def test_the_tutorial_plugin_installs_and_answers(tmp_path):
    """Follow the tutorial: write its files, pip-install the plugin, list it, chat with it."""
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", render(), re.DOTALL)
    files = dict(blocks)
    assert set(files) == {"pyproject.toml", "moe_shout.py", "shout.yaml"}
    project = tmp_path / "moe-shout"
    project.mkdir()
    for name in ("pyproject.toml", "moe_shout.py"):
        (project / name).write_text(files[name])
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PYTHONPATH": str(site)}
    listed = run_moe("plugins", env=env)
    assert "shout  (moe-shout 0.1.0)" in listed.stdout, listed.stderr
    assert "Repeats the last user message in capitals." in listed.stdout
    (tmp_path / "shout.yaml").write_text(files["shout.yaml"])
    chat = run_moe("chat", "--config", str(tmp_path / "shout.yaml"), "hello there", env=env)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip() == "HELLO THERE !!"
