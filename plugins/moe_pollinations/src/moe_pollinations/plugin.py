"""Hook implementations only; the work is in the modules beside this one."""

from __future__ import annotations

import argparse

from moe_core import Register, hookimpl
from moe_pollinations.expert import PollinationsExpert, PollinationsOptions
from moe_pollinations.frontend import PromptFrontend, PromptFrontendOptions
from moe_pollinations.gate import TaskClassifierGate, TaskClassifierOptions
from moe_pollinations.workflow import MultimodalCombiner, MultimodalOptions


@hookimpl
def moe_register_experts(register: Register) -> None:
    register("pollinations", PollinationsExpert, options=PollinationsOptions)


@hookimpl
def moe_register_gates(register: Register) -> None:
    register("task-classifier", TaskClassifierGate, options=TaskClassifierOptions)


@hookimpl
def moe_register_combiners(register: Register) -> None:
    register("multimodal", MultimodalCombiner, options=MultimodalOptions)


@hookimpl
def moe_register_frontends(register: Register) -> None:
    register("pollinations", PromptFrontend, options=PromptFrontendOptions)


@hookimpl
def moe_register_commands(commands: argparse._SubParsersAction) -> None:
    from moe_pollinations.cli import add_commands

    add_commands(commands)
