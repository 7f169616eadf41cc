"""Hook implementations only; the work is in ``frontend`` and ``expert``."""

from __future__ import annotations

from moe_core import Register, hookimpl
from moe_openai_compat.expert import OpenAIExpert, OpenAIExpertOptions
from moe_openai_compat.frontend import OpenAIFrontend
from moe_openai_compat.options import OpenAIFrontendOptions


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("openai", OpenAIExpert, options=OpenAIExpertOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("openai", OpenAIFrontend, options=OpenAIFrontendOptions)
