"""Where a checkpoint comes from: a local folder or the local Hugging Face cache, never the hub.

No model hub is reachable from where this runs, so resolution happens at startup and touches no
network: a checkpoint that is in neither place is a startup error naming it and saying how to
provide it, instead of a hang on a download that can never finish. Loading then passes
``local_files_only=True`` so transformers cannot try the network either.

(moe_byt5 carries the same small module: plugins never import each other.)
"""

from __future__ import annotations

from pathlib import Path

from moe_core import ConfigError


def resolve_checkpoint(checkpoint: str, *, where: str) -> str:
    """What to hand to ``from_pretrained``: the folder, or the hub id found in the local cache.

    :param where: the config key path, for the error message.
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{where}: folder {checkpoint} has no config.json; is it a model folder?"
            )
        return str(path)
    if _in_hub_cache(checkpoint):
        return checkpoint
    raise ConfigError(
        f"{where}: checkpoint {checkpoint!r} is not a local folder and not in the local Hugging "
        "Face cache, and no model hub is reachable from here. Download it where there is network "
        f"(`huggingface-cli download {checkpoint}`), copy the folder or the cache (HF_HOME) "
        "here, then point this option at the folder."
    )


def _in_hub_cache(checkpoint: str) -> bool:
    if checkpoint.count("/") != 1:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    return isinstance(try_to_load_from_cache(checkpoint, "config.json"), str)
