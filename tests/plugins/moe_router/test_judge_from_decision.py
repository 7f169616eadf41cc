"""The ``judge`` combiner takes its judge from the routing decision when its options name none."""

from __future__ import annotations

from moe_core.models import RoutingDecision
from moe_core.parts import Gate
from moe_core.plugins import Register, hookimpl
from moe_core.testing import make_moe
from tests.conftest import user


def config() -> dict:
    return {
        "experts": {
            "a": {"kind": "echo", "prefix": "A: "},
            "b": {"kind": "echo", "prefix": "B: "},
            "referee": {"kind": "echo", "reply": "Best: 2, it is clearer."},
        },
        "combiner": {"kind": "judge"},
    }


class NamesAJudge(Gate):
    """A gate that, like multi-factor's parallel decisions, names the judge in its decision."""

    async def route(self, request, experts, signals) -> RoutingDecision:
        return RoutingDecision(experts=["a", "b"], strategy="judge", judge="referee")


class _Plugin:
    @hookimpl
    def moe_register_gates(self, register: Register) -> None:
        register("names-a-judge", NamesAJudge)


async def test_a_judge_named_by_the_decision_is_used_and_said():
    moe = make_moe(
        {**config(), "gate": {"kind": "names-a-judge"}, "combiner": {"kind": "single"}},
        plugins=[("names-a-judge", _Plugin())],
    )
    async with moe:
        response = await moe.complete({"messages": [{"role": "user", "content": "hi"}]})
    assert response.metadata.strategy == "judge"
    assert response.result.content == "B: hi"
    assert response.metadata.notes == ["the judge picked b: Best: 2, it is clearer."]


async def test_without_any_judge_the_best_quality_answer_is_returned_and_why():
    moe = make_moe(
        {
            **config(),
            "experts": {
                "a": {"kind": "echo", "prefix": "A: ", "card": {"quality": 0.9}},
                "b": {"kind": "echo", "prefix": "B: ", "card": {"quality": 0.4}},
            },
            "combiner": {"kind": "judge", "experts": ["a", "b"]},
        }
    )
    async with moe:
        response = await moe.complete({"messages": [{"role": "user", "content": "hi"}]})
    assert response.result.content == "A: hi"
    [note] = response.metadata.notes
    assert "the judge combiner needs a judge: set combiner.judge" in note
    assert note.endswith("picked a, the highest-quality expert")


async def test_over_http_the_model_is_the_picked_expert_not_the_decisions_judge(gateway):
    client = await gateway(
        {**config(), "gate": {"kind": "names-a-judge"}, "combiner": {"kind": "single"}},
        plugins=[("names-a-judge", _Plugin())],
    )
    response = await client.post("/v1/chat/completions", json=user("hi"))
    body = await response.json()
    assert body["choices"][0]["message"]["content"] == "B: hi"
    assert body["model"] == "b"
    assert sorted(body["moe_metadata"]["experts_used"]) == ["a", "b", "referee"]
