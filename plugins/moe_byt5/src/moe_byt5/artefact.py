"""The trained ``features`` classifier on disk: plain arrays plus JSON metadata in one ``.npz``.

No pickle: loading never runs code and does not need scikit-learn (it is needed to train, not to
route). The metadata says what the file is (format, gate kind, labels, feature names, library
versions, training-data hash, validation metrics), so a stale or foreign file is refused with a
message saying how to retrain instead of routing on garbage.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moe_core import ConfigError

FORMAT = 1
KIND = "features"
PACKAGED = Path(__file__).parent / "artefacts" / "features.npz"


@dataclass
class Artefact:
    labels: list[str]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("numpy", "scikit-learn", "moe-byt5"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def save(path: Path, labels: list[str], arrays: dict[str, np.ndarray], **meta: Any) -> None:
    """Write atomically, so a crash mid-write never leaves half an artefact behind."""
    record = {
        "format": FORMAT,
        "kind": KIND,
        "labels": labels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        **meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staging.open("wb") as handle:
        np.savez_compressed(handle, __meta__=np.array(json.dumps(record)), **arrays)
    staging.replace(path)


def load(path: Path, *, where: str) -> Artefact:
    retrain = "retrain it with `moe gate train` (gate kind features)"
    if not path.is_file():
        raise ConfigError(f"{where}: gate artefact {path} does not exist; {retrain}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {name: data[name] for name in data.files if name != "__meta__"}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{where}: {path} is not a readable gate artefact ({exc}); {retrain}"
        ) from None
    if meta.get("format") != FORMAT or meta.get("kind") != KIND:
        raise ConfigError(
            f"{where}: {path} is a {meta.get('kind')!r} artefact of format {meta.get('format')}, "
            f"not a {KIND!r} artefact of format {FORMAT}; {retrain}"
        )
    return Artefact(list(meta["labels"]), arrays, meta)
