"""The trained ``features`` classifier on disk, in moe_core's no-pickle ``.npz`` format (plain
arrays plus JSON metadata: labels, feature names, library versions, training-data hash,
validation metrics), so a stale or foreign file is refused with how to retrain it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from moe_core import artefacts
from moe_core.artefacts import Artefact

KIND = "features"
PACKAGED = Path(__file__).parent / "artefacts" / "features.npz"
DATA_DIR_ENV = "MOE_DATA_DIR"


def save(path: Path, labels: list[str], arrays: dict[str, np.ndarray], **meta: Any) -> None:
    artefacts.save(path, KIND, labels, arrays, distributions=("scikit-learn", "moe-byt5"), **meta)


def load(path: Path, *, where: str) -> Artefact:
    return artefacts.load(path, KIND, where=where)


def data_dir() -> Path:
    """Where the gateway keeps its files: ``$MOE_DATA_DIR``, else ``$XDG_DATA_HOME/moe``, else
    ``~/.local/share/moe`` (the folder the tracking store uses too)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "moe"


def default_output() -> Path:
    """Where ``moe gate train`` writes unless given an output: ``<data dir>/gates/features.npz``.

    The artefact packaged with this plugin is written only when named as the output: every user
    of the installation routes with it, a checkout tracks it and an upgrade replaces it.
    """
    return data_dir() / "gates" / f"{KIND}.npz"


def with_usage(result: dict[str, Any], configured: Path) -> dict[str, Any]:
    """``result`` with a report line saying how to route with the new artefact."""
    output = Path(result["artefact"]).absolute()
    if output.resolve() == configured.resolve():
        result["report"] += "\nthe gate routes with it from its next start"
    else:
        result["report"] += f"\nto route with it, set `artefact: {output}` in the gate's config"
    return result
