"""Bounded local work: prompt and answer limits are 400s, a saturated model is a 503 with
Retry-After, and a caller that leaves (disconnect, timeout, shutdown) stops its generation."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from moe_core import ExpertUnavailable
from moe_core.testing import make_moe
from moe_domain_llms.engine import ForwardGuard, Job, generate_batch
from tests.conftest import free_port, serving, user, wait_healthy
from tests.plugins.moe_domain_llms.scripted_models import with_context_window

ENDLESS = 1_000_000  # tokens: the tiny model would take hours


@pytest.fixture(scope="module")
def long_model(tiny_model, tmp_path_factory) -> str:
    """The tiny random model, saying it reads a million positions: answers as long as asked."""
    return str(with_context_window(tiny_model, tmp_path_factory.mktemp("long"), 2 * ENDLESS))


def local(model: str, **options) -> dict:
    return {"experts": {"tiny": {"kind": "hf-causal-lm", "model": model, **options}}}


def endless(**options) -> dict:
    return {"max_output_tokens": ENDLESS, **options}


async def post(client, body: dict) -> tuple[int, dict, dict]:
    response = await client.post("/v1/chat/completions", json=body)
    return response.status, dict(response.headers), await response.json()


async def test_a_prompt_over_the_context_window_is_a_400_naming_it(gateway, tiny_model):
    client = await gateway(local(tiny_model))  # 512 positions
    status, _, body = await post(client, user("the quick brown fox " * 200, max_tokens=10))
    assert status == 400
    error = body["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 512 tokens" in error["message"]
    # The answer's share counts: the same prompt fits when less is asked of the answer.
    status, _, _ = await post(client, user("the quick brown fox " * 20, max_tokens=10))
    assert status == 200
    status, _, body = await post(client, user("the quick brown fox " * 20, max_tokens=480))
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    # With no max_tokens, the default limit (256 + 48 tokens) shrinks to what the window leaves.
    status, _, body = await post(client, user("the quick brown fox " * 90))
    assert status == 200 and body["usage"]["prompt_tokens"] > 512 - 304
    assert body["usage"]["total_tokens"] <= 512
    streamed = await client.post(
        "/v1/chat/completions", json=user("the quick brown fox " * 200, stream=True)
    )
    assert streamed.status == 400  # before the first byte, so a status and not an event


async def test_max_prompt_tokens_caps_the_prompt_below_the_window(gateway, tiny_model):
    client = await gateway(local(tiny_model, max_prompt_tokens=20))
    status, _, body = await post(client, user("the quick brown fox jumps over " * 5))
    assert status == 400 and "reads at most 20 prompt tokens" in body["error"]["message"]
    assert (await post(client, user("hi", max_tokens=3)))[0] == 200


async def test_a_megabyte_prompt_is_refused_at_once(gateway, tiny_model):
    client = await gateway(local(tiny_model))
    started = time.monotonic()
    status, _, body = await post(client, user("x" * 1_000_000))
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert time.monotonic() - started < 2  # never tokenized, never generated


async def test_max_tokens_above_the_ceiling_is_a_400(gateway, tiny_model):
    client = await gateway(local(tiny_model, max_output_tokens=50))
    status, _, body = await post(client, user("hi", max_tokens=51))
    assert status == 400 and body["error"]["param"] == "max_tokens"
    assert "at most 50 tokens" in body["error"]["message"]
    status, _, body = await post(client, user("hi", max_completion_tokens=51))
    assert status == 400 and body["error"]["param"] == "max_completion_tokens"
    status, _, body = await post(client, user("hi", max_tokens=50))
    assert status == 200 and body["usage"]["completion_tokens"] == 50


async def test_a_saturated_model_answers_503_with_retry_after(gateway, long_model):
    config = local(long_model, **endless(max_batch_size=1, max_queue=1, max_wait_ms=0))
    client = await gateway(config)
    busy = asyncio.create_task(post(client, user("busy", max_tokens=ENDLESS)))
    await asyncio.sleep(0.5)  # generating
    queued = asyncio.create_task(post(client, user("waiting", max_tokens=5)))
    await asyncio.sleep(0.2)  # waiting for the first
    status, headers, body = await post(client, user("one too many", max_tokens=5))
    assert status == 503 and body["error"]["code"] == "expert_busy"
    assert int(headers["Retry-After"]) >= 1
    busy.cancel()  # the client leaves: its generation stops and the queued one is answered
    status, _, body = await asyncio.wait_for(queued, 10)
    assert status == 200 and body["usage"]["completion_tokens"] == 5


async def test_a_client_that_disconnects_stops_its_generation(gateway, long_model):
    client = await gateway(local(long_model, **endless(max_wait_ms=0)))
    with pytest.raises(asyncio.TimeoutError):
        # A non-streaming answer that would take hours; the client gives up after a second.
        await client.post(
            "/v1/chat/completions",
            json=user("hello", max_tokens=ENDLESS),
            timeout=aiohttp.ClientTimeout(total=1),
        )
    # The model is free again: a short request is not queued behind the abandoned one.
    started = time.monotonic()
    status, _, body = await asyncio.wait_for(post(client, user("hi", max_tokens=5)), 10)
    assert status == 200 and body["usage"]["completion_tokens"] == 5
    assert time.monotonic() - started < 5


async def test_a_stream_the_client_leaves_stops_too(gateway, long_model):
    client = await gateway(local(long_model, **endless(max_wait_ms=0)))
    response = await client.post(
        "/v1/chat/completions", json=user("hello", max_tokens=ENDLESS, stream=True)
    )
    await response.content.readline()  # it is streaming
    response.close()
    status, _, _ = await asyncio.wait_for(post(client, user("hi", max_tokens=5)), 10)
    assert status == 200


async def test_closing_the_gateway_stops_generation_and_tells_the_caller(long_model):
    moe = make_moe(local(long_model, **endless()))
    await moe.start(wait=True)
    call = asyncio.create_task(moe.complete(user("hello", max_tokens=ENDLESS)))
    await asyncio.sleep(0.5)
    batcher = moe.experts["tiny"].expert.loaded.batcher
    started = time.monotonic()
    await moe.aclose()
    assert time.monotonic() - started < 5
    assert batcher.waiting == 0 and batcher._call_task is None
    with pytest.raises(ExpertUnavailable, match="shutting down"):
        await call


async def test_sigterm_stops_the_server_within_the_grace_period_during_generation(
    long_model, tmp_path
):
    port = free_port()
    config = {"server": {"port": port, "shutdown_timeout_s": 1}, **local(long_model, **endless())}
    url = f"http://127.0.0.1:{port}"
    with serving(config, tmp_path) as server:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(url)
            body = user("hello", max_tokens=ENDLESS)
            waiting = asyncio.create_task(session.post(f"{url}/v1/chat/completions", json=body))
            await asyncio.sleep(1)  # generating, the client still waiting
            server.send_signal(signal.SIGTERM)
            started = time.monotonic()
            await asyncio.to_thread(server.wait, 30)
            stopped_in = time.monotonic() - started
            with pytest.raises(aiohttp.ClientError):
                await waiting
        # shutdown_timeout_s plus a few seconds (generous: a loaded machine is slow to exit), not
        # the minutes an unbounded generation held the process before.
        assert stopped_in < 1 + 10
        assert server.returncode == 0


def test_a_batch_whose_callers_leave_stops_between_layers_even_reading_the_prompt(tiny_model):
    """Reading a long prompt is one forward pass of many seconds on a CPU; the stopping
    criterion only runs after it. The guard stops at the next layer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    guard = ForwardGuard(model)
    job = Job(input_ids=tokenizer.encode("the quick brown fox"), max_new_tokens=50)
    layers_run: list[int] = []

    def leave_during_the_first_layer(module, args, output) -> None:
        layers_run.append(1)
        job.cancelled.set()  # the caller goes away while the prompt is being read

    model.model.layers[0].register_forward_hook(leave_during_the_first_layer)
    model.model.layers[1].register_forward_hook(lambda *args: layers_run.append(2))
    [output] = generate_batch(model, tokenizer, [job], guard)
    assert layers_run == [1]  # the second layer never ran
    assert output.finish_reason == "cancelled" and output.completion_tokens == 0
    # The guard is idle between batches: the same model generates normally afterwards.
    [again] = generate_batch(model, tokenizer, [Job(input_ids=job.input_ids, max_new_tokens=4)])
    assert again.completion_tokens == 4
