"""The client: retries that honour Retry-After, credentials from the environment, one session."""

from __future__ import annotations

import pytest

from moe_core import RateLimited
from moe_pollinations import client as client_module
from moe_pollinations.client import ConnectionOptions, PollinationsClient
from moe_pollinations.testing import FakePollinations, ModelBehaviour


def make_client(fake: FakePollinations, **options) -> PollinationsClient:
    settings = ConnectionOptions(
        **fake.options(), token_env="TEST_POLL_TOKEN", referrer_env="TEST_POLL_REF", **options
    )
    return PollinationsClient(settings, who="test")


async def test_429_is_retried_after_the_wait_retry_after_asks(fake, monkeypatch):
    fake.behaviour["flux"] = ModelBehaviour(status=429, fail_times=1, retry_after="1")
    client = make_client(fake, backoff_s=0.0)
    await client.start()
    try:
        reply = await client.image("cat", {"model": "flux"}, timeout_s=10)
    finally:
        await client.close()
    assert reply.content_type == "image/jpeg"
    first, second = fake.calls("flux")
    # backoff_s is 0, so only Retry-After can explain the wait between the two attempts.
    assert second.at - first.at >= 0.95


async def test_a_retry_after_longer_than_allowed_is_reported_not_waited(fake):
    fake.behaviour["flux"] = ModelBehaviour(status=429, retry_after="120")
    client = make_client(fake, max_retry_wait_s=5)
    await client.start()
    try:
        with pytest.raises(RateLimited) as caught:
            await client.image("cat", {"model": "flux"}, timeout_s=10)
    finally:
        await client.close()
    assert caught.value.headers == {"Retry-After": "120"}
    assert "max_retry_wait_s" in caught.value.message
    assert len(fake.calls("flux")) == 1


async def test_server_errors_are_retried_with_backoff_up_to_max_retries(fake):
    fake.behaviour["openai"] = ModelBehaviour(status=503)
    client = make_client(fake, backoff_s=0.01, max_retries=2)
    await client.start()
    try:
        with pytest.raises(Exception, match="status 503"):
            await client.chat(
                {"model": "openai", "messages": [{"role": "user", "content": "x"}]}, timeout_s=5
            )
    finally:
        await client.close()
    assert len(fake.calls("openai")) == 3


async def test_token_and_referrer_come_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("TEST_POLL_TOKEN", "sekrit")
    monkeypatch.setenv("TEST_POLL_REF", "https://example.org")
    fake.require_token = "sekrit"
    client = make_client(fake)
    await client.start()
    try:
        await client.image("cat", {"model": "flux"}, timeout_s=5)
        await client.chat(
            {"model": "openai", "messages": [{"role": "user", "content": "x"}]}, timeout_s=5
        )
    finally:
        await client.close()
    image, chat = fake.requests
    assert image.headers["Authorization"] == "Bearer sekrit"
    assert image.query["referrer"] == "https://example.org"
    assert chat.headers["Authorization"] == "Bearer sekrit"
    assert chat.headers["Referer"] == "https://example.org"


async def test_every_client_shares_one_session_closed_by_the_last(fake):
    first, second = make_client(fake), make_client(fake)
    await first.start()
    await second.start()
    assert first.session is second.session
    session = first.session
    await first.close()
    assert not session.closed
    await second.close()
    assert session.closed and client_module.SESSION.session is None
