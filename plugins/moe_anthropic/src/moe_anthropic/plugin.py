"""Hook implementations only; the work is in ``frontend`` and ``expert``."""

from __future__ import annotations

from aiohttp import web

from moe_anthropic.expert import AnthropicExpert, AnthropicExpertOptions
from moe_anthropic.frontend import AnthropicFrontend, errors_middleware
from moe_core import AddMiddleware, MoE, Register, hookimpl


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("anthropic", AnthropicExpert, options=AnthropicExpertOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("anthropic", AnthropicFrontend)


@hookimpl
def moe_setup_app(app: web.Application, moe: MoE, add_middleware: AddMiddleware) -> None:
    # In the auth stage, after the gateway's key check, so that a rate limit refused in the
    # limits stage reaches an Anthropic client in Anthropic's shape too.
    add_middleware(errors_middleware(), stage="auth")
