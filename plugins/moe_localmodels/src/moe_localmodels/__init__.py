"""What experts that run a model in this process share: a checkpoint found locally, one
loading at a time, and one thread per model with a bounded line.

- **Checkpoints** come from a local folder or the local Hugging Face cache, never the hub:
  resolution happens at startup and touches no network, so a checkpoint that is in neither
  place is a startup error naming it and saying how to provide it, instead of a hang on a
  download that can never finish. Loading then passes ``local_files_only=True``.
- **Loading** goes through :data:`LOADING_LOCK`: transformers (5.x) is not safe to load two
  models at once from two threads (loads race on its process-wide initialisation state and
  leave tied weights on the meta device), and experts load in the background concurrently.
  Nor is importing from it: its first import ends by swapping in a lazy module, and on Python
  3.11 a thread that waited for that import gets the swapped-out one, with no model classes
  (``cannot import name 'AutoTokenizer'``), so imports from transformers go under it too.
- **Calls**: a torch model is not safe to call from two threads at once, and model work must
  never run on the event loop. So each expert owns a :class:`ModelWorker`, a single thread;
  requests queue for it in arrival order, and when ``max_queue`` are already waiting a new one
  is refused at once with a 503 (and ``Retry-After``), which also lets the pipeline fall back
  to another expert instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from moe_core.errors import ConfigError, ExpertUnavailable, InvalidRequest


def pick_device(requested: str) -> str:
    """The torch device for ``auto`` (CUDA, else Apple's MPS, else the CPU), or the one named."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


LOADING_LOCK = threading.Lock()
"""Held around every ``from_pretrained`` of a local-model expert, and its transformers imports."""

T = TypeVar("T")


def check_dimensions(where: str, size: int, dimensions: int | None) -> None:
    """Refuse an embeddings ``dimensions`` other than the encoder's own ``size`` (a 400 naming
    the parameter): a local encoder was not trained to have its vectors shortened."""
    if dimensions is not None and dimensions != size:
        raise InvalidRequest(
            f"{where} makes {size}-dimensional vectors and cannot shorten them; leave "
            f"dimensions out (or send {size})",
            param="dimensions",
            code="invalid_value",
        )


class ModelWorker:
    """Runs blocking model calls one at a time in a dedicated thread."""

    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"moe-{name}")
        self._in_line = 0  # queued or running; a call abandoned by its caller counts until it ends

    @property
    def in_line(self) -> int:
        return self._in_line

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Call ``function(*args)`` in the worker thread and wait for its result."""
        if self._in_line >= self.max_queue:
            raise ExpertUnavailable(
                f"expert {self.name!r} is busy: {self._in_line} requests are already in its "
                f"queue (max_queue={self.max_queue}); retry shortly",
                code="expert_busy",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        self._in_line += 1
        future = self._executor.submit(functools.partial(function, *args))
        future.add_done_callback(lambda _: self._leave(loop))
        return await asyncio.wrap_future(future)

    def _leave(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called in the worker thread when a call ends; the count lives on the loop's thread."""
        # A closed loop means nobody is counting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._decrement)

    def _decrement(self) -> None:
        self._in_line -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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
    if in_hub_cache(checkpoint):
        return checkpoint
    raise ConfigError(
        f"{where}: checkpoint {checkpoint!r} is not a local folder and not in the local Hugging "
        "Face cache, and no model hub is reachable from here. Download it where there is network "
        f"(`huggingface-cli download {checkpoint}`), copy the folder or the cache (HF_HOME) "
        "here, then point this option at the folder."
    )


def in_hub_cache(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a hub id (``org/name``) whose files are in the local Hugging
    Face cache: nothing is ever downloaded."""
    if checkpoint.count("/") != 1:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    return isinstance(try_to_load_from_cache(checkpoint, "config.json"), str)
