"""mixture-of-agents: layered proposers, an aggregator that sees them, failures left out."""

from __future__ import annotations

from moe_core import ChatRequest, Expert, ExpertResult, hookimpl
from moe_core.testing import make_moe
from tests.conftest import user


class Reader(Expert):
    """Answers with how many answers its system prompt listed, so tests see what it was given."""

    async def generate(self, request: ChatRequest) -> ExpertResult:
        system = " ".join(m.text() for m in request.messages if m.role == "system")
        listed = (
            [part.split("]", 1)[1].strip().split("\n")[0] for part in system.split("\n[")[1:]]
            if "\n[" in system
            else []
        )
        return ExpertResult(content=f"{self.name} saw {listed}")


class ReaderPlugin:
    @hookimpl
    def moe_register_experts(self, register):
        register("reader", Reader)


def config(**combiner) -> dict:
    return {
        "experts": {
            "p1": {"kind": "echo", "prefix": "p1: "},
            "p2": {"kind": "echo", "prefix": "p2: "},
            "dead": {"kind": "echo", "fail": "error"},
            "refiner": {"kind": "reader"},
            "boss": {"kind": "reader"},
        },
        "combiner": {"kind": "mixture-of-agents", **combiner},
    }


def build(cfg: dict):
    return make_moe(cfg, plugins=[("reader", ReaderPlugin())])


async def test_the_aggregator_sees_the_last_layers_answers():
    async with build(config(layers=[["p1", "p2", "dead"]], aggregator="boss")) as moe:
        response = await moe.complete(user("q"))
        streamed = "".join([d.content or "" async for d in await moe.open_stream(user("q"))])
    assert response.result.content == "boss saw ['p1: q', 'p2: q']"
    assert streamed == response.result.content
    assert [f.expert for f in response.metadata.fallbacks] == ["dead"]
    assert response.metadata.experts_used == ["p1", "p2", "boss"]


async def test_later_layers_improve_on_earlier_ones_and_a_dead_layer_is_skipped():
    cfg = config(layers=[["p1", "p2"], ["refiner"], ["dead"]], aggregator="boss")
    async with build(cfg) as moe:
        response = await moe.complete(user("q"))
    assert response.result.content == "boss saw [\"refiner saw ['p1: q', 'p2: q']\"]"
    assert "every proposer of layer 3 failed" in response.metadata.notes[0]
