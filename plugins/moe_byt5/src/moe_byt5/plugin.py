"""Hook implementations only; nothing heavy is imported here."""

from __future__ import annotations

from moe_byt5.expert import ByT5Expert, ByT5Options
from moe_byt5.gate import FeaturesGate, FeaturesGateOptions
from moe_byt5.process import ProcessFrontend, ProcessOptions
from moe_core import Register, hookimpl


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("byt5", ByT5Expert, options=ByT5Options)


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("features", FeaturesGate, options=FeaturesGateOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("process", ProcessFrontend, options=ProcessOptions)
