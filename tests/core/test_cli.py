"""The `moe` command: readable errors with exit status 2, and useful output."""

from __future__ import annotations

import asyncio
import json
import socket

from tests.conftest import run_moe


def test_a_config_error_is_one_readable_message(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("experts:\n  a: {kind: openai, base_url: 'http://x/v1', timeout: 3}\n")
    result = run_moe("route", "hi", "--config", str(config))
    assert result.returncode == 2
    assert "experts.a.timeout: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("experts:\n  a: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_moe("serve", "--config", str(config), "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_json_lists_every_installed_plugin():
    result = run_moe("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert {"fixed", "single", "memory", "admin", "openai-compat", "domain-llms"} <= set(plugins)
    assert {"tracking", "router", "strategies"} <= set(plugins)
    assert plugins["tracking"]["sections"] == ["tracking"]
    assert plugins["domain-llms"]["kinds"] == {
        "expert": ["hf-causal-lm", "sentence-embedding"],
        "gate": ["tfidf-nb", "embedding", "quality-cost"],
        "frontend": ["predict"],
        "scorer": ["quality-prior", "answer-quality"],
    }


def test_route_json_for_a_named_expert(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        "experts:\n"
        "  a: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
        "  b: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    result = run_moe("route", "hi", "--config", str(config), "--model", "b", "--json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["experts"] == ["b"] and decision["gate"] == "direct"
    unknown = run_moe("route", "hi", "--config", str(config), "--model", "c")
    assert unknown.returncode == 1 and "'c' does not exist" in unknown.stderr


def test_the_python_api_prints_nothing_of_its_own(tmp_path):
    """Embedded in an application, the gateway logs through the standard library's logging
    (warnings on stderr by default) and never writes its log lines to stdout."""
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "from moe_core.testing import make_moe\n"
        "async def main():\n"
        "    async with make_moe({'experts': {'a': {'kind': 'echo'}}}) as moe:\n"
        "        answer = await moe.complete({'messages': [{'role': 'user', 'content': 'hi'}]})\n"
        "        print(answer.result.content)\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "expert.ready" not in result.stderr  # info lines are for the application to enable


async def test_chat_json_prints_a_chat_completion(tmp_path, fake_upstream):
    """`moe chat --json` prints what the HTTP API answers, OpenAI's chat.completion."""
    _, base_url = fake_upstream
    config = tmp_path / "remote.yaml"
    config.write_text(f"experts:\n  remote: {{kind: openai, base_url: '{base_url}'}}\n")
    result = await asyncio.to_thread(run_moe, "chat", "hello", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["object"] == "chat.completion" and answer["model"] == "remote"
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == "echo: hello"
    assert answer["moe_metadata"]["experts_used"] == ["remote"]
    assert result.stderr == ""  # quiet: no log lines, no progress bars
