"""``x-moe-overhead-ms``: on every response, the gateway's own time without the experts'."""

from __future__ import annotations

from tests.plugins.moe_metrics.conftest import chat, scrape, total

CHAT = "/v1/chat/completions"
HEADER = "x-moe-overhead-ms"
SLOW = {"experts": {"slow": {"kind": "echo", "delay_s": 0.3}}}


async def test_every_response_carries_the_overhead(gateway):
    client = await gateway({"experts": {"a": {"kind": "echo"}}})
    responses = [
        await client.post(CHAT, json=chat()),
        await client.post(CHAT, json=chat(stream=True)),
        await client.post(CHAT, json=chat(model="nobody")),
        await client.post(CHAT, data=b"{not json"),
        await client.get("/v1/models"),
        await client.get("/health"),
        await client.get("/nowhere"),
        await client.get("/metrics"),
    ]
    for response in responses:
        await response.read()
        assert float(response.headers[HEADER]) >= 0, response.url
    samples = await scrape(client)
    # Each of them, error envelopes included, is in the overhead histogram once.
    assert total(samples, "moe_gateway_overhead_seconds_count") == len(responses)
    assert total(samples, "moe_requests_total") == len(responses)


async def test_the_overhead_leaves_out_the_time_spent_in_experts(gateway):
    client = await gateway(SLOW)
    response = await client.post(CHAT, json=chat())
    metadata = (await response.json())["moe_metadata"]
    assert metadata["latency_ms"]["slow"] >= 300
    overhead = float(response.headers[HEADER])
    # What the gateway itself does takes a fraction of a millisecond; a loaded test machine
    # may stretch it, never to anything near the expert's 300 ms.
    assert overhead < 100
    samples = await scrape(client)
    assert total(samples, "moe_gateway_overhead_seconds_count", route=CHAT) == 1
    assert (
        total(samples, "moe_gateway_overhead_seconds_sum", route=CHAT) == round(overhead / 1000, 6)
        or abs(total(samples, "moe_gateway_overhead_seconds_sum", route=CHAT) - overhead / 1000)
        < 1e-6
    )


async def test_a_stream_counts_its_running_expert_call_as_expert_time(gateway):
    client = await gateway(SLOW)
    response = await client.post(CHAT, json=chat("a b", stream=True))
    # Headers go out with the first chunk, after the expert's 300 ms wait: not gateway time.
    assert float(response.headers[HEADER]) < 100
    assert "data: [DONE]" in await response.text()


async def test_a_failed_expert_call_is_expert_time_too(gateway):
    config = {
        "experts": {
            "broken": {"kind": "echo", "delay_s": 0.2, "fail": "error", "fallbacks": ["slow"]},
            "slow": {"kind": "echo", "delay_s": 0.2},
        }
    }
    client = await gateway(config)
    response = await client.post(CHAT, json=chat(model="broken", stream=True))
    assert response.status == 200
    await response.read()
    assert float(response.headers[HEADER]) < 100
    answered = await client.post(CHAT, json=chat(model="broken"))
    assert (await answered.json())["model"] == "slow"
    assert float(answered.headers[HEADER]) < 100
