"""Models the gateway builds without validation (``moe_core.models.trusted``) on every request must
be exactly what validation would have built: every field present, every value of its type."""

from __future__ import annotations

from pydantic import BaseModel

from moe_core import MoEMetadata, MoEResponse, RoutingDecision, Usage
from moe_core.models import trusted
from moe_core.testing import make_moe
from tests.conftest import user


def assert_valid(model: BaseModel) -> None:
    """Every field set, and the same model as validating its own values gives."""
    cls = type(model)
    assert set(model.__dict__) == set(cls.model_fields), set(model.__dict__) ^ set(cls.model_fields)
    assert cls.model_validate(model.model_dump()) == model
    assert model.model_fields_set == set(cls.model_fields)


def test_trusted_builds_what_validation_builds():
    usage = trusted(Usage, {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
    assert usage == Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    assert usage.model_dump_json() == '{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}'
    assert_valid(Usage.of(2, 5))
    assert Usage.of(2, 5) + Usage.of(1, 1) == Usage(
        prompt_tokens=3, completion_tokens=6, total_tokens=9
    )


def test_a_trusted_model_can_still_be_changed_and_copied():
    usage = Usage.of(1, 2)
    usage.prompt_tokens = 10
    assert usage.model_copy(update={"completion_tokens": 5}).model_dump() == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 3,
    }


async def test_every_model_built_on_the_request_path_is_complete_and_valid():
    moe = make_moe(
        {
            "experts": {"a": {"kind": "echo"}, "b": {"kind": "echo"}},
            "gate": {"kind": "fixed", "expert": "a", "fallbacks": ["b"]},
        }
    )
    async with moe:
        decision = await moe.route(user("hello there"))
        assert isinstance(decision, RoutingDecision)
        assert_valid(decision)
        assert decision.fallbacks == ["b"]

        response = await moe.complete(user("hello there"))
    assert isinstance(response, MoEResponse)
    assert isinstance(response.metadata, MoEMetadata)
    assert_valid(response.metadata)
    assert_valid(response)
    assert response.metadata.experts_used == ["a"]
