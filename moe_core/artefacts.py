"""Trained artefacts (a gate's classifier, a scorer's model): plain arrays plus JSON metadata in
one ``.npz`` file.

numpy is imported when an artefact is written or read: the plugins that train and read
artefacts depend on it; the core does not.

No pickle: loading an artefact never runs code, and it does not depend on the scikit-learn
version that trained it (scikit-learn is needed to train, not to route). The metadata records
what a reader must check before trusting the arrays: the format version, the kind, the labels,
the library versions that made it and whatever the trainer adds (training data hash, held-out
metrics, the encoder), so ``moe gate train`` and a later audit can tell what a file is.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moe_core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

FORMAT = 1
DATA_DIR_ENV = "MOE_DATA_DIR"


def data_dir() -> Path:
    """Where the gateway keeps its files (trained artefacts, the tracking store):
    ``$MOE_DATA_DIR``, else ``$XDG_DATA_HOME/moe``, else ``~/.local/share/moe``."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "moe"


def default_output(kind: str) -> Path:
    """Where ``moe gate train`` writes unless given an output: ``<data dir>/gates/<kind>.npz``.
    A plugin's packaged artefact is written only when named as the output: every user of the
    installation routes with it, a checkout tracks it and an upgrade replaces it."""
    return data_dir() / "gates" / f"{kind}.npz"


def with_usage(result: dict[str, Any], configured: Path) -> dict[str, Any]:
    """A training ``result`` with a report line saying how to route with the new artefact."""
    output = Path(result["artefact"]).absolute()
    if output.resolve() == configured.resolve():
        result["report"] += "\nthe gate routes with it from its next start"
    else:
        result["report"] += f"\nto route with it, set `artefact: {output}` in the gate's config"
    return result


@dataclass
class Artefact:
    kind: str
    labels: list[str]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def library_versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of numpy and ``distributions`` (None where one is missing)."""
    versions: dict[str, str | None] = {}
    for name in ("numpy", *distributions):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def save(
    path: Path,
    kind: str,
    labels: list[str],
    arrays: dict[str, np.ndarray],
    *,
    distributions: Iterable[str] = (),
    **meta: Any,
) -> None:
    """Write atomically, so a crash mid-write never leaves a half artefact behind.

    :param distributions: whose versions to record beside numpy's (the trainer's libraries).
    """
    record = {
        "format": FORMAT,
        "kind": kind,
        "labels": labels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": library_versions(distributions),
        **meta,
    }
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staging.open("wb") as handle:
        np.savez_compressed(handle, __meta__=np.array(json.dumps(record)), **arrays)
    staging.replace(path)


def load(path: Path, kind: str, *, where: str, retrain: str | None = None) -> Artefact:
    """Read an artefact, refusing one of another kind or format with a message saying what to do.

    :param where: the config key path naming the file, for error messages.
    :param retrain: how to make a good one (default: ``moe gate train`` for that kind).
    """
    retrain = retrain or f"retrain it with `moe gate train` (gate kind {kind})"
    import numpy as np

    if not path.is_file():
        raise ConfigError(f"{where}: artefact {path} does not exist; {retrain}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {name: data[name] for name in data.files if name != "__meta__"}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{where}: {path} is not a readable artefact ({exc}); {retrain}"
        ) from None
    if meta.get("format") != FORMAT:
        raise ConfigError(
            f"{where}: {path} has artefact format {meta.get('format')} (made with "
            f"{meta.get('versions')}); this version reads format {FORMAT}; {retrain}"
        )
    if meta.get("kind") != kind:
        raise ConfigError(
            f"{where}: {path} was trained for kind {meta.get('kind')!r}, not {kind!r}; {retrain}"
        )
    return Artefact(kind, list(meta["labels"]), arrays, meta)
