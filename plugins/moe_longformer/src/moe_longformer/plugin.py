"""Hook implementations only; nothing heavy is imported here."""

from __future__ import annotations

from moe_core import Register, hookimpl
from moe_longformer.expert import LongformerExpert, LongformerOptions


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("longformer", LongformerExpert, options=LongformerOptions)
