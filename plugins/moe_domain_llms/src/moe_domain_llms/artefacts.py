"""Trained gate artefacts: plain arrays plus JSON metadata in one ``.npz`` file.

No pickle: loading an artefact never runs code, and it does not depend on the scikit-learn
version that trained it (scikit-learn is needed to train, not to route). The metadata records
what a reader must check before trusting the arrays: the format version, the gate kind, the
labels, the encoder for embedding gates, the library versions and training data hash, and the
held-out metrics, so ``moe gate train`` and a later audit can tell what a file is.
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
PACKAGED = Path(__file__).parent / "artefacts"


@dataclass
class Artefact:
    kind: str
    labels: list[str]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("numpy", "scikit-learn", "transformers", "torch", "moe-domain-llms"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def save(
    path: Path, kind: str, labels: list[str], arrays: dict[str, np.ndarray], **meta: Any
) -> None:
    """Write atomically, so a crash mid-write never leaves a half artefact behind."""
    record = {
        "format": FORMAT,
        "kind": kind,
        "labels": labels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": library_versions(),
        **meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staging.open("wb") as handle:
        np.savez_compressed(handle, __meta__=np.array(json.dumps(record)), **arrays)
    staging.replace(path)


def load(path: Path, kind: str, *, where: str) -> Artefact:
    """Read an artefact, refusing one of another kind or format with a message saying what to do."""
    retrain = f"retrain it with `moe gate train` (gate kind {kind})"
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
    if meta.get("format") != FORMAT:
        made_by = meta.get("versions", {}).get("moe-domain-llms")
        raise ConfigError(
            f"{where}: {path} has artefact format {meta.get('format')} (made by moe-domain-llms "
            f"{made_by}); this version reads format {FORMAT}; {retrain}"
        )
    if meta.get("kind") != kind:
        raise ConfigError(
            f"{where}: {path} was trained for gate kind {meta.get('kind')!r}, not {kind!r}"
        )
    return Artefact(kind, list(meta["labels"]), arrays, meta)
