"""Hot reload: a new configuration's experts, gate, combiner and preparers, swapped in whole.

The new parts are built and started beside the running ones (a gate's model loads while the old
gate still routes), then swapped in by plain assignments, which no request can observe half
done. Requests already running keep the parts they started with; parts the new configuration
no longer uses are closed once those requests had time to finish (``shutdown_timeout_s``).
Whatever did not change is kept as it is: an expert whose configuration is unchanged keeps its
loaded model, an unchanged gate keeps its own. Trackers, plugin sections and ``server`` are
read once at startup: a reload that changes them says so, and they apply at the next restart.
An invalid configuration raises :class:`ConfigError` naming its key and changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from moe_core.config import CONFIG_ENV, DEFAULT_ORIGIN, load_config
from moe_core.errors import ConfigError
from moe_core.orchestrator import MoE, build_part, build_slot
from moe_core.pool import ExpertPool

if TYPE_CHECKING:
    from moe_core.config import MoEConfig

log = structlog.get_logger(__name__)
_LOCK = asyncio.Lock()  # one reload at a time (SIGHUP and POST /-/reload may race)
_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` in the background, keeping the task referenced until it ends."""
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def reload(moe: MoE, source: str | os.PathLike[str] | dict[str, Any] | None = None) -> dict:
    """Re-read the configuration (or use ``source``) and swap the changed parts into ``moe``.

    :returns: what changed: experts ``added``, ``replaced``, ``removed`` and ``kept``, which of
        gate and combiner were ``rebuilt``, and the sections that apply only at a ``restart``.
    :raises ConfigError: the new configuration is invalid, or its new gate, combiner or
        preparers fail to start; the running parts are untouched.
    """
    async with _LOCK:
        config = load_config(_source_of(moe, source), plugins=moe.plugins)
        staged, report = _stage(moe, config)
        new_parts = [part for part in _parts(staged) if part not in _parts(moe)]
        try:
            for part in new_parts:
                await part.start()
        except Exception as exc:
            await _close(new_parts)
            raise ConfigError(f"the new configuration's parts failed to start: {exc}") from exc
        old_slots = list(moe.experts.values())
        new_slots = [slot for slot in staged.experts.values() if slot not in old_slots]
        staged.experts.load(new_slots)
        retired = [part for part in _parts(moe) if part not in _parts(staged)] + [
            slot.expert for slot in old_slots if slot not in staged.experts.values()
        ]
        _swap(moe, staged)
        loop = asyncio.get_running_loop()
        loop.call_later(config.server.shutdown_timeout_s, lambda: spawn(_close(retired)))
        log.info("config.reloaded", source=config.source, **report)
        return report


def _source_of(moe: MoE, source: Any) -> Any:
    if source is not None:
        return source
    origin = moe.config.source
    if origin == DEFAULT_ORIGIN:
        return os.environ.get(CONFIG_ENV) or None
    if origin.startswith("<"):
        raise ConfigError("this gateway was built from a dict: pass the new configuration")
    return origin


def _stage(moe: MoE, config: MoEConfig) -> tuple[MoE, dict[str, Any]]:
    """A gateway with the new configuration's parts, sharing what did not change with ``moe``."""
    old = moe.config
    report: dict[str, list[str]] = {"added": [], "replaced": [], "kept": [], "removed": []}
    slots = []
    for name, spec in config.experts.items():
        before = old.experts.get(name)
        if before == spec:
            slots.append(moe.experts[name])
            report["kept"].append(name)
            continue
        report["added" if before is None else "replaced"].append(name)
        slots.append(build_slot(moe.plugins, config, name, spec))
    report["removed"] = [name for name in old.experts if name not in config.experts]
    # A gate sees the experts' cards on every request; it is rebuilt (and its model reloaded)
    # only when its own options or the set of experts changed.
    same_gate = old.gate == config.gate and list(old.experts) == list(config.experts)
    gate = (
        moe.gate
        if same_gate
        else build_part(moe.plugins, config, "gate", config.gate, config.gate.kind, "gate")
    )
    same_combiner = same_gate and old.combiner == config.combiner and not report["replaced"]
    combiner = (
        moe.default_combiner
        if same_combiner
        else build_part(
            moe.plugins, config, "combiner", config.combiner, config.combiner.kind, "combiner"
        )
    )
    preparers = [
        build_part(moe.plugins, config, "preparer", spec, name, f"preparers.{name}")
        for name, spec in config.preparers.items()
    ]
    staged = MoE(
        config,
        moe.plugins,
        pool=ExpertPool(slots),
        gate=gate,
        combiner=combiner,
        trackers=moe.trackers,
        preparers=preparers,
    )
    staged._resources = moe._resources  # the tracking store and other shared things stay
    cards = staged.experts.cards()
    fresh = [part for part in _parts(staged) if part not in _parts(moe)]
    for part in fresh:
        part.check_experts(cards)
    for slot in slots:
        if slot not in moe.experts.values():
            slot.expert.attach(staged)
    for part in fresh:
        part.attach(staged)
    report["rebuilt"] = [
        n for n, same in (("gate", same_gate), ("combiner", same_combiner)) if not same
    ]
    report["restart"] = _restart_needed(old, config)
    return staged, report


def _restart_needed(old: MoEConfig, new: MoEConfig) -> list[str]:
    """The sections read only at startup that differ: they apply at the next restart."""
    keys = {"server", "trackers", "plugins", *(old.model_extra or {}), *(new.model_extra or {})}
    return sorted(key for key in keys if _plain(old, key) != _plain(new, key))


def _plain(config: MoEConfig, key: str) -> Any:
    value = getattr(config, key, None)
    if isinstance(value, dict):
        return {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in value.items()}
    return value.model_dump() if hasattr(value, "model_dump") else value


def _parts(moe: MoE) -> list[Any]:
    return [moe.gate, *moe._combiners.values(), *moe.preparers]


def _swap(moe: MoE, staged: MoE) -> None:
    """Plain assignments with no await between them: no request sees half of each."""
    moe.config = staged.config
    moe.experts = staged.experts
    moe.gate = staged.gate
    moe.default_combiner = staged.default_combiner
    moe._combiners = staged._combiners
    moe.preparers = staged.preparers
    moe.auto_names = staged.auto_names


async def _close(parts: list[Any]) -> None:
    for part in parts:
        try:
            await part.close()
        except Exception as exc:
            log.warning("part.close_failed", part=part.name, error=str(exc))
