"""The overlay: experts added or changed at run time, kept beside the configuration file.

``moe.yaml`` gets ``moe.overlay.yaml`` (the experts, no secret in it) and ``moe.secrets.yaml``
(their API keys, mode 0600); the embedded default keeps both in the data directory. Every load
of the configuration (start, reload, another worker) applies the overlay on top of the file:
an overlay expert replaces the file's expert of the same name, and ``removed`` names file
experts taken out. A key reaches its expert through an environment variable of this process
(``MOE_RUNTIME_KEY_<NAME>``), so it never appears in the configuration, a response or a log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from moe_core.artefacts import data_dir
from moe_core.config import DEFAULT_ORIGIN

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Overlay:
    """The two files of one configuration's overlay."""

    def __init__(self, experts_file: Path, secrets_file: Path) -> None:
        self.experts_file = experts_file
        self.secrets_file = secrets_file

    @classmethod
    def beside(cls, source: str) -> Overlay | None:
        """The overlay of a configuration file, or of the embedded default; none for a dict."""
        if source == DEFAULT_ORIGIN:
            folder = data_dir()
            return cls(folder / "overlay.yaml", folder / "overlay.secrets.yaml")
        if source.startswith("<"):
            return None
        path = Path(source)
        return cls(path.with_suffix(".overlay.yaml"), path.with_suffix(".secrets.yaml"))

    def read(self) -> tuple[dict[str, Any], dict[str, str]]:
        """``({"experts": {...}, "removed": [...]}, {name: key})``; empty when absent."""
        return _load(self.experts_file) or {}, _load(self.secrets_file) or {}

    def write(self, overlay: dict[str, Any], secrets: dict[str, str]) -> None:
        self.experts_file.parent.mkdir(parents=True, exist_ok=True)
        _replace(self.experts_file, overlay, mode=0o644)
        _replace(self.secrets_file, secrets, mode=0o600)

    def apply(self, data: dict[str, Any]) -> None:
        """Put the overlay's experts into a raw configuration (in place)."""
        overlay, secrets = self.read()
        experts = data.setdefault("experts", {})
        for name in overlay.get("removed", []):
            experts.pop(name, None)
        for name, expert in (overlay.get("experts") or {}).items():
            expert = dict(expert)
            if name in secrets:
                variable = key_variable(name)
                os.environ[variable] = secrets[name]
                expert["api_key_env"] = variable
            experts[name] = expert


def key_variable(name: str) -> str:
    return "MOE_RUNTIME_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text("utf-8"))
    except FileNotFoundError:
        return None


def _replace(path: Path, data: Any, *, mode: int) -> None:
    """Write a whole file or nothing: a new file beside it, then a rename."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=True)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
