"""The trained ``features`` classifier on disk, in moe_core's no-pickle ``.npz`` format (plain
arrays plus JSON metadata: labels, feature names, library versions, training-data hash,
validation metrics), so a stale or foreign file is refused with how to retrain it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moe_core import artefacts
from moe_core.artefacts import Artefact

KIND = "features"
PACKAGED = Path(__file__).parent / "artefacts" / "features.npz"


def save(path: Path, labels: list[str], arrays: dict[str, np.ndarray], **meta: Any) -> None:
    artefacts.save(path, KIND, labels, arrays, distributions=("scikit-learn", "moe-byt5"), **meta)


def load(path: Path, *, where: str) -> Artefact:
    return artefacts.load(path, KIND, where=where)
