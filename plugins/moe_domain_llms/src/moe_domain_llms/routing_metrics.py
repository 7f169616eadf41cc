"""How well a weak/strong router spends its strong calls: RouteLLM's APGR and CPT.

A router ranks requests by how much they need the strong model. Sending the top ``k`` of that
ranking to the strong model and the rest to the weak one gives a quality; sweeping ``k`` from
nobody to everybody traces a curve from the weak model's quality to the strong model's. The
*performance gap recovered* (PGR) rescales that curve so always-weak is 0 and always-strong is 1:

- **APGR** is the area under the PGR curve over the strong-call share 0..1. Random routing is a
  straight line (0.5); a perfect oracle, which first sends exactly the requests the strong model
  gets right and the weak one wrong, climbs above 1 (it never pays for the requests where the
  weak model was right and the strong one wrong), so its APGR is > 1.
- **CPT(x)** is the smallest strong-call share whose PGR reaches ``x`` (0.5 for CPT(50%)).

Requests with equal scores cannot be told apart, so a tie is taken in expectation (the curve
is a straight line across a tied group), which makes a constant score exactly random (0.5)
instead of depending on the order the requests happen to be listed in.
"""

from __future__ import annotations

import numpy as np


def pgr_curve(
    need_strong: np.ndarray, weak_ok: np.ndarray, strong_ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The PGR curve: strong-call shares ``0, 1/n, ..., 1`` and the gap recovered at each.

    :param need_strong: the router's score per request; higher goes to the strong model first.
    :param weak_ok: the weak model's quality per request (1/0 for right/wrong, or a score).
    :param strong_ok: the strong model's quality per request, same scale.
    """
    score = np.asarray(need_strong, dtype=float)
    weak = np.asarray(weak_ok, dtype=float)
    strong = np.asarray(strong_ok, dtype=float)
    if not (score.shape == weak.shape == strong.shape) or score.ndim != 1 or not len(score):
        raise ValueError("scores and both models' outcomes must be equal-length, non-empty 1-D")
    gap = strong.mean() - weak.mean()
    if gap <= 0:
        raise ValueError("the strong model must be better on average for PGR to be defined")
    order = np.argsort(-score, kind="stable")
    sorted_score, gain = score[order], (strong - weak)[order]
    # Cumulative gain at every group boundary of equal scores, interpolated within a group.
    n = len(score)
    boundaries = np.flatnonzero(np.diff(sorted_score) != 0) + 1
    ends = np.concatenate([[0], boundaries, [n]])
    cumulative = np.concatenate([[0.0], np.cumsum(gain)])
    positions = np.arange(n + 1)
    expected = np.interp(positions, ends, cumulative[ends])
    recovered = expected / n / gap
    return positions / n, recovered


def apgr(need_strong: np.ndarray, weak_ok: np.ndarray, strong_ok: np.ndarray) -> float:
    """Average performance gap recovered: the area under :func:`pgr_curve` (trapezoids)."""
    share, recovered = pgr_curve(need_strong, weak_ok, strong_ok)
    return float(np.trapezoid(recovered, share))


def cpt(
    need_strong: np.ndarray, weak_ok: np.ndarray, strong_ok: np.ndarray, target: float = 0.5
) -> float:
    """Call-performance threshold: the smallest strong-call share with PGR >= ``target``."""
    share, recovered = pgr_curve(need_strong, weak_ok, strong_ok)
    reached = np.flatnonzero(recovered >= target - 1e-12)
    return float(share[reached[0]]) if len(reached) else 1.0


def oracle_scores(weak_ok: np.ndarray, strong_ok: np.ndarray) -> np.ndarray:
    """The perfect router's ranking: strong-better first, then both-wrong/both-right, then
    weak-better last. A reference line only: it reads the answers' correctness."""
    gain = np.asarray(strong_ok, dtype=float) - np.asarray(weak_ok, dtype=float)
    return gain


def random_apgr(
    weak_ok: np.ndarray, strong_ok: np.ndarray, repeats: int = 100, seed: int = 0
) -> float:
    """Mean APGR of uniformly random rankings (0.5 up to sampling noise)."""
    rng = np.random.default_rng(seed)
    return float(
        np.mean([apgr(rng.random(len(weak_ok)), weak_ok, strong_ok) for _ in range(repeats)])
    )
