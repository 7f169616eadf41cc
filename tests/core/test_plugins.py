"""Plugin discovery: entry points, attribution, and startup errors naming the plugin."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from moe_core import Expert, PluginError, create_plugin_manager, hookimpl
from tests.conftest import run_moe


class Twin(Expert):
    async def generate(self, request):  # pragma: no cover - never called
        raise NotImplementedError


class RegistersEcho:
    @hookimpl
    def moe_register_experts(self, register):
        register("echo", Twin)


class Misspelt:
    @hookimpl
    def moe_register_expert(self, register):  # missing the trailing "s"
        pass


def test_the_cores_default_plugins_register_through_the_same_hooks():
    manager = create_plugin_manager(entrypoints=False)
    kinds = {name: info.kinds for name, info in manager.infos.items()}
    assert kinds == {
        "fixed": {"gate": ["fixed"]},
        "single": {"combiner": ["single"]},
        "memory": {"tracker": ["memory"]},
        "admin": {"frontend": ["admin"]},
    }
    assert {info.distribution for info in manager.infos.values()} == {"moe-core"}
    assert "moe_register_gates" in manager.infos["fixed"].hooks


def test_a_default_plugin_can_be_disabled_like_an_installed_one():
    manager = create_plugin_manager(entrypoints=False, disable=["admin", "memory"])
    assert set(manager.infos) == {"fixed", "single"}
    assert manager.kinds.names("frontend") == []


def test_features_come_from_their_own_distributions():
    manager = create_plugin_manager()
    assert manager.kinds.get("gate", "multi-factor").plugin == "router"
    assert manager.kinds.get("tracker", "circuit-breaker").plugin == "tracking"
    assert manager.kinds.get("combiner", "cascade").plugin == "strategies"
    assert manager.infos["tracking"].distribution == "moe-tracking"
    assert manager.sections["tracking"].plugin == "tracking"
    assert manager.sections["registry"].plugin == "router"


def test_installed_plugins_are_found_through_entry_points():
    manager = create_plugin_manager()
    assert manager.infos["openai-compat"].distribution == "moe-openai-compat"
    assert manager.kinds.get("expert", "openai").plugin == "openai-compat"
    assert manager.kinds.get("expert", "hf-causal-lm").plugin == "domain-llms"
    assert manager.kinds.get("expert", "byt5").plugin == "byt5"


def test_a_duplicate_kind_names_both_plugins():
    from moe_core.testing import testing_plugin

    manager = create_plugin_manager(
        entrypoints=False, plugins=[("testing", testing_plugin), ("copycat", RegistersEcho())]
    )
    with pytest.raises(PluginError, match='\'echo\' is registered twice.*"testing".*"copycat"'):
        manager.kinds  # noqa: B018 - collecting kinds is what raises


def test_a_misspelt_hook_is_an_error_naming_the_plugin():
    with pytest.raises(PluginError, match='plugin "typo".*moe_register_expert'):
        create_plugin_manager(entrypoints=False, plugins=[("typo", Misspelt())])


def test_disable_and_require():
    manager = create_plugin_manager(disable=["openai-compat"])
    assert "openai-compat" not in manager.infos
    with pytest.raises(PluginError, match="required plugin.*openai-compat"):
        create_plugin_manager(disable=["openai-compat"], require=["openai-compat"])


def _fake_distribution(site: Path, dist: str, module: str, entry: str, source: str) -> None:
    """What pip writes for an installed distribution: the module, METADATA and entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[moe]\n{entry} = {module}\n")


def _moe(*args: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    return run_moe(*args, env={"PYTHONPATH": str(pythonpath)})


def test_a_broken_plugin_stops_startup_with_its_name_and_distribution(tmp_path):
    _fake_distribution(
        tmp_path, "moe-broken", "moe_broken", "broken", "import a_module_that_does_not_exist\n"
    )
    result = _moe("plugins", pythonpath=tmp_path)
    assert result.returncode == 2
    assert 'Error importing plugin "broken" from distribution moe-broken' in result.stderr
    assert "a_module_that_does_not_exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_plugin_is_picked_up_with_no_core_change(tmp_path):
    _fake_distribution(
        tmp_path,
        "moe-upper",
        "moe_upper",
        "upper",
        """
        from moe_core import Expert, ExpertResult, hookimpl

        class Upper(Expert):
            '''Answers in capitals.'''
            async def generate(self, request):
                return ExpertResult(content=request.last_user_text().upper())

        @hookimpl
        def moe_register_experts(register):
            register("upper", Upper)
    """,
    )
    listed = _moe("plugins", pythonpath=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "upper  (moe-upper 0.3.0)" in listed.stdout
    assert "Answers in capitals." in listed.stdout
    config = tmp_path / "upper.yaml"
    config.write_text("experts:\n  up: {kind: upper}\n")
    answered = _moe("chat", "-c", str(config), "--no-stream", "quiet please", pythonpath=tmp_path)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "QUIET PLEASE"


def test_a_factory_that_builds_the_wrong_part_is_named():
    class NotAnExpert:
        def __init__(self, name, options):
            pass

    class Confused:
        @hookimpl
        def moe_register_experts(self, register):
            register("confused", NotAnExpert)

    from moe_core.testing import make_moe

    with pytest.raises(
        PluginError,
        match="kind 'confused' of plugin 'confused' built a NotAnExpert, not a moe_core.Expert",
    ):
        make_moe({"experts": {"x": {"kind": "confused"}}}, plugins=[("confused", Confused())])
