"""Hook implementations only; the work is in ``frontend`` and ``expert``."""

from __future__ import annotations

from moe_anthropic.expert import AnthropicExpert, AnthropicExpertOptions
from moe_anthropic.frontend import AnthropicFrontend
from moe_core import Register, hookimpl


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("anthropic", AnthropicExpert, options=AnthropicExpertOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("anthropic", AnthropicFrontend)
