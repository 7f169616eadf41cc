"""A response cache's configuration: off unless configured, and every mistake stops startup
with a message naming the key at fault."""

from __future__ import annotations

from typing import Any

import pytest

from moe_core import ConfigError
from moe_core.testing import make_moe
from tests.plugins.moe_cache.conftest import EMBEDDER, ask, cached, calls, chat, notes


def fails(options: dict[str, Any], match: str, plugins=EMBEDDER) -> None:
    config = cached({"a": {"kind": "echo"}, "emb": {"kind": "bag-of-words"}}, **options)
    with pytest.raises(ConfigError, match=match):
        make_moe(config, plugins=plugins)


async def test_without_a_response_cache_nothing_is_cached(gateway):
    client = await gateway({"experts": {"a": {"kind": "echo"}}})
    for _ in range(2):
        assert notes(await chat(client, ask())) == []
    assert calls(client) == 2


def test_the_experts_to_cache_must_be_named():
    with pytest.raises(ConfigError, match=r"trackers\.cache\.experts: Field required"):
        make_moe(
            {"experts": {"a": {"kind": "echo"}}, "trackers": {"cache": {"kind": "response-cache"}}}
        )
    fails({"experts": []}, r"trackers\.cache\.experts: empty")
    fails({"experts": "all"}, r"trackers\.cache\.experts: a list of expert names or '\*'")
    fails({"experts": ["a", "nope"]}, r"trackers\.cache\.experts\[1\]: unknown expert 'nope'")


def test_options_are_checked_with_their_key():
    fails({"ttl": 5}, r"trackers\.cache\.ttl: unknown key")
    fails({"ttl_s": 0}, r"trackers\.cache\.ttl_s: Input should be greater than 0")
    fails({"max_entries": 0}, r"trackers\.cache\.max_entries: ")
    fails({"store": "disk"}, r"trackers\.cache\.store: Input should be 'memory', 'sqlite' or")
    fails({"mode": "semantic"}, r"trackers\.cache\.semantic: required when mode is semantic")
    semantic = {"mode": "semantic", "semantic": {"embedder": "emb", "threshold": 1.5}}
    fails(semantic, r"trackers\.cache\.semantic\.threshold: ")


def test_the_embedder_must_be_an_expert_that_embeds():
    fails(
        {"mode": "semantic", "semantic": {"embedder": "nope"}},
        r"trackers\.cache\.semantic\.embedder: unknown expert 'nope'",
    )
    fails(
        {"mode": "semantic", "semantic": {"embedder": "a"}},
        r"trackers\.cache\.semantic\.embedder: expert 'a' cannot embed",
    )
