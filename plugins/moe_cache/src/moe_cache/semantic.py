"""Semantic matching: the questions already answered, as unit vectors, found by cosine similarity.

Only questions asked in the same context can match: the same expert, the same parameters and
the same conversation before the last question (:attr:`moe_cache.keys.CallKey.context`). So the
index is a set of small groups, one per context, each holding at most ``max_candidates``
vectors, and all of them together at most ``max_entries``: one lookup compares the question
with one group, in one matrix product. The index lives in this process's memory, whatever the
answer store; it points at answers by their exact key, and a pointer whose answer the store no
longer holds is dropped when found.

numpy is imported here, and this module only where the semantic mode is configured.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class SemanticIndex:
    """Unit vectors by context, bounded in number and age, least recently used forgotten first."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_candidates: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_candidates = max_candidates
        self.ttl_s = ttl_s
        self.clock = clock
        self._groups: dict[str, OrderedDict[str, tuple[float, Any]]] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Each group's vectors stacked into one matrix, made again only after a change.
        self._stacked: dict[str, tuple[list[str], Any]] = {}

    def __len__(self) -> int:
        return len(self._order)

    def add(self, context: str, key: str, vector: Sequence[float]) -> None:
        """Remember that the question behind ``vector`` was answered under ``key``."""
        unit = _unit(vector)
        if unit is None:
            return
        group = self._groups.setdefault(context, OrderedDict())
        group[key] = (self.clock() + self.ttl_s, unit)
        group.move_to_end(key)
        self._order[(context, key)] = None
        self._order.move_to_end((context, key))
        self._stacked.pop(context, None)
        while len(group) > self.max_candidates:
            self.discard(context, next(iter(group)))
        while len(self._order) > self.max_entries:
            self.discard(*next(iter(self._order)))

    def nearest(self, context: str, vector: Sequence[float]) -> tuple[str, float] | None:
        """The key of the most similar question in ``context`` and its cosine similarity, or
        ``None`` when the group is empty."""
        group = self._groups.get(context)
        unit = _unit(vector)
        if not group or unit is None:
            return None
        now = self.clock()
        for key in [key for key, (expires_at, _) in group.items() if expires_at <= now]:
            self.discard(context, key)
        if context not in self._groups:
            return None
        keys, matrix = self._matrix(context)
        if matrix.shape[1] != unit.shape[0]:  # the embedder's size changed: nothing compares
            return None
        similarities = matrix @ unit
        best = int(np.argmax(similarities))
        key = keys[best]
        self._order.move_to_end((context, key))
        return key, float(similarities[best])

    def discard(self, context: str, key: str) -> None:
        """Forget one question (its answer is gone, or it is the oldest)."""
        group = self._groups.get(context)
        if group is None or group.pop(key, None) is None:
            return
        self._order.pop((context, key), None)
        self._stacked.pop(context, None)
        if not group:
            del self._groups[context]

    def _matrix(self, context: str) -> tuple[list[str], Any]:
        stacked = self._stacked.get(context)
        if stacked is None:
            group = self._groups[context]
            keys = list(group)
            stacked = keys, np.stack([group[key][1] for key in keys])
            self._stacked[context] = stacked
        return stacked


def _unit(vector: Sequence[float]) -> Any:
    """``vector`` scaled to length 1 (float32), or ``None`` for a zero vector."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1:
        return None
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return array / norm
