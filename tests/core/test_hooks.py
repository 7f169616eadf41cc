"""The hooks that open the core to plugins: config sections, config rewrites, default
configurations, middlewares and app contexts, CLI commands, and resources parts share."""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict

from moe_core import (
    ConfigError,
    Options,
    PluginError,
    RateLimited,
    RequestObserver,
    Tracker,
    hookimpl,
)
from moe_core.cli import build_parser
from moe_core.config import NO_DEFAULT, load_config
from moe_core.plugins import create_plugin_manager
from moe_core.server import create_app
from moe_core.testing import make_moe, testing_plugin
from tests.conftest import user

ECHO = {"experts": {"echo": {"kind": "echo"}}}


class ShoutSection(Options):
    volume: int = 1


class DeclaresShout:
    @hookimpl
    def moe_config_sections(self, register):
        register("shout", ShoutSection)


def manager_with(*plugins: tuple[str, object]):
    return create_plugin_manager(entrypoints=False, plugins=[("testing", testing_plugin), *plugins])


def test_a_plugin_section_is_validated_against_its_model_and_read_back():
    plugins = manager_with(("shout", DeclaresShout()))
    config = load_config({**ECHO, "shout": {"volume": 3}}, plugins=plugins)
    assert config.section("shout").volume == 3
    assert load_config(ECHO, plugins=plugins).section("shout").volume == 1  # left out: defaults
    with pytest.raises(ConfigError, match=r"shout\.volum: unknown key"):
        load_config({**ECHO, "shout": {"volum": 3}}, plugins=plugins)
    with pytest.raises(ConfigError, match=r"shout\.volume: Input should be a valid integer"):
        load_config({**ECHO, "shout": {"volume": "loud"}}, plugins=plugins)


def test_a_section_no_installed_plugin_declares_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"shout: unknown section; no installed plugin"):
        load_config({**ECHO, "shout": {"volume": 3}}, plugins=manager_with())


def test_a_section_declared_twice_or_owned_by_the_core_names_the_plugins():
    plugins = manager_with(("shout", DeclaresShout()), ("copycat", DeclaresShout()))
    with pytest.raises(PluginError, match=r'"shout".*"copycat"'):
        load_config(ECHO, plugins=plugins)

    class TakesServer:
        @hookimpl
        def moe_config_sections(self, register):
            register("server", ShoutSection)

    with pytest.raises(PluginError, match="'server', which the core owns"):
        load_config(ECHO, plugins=manager_with(("taker", TakesServer())))


def test_a_plugin_rewrites_its_own_section_before_validation():
    class Aliases:
        @hookimpl
        def moe_config_sections(self, register):
            class Section(BaseModel):
                model_config = ConfigDict(extra="forbid")
                names: list[str] = []

            register("clones", Section)

        @hookimpl
        def moe_prepare_config(self, data, base_dir, source):
            for name in (data.get("clones") or {}).get("names", []):
                data["experts"][name] = {"kind": "echo", "prefix": f"{name}: "}

    config = load_config(
        {**ECHO, "clones": {"names": ["a", "b"]}}, plugins=manager_with(("clones", Aliases()))
    )
    assert list(config.experts) == ["echo", "a", "b"]


class DefaultExperts:
    @hookimpl
    def moe_default_config(self) -> dict[str, Any]:
        return {"experts": {"echo": {"kind": "echo"}}, "gate": {"kind": "fixed"}}


class DefaultTrackers:
    @hookimpl
    def moe_default_config(self) -> dict[str, Any]:
        return {"trackers": {"memory": {"kind": "memory"}}, "gate": {"kind": "fixed"}}


def test_default_configurations_of_several_plugins_are_merged(monkeypatch):
    monkeypatch.delenv("MOE_CONFIG", raising=False)
    plugins = manager_with(("experts", DefaultExperts()), ("trackers", DefaultTrackers()))
    config = load_config(None, plugins=plugins)
    assert list(config.experts) == ["echo"] and list(config.trackers) == ["memory"]


def test_two_defaults_that_disagree_name_both_plugins(monkeypatch):
    monkeypatch.delenv("MOE_CONFIG", raising=False)

    class OtherGate:
        @hookimpl
        def moe_default_config(self):
            return {"gate": {"kind": "multi-factor"}}

    plugins = manager_with(("experts", DefaultExperts()), ("other", OtherGate()))
    with pytest.raises(PluginError, match=r'gate\.kind is set by plugin "experts".*"other"'):
        load_config(None, plugins=plugins)


def test_with_no_default_experts_the_error_says_what_to_install(monkeypatch):
    monkeypatch.delenv("MOE_CONFIG", raising=False)
    with pytest.raises(ConfigError) as error:
        load_config(None, plugins=manager_with(("trackers", DefaultTrackers())))
    assert str(error.value) == NO_DEFAULT


async def test_middlewares_run_by_stage_and_contexts_wrap_the_app(monkeypatch):
    """Auth before limits before the rest, whatever order plugins add them in."""
    seen: list[str] = []
    lifecycle: list[str] = []

    def recorder(label: str, refuse: bool = False):
        @web.middleware
        async def middleware(request, handler):
            seen.append(label)
            if refuse and request.headers.get("X-Over-Limit"):
                raise RateLimited("too many", headers={"Retry-After": "7"})
            return await handler(request)

        return middleware

    class Adds:
        @hookimpl
        def moe_setup_app(self, app, moe, add_middleware):
            add_middleware(recorder("routes"))
            add_middleware(recorder("limits", refuse=True), stage="limits")

            async def context(app):
                lifecycle.append("started")
                yield
                lifecycle.append("stopped")

            app.cleanup_ctx.append(context)

    monkeypatch.setenv("TEST_HOOK_KEYS", "k1")
    config = {**ECHO, "server": {"api_keys_env": "TEST_HOOK_KEYS"}}
    moe = make_moe(config, plugins=[("adds", Adds())], entrypoints=False)
    client = TestClient(TestServer(create_app(moe, wait_for_experts=True), host="127.0.0.1"))
    await client.start_server()
    try:
        assert lifecycle == ["started"]
        assert (await client.get("/health", headers={})).status == 200
        # Refused by auth: no later stage runs.
        seen.clear()
        assert (await client.get("/-/stats")).status == 401
        assert seen == []
        key = {"Authorization": "Bearer k1"}
        assert (await client.get("/-/stats", headers=key)).status == 200
        assert seen == ["limits", "routes"]
        refused = await client.get("/-/stats", headers={**key, "X-Over-Limit": "1"})
        assert refused.status == 429 and refused.headers["Retry-After"] == "7"
        assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"
    finally:
        await client.close()
    assert lifecycle == ["started", "stopped"]


async def test_request_observers_see_every_request_from_outside_every_middleware(
    monkeypatch, gateway
):
    """Told of a request the key check refuses too, with its status and error; a header added
    when an answer in one piece ends reaches the client; a stream's first byte comes before its
    end. A hook implementation takes only the arguments it uses."""
    events: list[tuple[Any, ...]] = []

    class Watch(RequestObserver):
        def request_started(self, request):
            events.append(("started", request.path))

        def response_starting(self, request, response):
            events.append(("starting", response.status))

        def request_ended(self, request, status, response, error):
            events.append(("ended", status, type(error).__name__ if error else None))
            if response is not None and not response.prepared:
                response.headers["X-Watched"] = "yes"

    class Adds:
        @hookimpl
        def moe_setup_app(self, add_request_observer):
            add_request_observer(Watch())

    monkeypatch.setenv("TEST_HOOK_KEYS", "k1")
    config = {**ECHO, "server": {"api_keys_env": "TEST_HOOK_KEYS"}}
    client = await gateway(config, plugins=[("adds", Adds())])
    key = {"Authorization": "Bearer k1"}
    body = user("hi", model="echo")
    refused = await client.get("/-/stats")
    assert refused.status == 401 and refused.headers["X-Watched"] == "yes"
    assert events == [
        ("started", "/-/stats"),
        ("ended", 401, "AuthenticationFailed"),
        ("starting", 401),
    ]
    events.clear()
    answered = await client.post("/v1/chat/completions", json=body, headers=key)
    assert answered.status == 200 and answered.headers["X-Watched"] == "yes"
    assert events == [("started", "/v1/chat/completions"), ("ended", 200, None),
                      ("starting", 200)]  # fmt: skip
    events.clear()
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=key)
    assert streamed.status == 200 and (await streamed.read()).endswith(b"[DONE]\n\n")
    assert "X-Watched" not in streamed.headers  # its headers were gone before it ended
    assert events == [("started", "/v1/chat/completions"), ("starting", 200),
                      ("ended", 200, None)]  # fmt: skip
    events.clear()
    assert (await client.get("/no/such/path", headers=key)).status == 404
    assert events[1] == ("ended", 404, "HTTPNotFound")


async def test_an_observer_that_fails_is_logged_and_never_fails_the_request(gateway):
    class Broken(RequestObserver):
        def request_started(self, request):
            raise RuntimeError("started")

        def response_starting(self, request, response):
            raise RuntimeError("starting")

        def request_ended(self, request, status, response, error):
            raise RuntimeError("ended")

    class Adds:
        @hookimpl
        def moe_setup_app(self, add_request_observer):
            add_request_observer(Broken())

    client = await gateway(ECHO, plugins=[("adds", Adds())])
    with structlog.testing.capture_logs() as logs:
        answered = await client.post("/v1/chat/completions", json=user("hi", model="echo"))
        assert answered.status == 200
        assert (await answered.json())["choices"][0]["message"]["content"] == "hi"
        streamed = await client.post(
            "/v1/chat/completions", json=user("hi", model="echo", stream=True)
        )
        assert streamed.status == 200 and (await streamed.read()).endswith(b"[DONE]\n\n")
    failed = [entry["method"] for entry in logs if entry["event"] == "http.observer_failed"]
    assert sorted(failed) == sorted(["request_started", "response_starting", "request_ended"] * 2)


def test_a_plugin_adds_a_command(capsys):
    class Hello:
        @hookimpl
        def moe_register_commands(self, commands):
            parser = commands.add_parser("hello", help="say hello")
            parser.add_argument("name")
            parser.set_defaults(handler=lambda args: print(f"hello {args.name}") or 0)

    parser = build_parser(manager_with(("hello", Hello())))
    args = parser.parse_args(["hello", "world"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "hello world\n"


class CountingStore:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("store started")

    async def close(self) -> None:
        self.log.append("store closed")


class SharesAStore(Tracker):
    log: list[str] = []

    def attach(self, moe) -> None:
        self.store = moe.resource("test.store", lambda: CountingStore(self.log))

    async def start(self) -> None:
        self.log.append(f"{self.name} started")

    async def close(self) -> None:
        self.log.append(f"{self.name} closed")

    async def observe(self, event) -> None:
        pass


async def test_parts_share_one_resource_started_before_and_closed_after_them():
    class Registers:
        @hookimpl
        def moe_register_trackers(self, register):
            register("shares", SharesAStore)

    config = {**ECHO, "trackers": {"one": {"kind": "shares"}, "two": {"kind": "shares"}}}
    moe = make_moe(config, plugins=[("shares", Registers())], entrypoints=False)
    one, two = moe.trackers["one"], moe.trackers["two"]
    assert one.store is two.store
    async with moe:
        await moe.complete(user("hi"))
    assert SharesAStore.log == [
        "store started",
        "one started",
        "two started",
        "one closed",
        "two closed",
        "store closed",
    ]
