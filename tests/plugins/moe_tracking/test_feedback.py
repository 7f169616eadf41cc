"""The feedback loop: POST /v1/feedback is validated, stored durably and moves learned weights."""

from __future__ import annotations

import asyncio

import pytest

from moe_core.signals import WeightSignal, find_signals
from moe_core.testing import make_moe
from moe_tracking.feedback import Feedback
from tests.plugins.moe_tracking.conftest import ask, tracked
from tests.plugins.moe_tracking.test_experiments import EXPERTS as AB_EXPERTS
from tests.plugins.moe_tracking.test_experiments import Plugin as FollowExperiments

EXPERTS = {"coder": {"kind": "echo"}, "writer": {"kind": "echo"}}


async def answered(client, text="write code", task="code", model="coder") -> str:
    response = await client.post(
        "/v1/chat/completions", json=ask(text, model=model, moe={"task_type": task})
    )
    assert response.status == 200
    return (await response.json())["id"]


async def test_feedback_on_a_request_updates_the_weight_gates_read(gateway, tmp_path):
    client = await gateway(tracked(EXPERTS, tmp_path=tmp_path, store="sqlite"))
    request_id = await answered(client)
    response = await client.post(
        "/v1/feedback",
        json={"request_id": request_id, "outcome": "success", "quality_score": 0.9,
              "pr_merged": True, "rating": 5, "comment": "merged as is"},
    )  # fmt: skip
    assert response.status == 201
    stored = await response.json()
    assert stored["expert"] == "coder" and stored["task_type"] == "code"
    assert stored["matched_request"] is True
    assert stored["score"] == 1.0  # mean(1, 0.9, 1) + 0.2, capped at 1

    weights = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    # EMA from neutral 0.5 with alpha 0.1: 0.55, i.e. weight 1.1
    assert weights["learned_weight"] == pytest.approx(1.1)
    assert weights["feedback"]["pr_merge_rate"] == 1.0
    assert weights["feedback"]["avg_rating"] == 5.0

    bad = await answered(client, "more code")
    await client.post(
        "/v1/feedback", json={"request_id": bad, "outcome": "failure", "pr_reverted": True}
    )
    report = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    assert report["learned_weight"] == pytest.approx((0.1 * 0.0 + 0.9 * 0.55) / 0.5)
    assert report["feedback"]["pr_revert_rate"] == 0.5

    again = await client.get(f"/v1/feedback/{request_id}")
    assert again.status == 200
    assert (await again.json())["comment"] == "merged as is"


async def test_the_weight_signal_is_neutral_without_feedback_and_follows_it():
    moe = make_moe(tracked(EXPERTS))
    async with moe:
        response = await moe.complete(ask(model="writer", moe={"task_type": "essay"}))
        [weights] = find_signals(moe.trackers, WeightSignal)
        assert weights.learned_weight("writer", "essay") == 1.0
        stored = await moe.trackers["feedback"].record(
            Feedback(request_id=response.id, rating=1), set(moe.experts)
        )
        assert stored["request_id"] == response.metadata.request_id
        assert weights.learned_weight("writer", "essay") == pytest.approx(0.9)
        assert weights.learned_weight("writer", None) == pytest.approx(0.9)
        assert weights.learned_weight("writer", "other-task") == 1.0
        assert weights.learned_weight("coder", "essay") == 1.0


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"outcome": "success"}, "request_id", "Missing required parameter"),
        ({"request_id": "r", "rating": 6}, "rating", "less than or equal to 5"),
        ({"request_id": "r", "quality_score": -0.1}, "quality_score", "greater than or equal"),
        ({"request_id": "r", "outcome": "great"}, "outcome", "'success', 'partial' or 'failure'"),
        ({"request_id": "r"}, None, "at least one of outcome"),
        ({"request_id": "r", "rating": 3, "stars": 4}, "stars", "Unknown parameter: 'stars'"),
        ({"request_id": "bad id!", "rating": 3}, "request_id", "should match pattern"),
        ({"request_id": "r", "rating": "five"}, "rating", "valid integer"),
    ],
)
async def test_bad_feedback_is_a_400_naming_the_field(gateway, body, param, fragment):
    client = await gateway(tracked(EXPERTS))
    response = await client.post("/v1/feedback", json=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]


async def test_feedback_that_is_not_json_is_rejected(gateway):
    client = await gateway(tracked(EXPERTS))
    json_type = {"Content-Type": "application/json"}
    response = await client.post("/v1/feedback", data="{not json", headers=json_type)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    response = await client.post("/v1/feedback", data="rating=5")
    assert response.status == 415


async def test_unknown_request_ids_are_404_unless_the_expert_is_named(gateway):
    client = await gateway(tracked(EXPERTS))
    response = await client.post("/v1/feedback", json={"request_id": "nope", "rating": 4})
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "request_not_found" and "send 'expert'" in error["message"]

    response = await client.post(
        "/v1/feedback",
        json={"request_id": "nope", "rating": 4, "expert": "writer", "task_type": "essay"},
    )
    assert response.status == 201
    assert (await response.json())["matched_request"] is False
    report = await (await client.get("/v1/experts/writer/report?task_type=essay")).json()
    assert report["feedback"]["feedback"] == 1

    response = await client.post(
        "/v1/feedback", json={"request_id": "nope", "rating": 4, "expert": "ghost"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "expert"
    assert (await client.get("/v1/feedback/never-given")).status == 404


async def test_feedback_and_weights_survive_a_restart_with_sqlite(gateway, tmp_path):
    config = tracked(EXPERTS, tmp_path=tmp_path, store="sqlite")
    first = make_moe(config)
    async with first:
        response = await first.complete(ask(model="coder", moe={"task_type": "code"}))
        await first.trackers["feedback"].record(
            Feedback(request_id=response.id, outcome="failure"), set(first.experts)
        )
    client = await gateway(config)
    stored = await (await client.get(f"/v1/feedback/{response.id}")).json()
    assert stored["outcome"] == "failure" and stored["expert"] == "coder"
    report = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    assert report["learned_weight"] == pytest.approx(0.9)
    assert report["performance"]["calls"] == 1
    # A request answered before the restart can still get feedback after it.
    late = await client.post("/v1/feedback", json={"request_id": response.id, "rating": 5})
    assert late.status == 201 and (await late.json())["matched_request"] is True


async def test_a_retry_with_the_same_idempotency_key_counts_once(gateway, store_config):
    client = await gateway(tracked(EXPERTS, **store_config))
    request_id = await answered(client)
    body = {"request_id": request_id, "outcome": "success", "quality_score": 1.0}
    once = {"Idempotency-Key": "7f0c9d1e-retry-me"}

    first = await client.post("/v1/feedback", json=body, headers=once)
    assert first.status == 201
    retry = await client.post("/v1/feedback", json=body, headers=once)
    assert retry.status == 200
    assert await retry.json() == await first.json()
    report = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    assert report["feedback"]["feedback"] == 1
    assert report["learned_weight"] == pytest.approx(1.1)  # one EMA step from neutral

    other = await client.post("/v1/feedback", json={**body, "outcome": "failure"}, headers=once)
    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"

    # Without a key the same judgement sent twice is two judgements.
    for _ in range(2):
        assert (await client.post("/v1/feedback", json=body)).status == 201
    report = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    assert report["feedback"]["feedback"] == 3


async def test_concurrent_posts_with_one_idempotency_key_count_once(gateway, store_config):
    client = await gateway(tracked(EXPERTS, **store_config))
    request_id = await answered(client)
    body = {"request_id": request_id, "rating": 5}
    posts = [
        client.post("/v1/feedback", json=body, headers={"Idempotency-Key": "k"}) for _ in range(5)
    ]
    statuses = sorted(response.status for response in await asyncio.gather(*posts))
    # The first records it; the others either see its answer or are told to retry for it.
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}
    report = await (await client.get("/v1/experts/coder/report?task_type=code")).json()
    assert report["feedback"]["feedback"] == 1


async def test_a_failed_post_leaves_its_idempotency_key_free_for_the_retry(gateway):
    client = await gateway(tracked(EXPERTS))
    once = {"Idempotency-Key": "first-try-fails"}
    unknown = await client.post(
        "/v1/feedback", json={"request_id": "nope", "rating": 4}, headers=once
    )
    assert unknown.status == 404
    fixed = await client.post(
        "/v1/feedback", json={"request_id": "nope", "rating": 4, "expert": "writer"}, headers=once
    )
    assert fixed.status == 201
    too_long = await client.post(
        "/v1/feedback",
        json={"request_id": "nope", "rating": 4},
        headers={"Idempotency-Key": "x" * 256},
    )
    assert too_long.status == 400
    assert (await too_long.json())["error"]["param"] == "Idempotency-Key"


async def test_a_retried_feedback_counts_once_in_an_ab_test(gateway):
    client = await gateway(
        tracked(AB_EXPERTS, gate={"kind": "follow-experiments"}),
        plugins=[("follow", FollowExperiments())],
    )
    started = await client.post(
        "/v1/ab-tests", json={"expert_a": "incumbent", "expert_b": "challenger"}
    )
    test_id = (await started.json())["id"]
    answer = await client.post("/v1/chat/completions", json=ask("q", user="u1"))
    request_id = (await answer.json())["id"]
    for _ in range(2):
        await client.post(
            "/v1/feedback",
            json={"request_id": request_id, "rating": 5},
            headers={"Idempotency-Key": "ab-retry"},
        )
    arms = (await (await client.get(f"/v1/ab-tests/{test_id}")).json())["arms"]
    assert arms["a"]["feedback"] + arms["b"]["feedback"] == 1
