"""Hook implementations only; nothing heavy is imported here."""

from __future__ import annotations

from moe_core import Register, hookimpl
from moe_domain_llms.expert import HFCausalLMExpert, HFCausalLMOptions


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("hf-causal-lm", HFCausalLMExpert, options=HFCausalLMOptions)
