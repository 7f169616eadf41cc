"""APGR and CPT against cases worked out by hand, and the reference lines they must reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from moe_domain_llms.routing_metrics import apgr, cpt, oracle_scores, pgr_curve, random_apgr

# Four requests: the weak model gets a and d right, the strong one a, b and c.
# Weak quality 0.5, strong 0.75, gap 0.25. Gains (strong - weak): a 0, b +1, c +1, d -1.
WEAK = np.array([1, 0, 0, 1])
STRONG = np.array([1, 1, 1, 0])


def test_the_best_ranking_recovers_more_than_the_gap():
    # b, c, a, d: cumulative gain 0, 1, 2, 2, 1 -> quality 0.5, .75, 1, 1, .75 -> PGR 0, 1, 2, 2, 1
    scores = np.array([0.5, 0.9, 0.8, 0.1])
    share, recovered = pgr_curve(scores, WEAK, STRONG)
    assert share.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert recovered.tolist() == pytest.approx([0, 1, 2, 2, 1])
    # Trapezoids: 0.25 * (0.5 + 1.5 + 2 + 1.5) = 1.375
    assert apgr(scores, WEAK, STRONG) == pytest.approx(1.375)
    assert cpt(scores, WEAK, STRONG) == 0.25  # half the gap after one strong call in four
    assert apgr(oracle_scores(WEAK, STRONG), WEAK, STRONG) == pytest.approx(1.375)


def test_the_worst_ranking_goes_below_zero():
    # d, a, c, b: cumulative gain 0, -1, -1, 0, 1 -> PGR 0, -1, -1, 0, 1
    scores = np.array([0.5, 0.1, 0.2, 0.9])
    assert apgr(scores, WEAK, STRONG) == pytest.approx(0.25 * (-0.5 - 1 - 0.5 + 0.5))
    assert cpt(scores, WEAK, STRONG) == 1.0


def test_tied_scores_count_in_expectation():
    # A constant score says nothing: the curve is the straight line of random routing.
    assert apgr(np.zeros(4), WEAK, STRONG) == pytest.approx(0.5)
    assert cpt(np.zeros(4), WEAK, STRONG) == 0.5
    # Two tied pairs, the first holding both strong-better requests:
    # cumulative gain 0, 1, 2, 2, 2 over a gap of 0.5 -> PGR 0, .5, 1, 1, 1 -> area 0.75.
    weak, strong = np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1])
    assert apgr(np.array([1, 1, 0, 0]), weak, strong) == pytest.approx(0.75)


def test_random_is_a_half_and_the_oracle_exceeds_one_on_realistic_outcomes():
    rng = np.random.default_rng(1)
    weak = rng.random(2000) < 0.65
    strong = rng.random(2000) < 0.85
    assert random_apgr(weak, strong, repeats=50) == pytest.approx(0.5, abs=0.02)
    assert apgr(oracle_scores(weak, strong), weak, strong) > 1


def test_undefined_inputs_are_refused():
    with pytest.raises(ValueError, match="strong model must be better"):
        apgr(np.zeros(2), np.array([1, 1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="equal-length"):
        apgr(np.zeros(3), WEAK, STRONG)
