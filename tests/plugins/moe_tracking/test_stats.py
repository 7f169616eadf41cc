"""The significance tests used by A/B analysis give the textbook values."""

from __future__ import annotations

import math

import pytest

from moe_tracking.stats import (
    regularized_beta,
    student_t_two_sided,
    two_proportion_z_test,
    welch_t_test,
)


def test_two_proportion_z_test_matches_the_textbook_formula():
    # 45/100 against 30/100: pooled p = 0.375, se = sqrt(.375*.625*.02) = 0.0684653
    result = two_proportion_z_test(45, 100, 30, 100)
    assert result.statistic == pytest.approx(0.15 / math.sqrt(0.375 * 0.625 * 0.02))
    assert result.p_value == pytest.approx(0.028459, abs=1e-5)


def test_equal_extreme_rates_are_not_significant():
    assert two_proportion_z_test(10, 10, 20, 20).p_value == 1.0


def test_student_t_tails_match_known_critical_values():
    # Two-sided 5% critical values: t(10) = 2.228139, t(1) = 12.7062, t(30) = 2.042272.
    assert student_t_two_sided(2.228139, 10) == pytest.approx(0.05, abs=1e-6)
    assert student_t_two_sided(12.7062, 1) == pytest.approx(0.05, abs=1e-5)
    assert student_t_two_sided(2.042272, 30) == pytest.approx(0.05, abs=1e-6)
    assert student_t_two_sided(0.0, 5) == pytest.approx(1.0)


def test_regularized_beta_known_values():
    assert regularized_beta(0.5, 2, 2) == pytest.approx(0.5)
    assert regularized_beta(0.3, 1, 1) == pytest.approx(0.3)
    assert regularized_beta(0.2, 2, 3) == pytest.approx(0.1808, abs=1e-12)


def test_welch_agrees_with_scipy_when_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    a = [0.9, 0.8, 0.85, 0.95, 0.7, 0.88]
    b = [0.6, 0.75, 0.5, 0.65, 0.7, 0.55, 0.62, 0.58]

    def summary(xs):
        mean = sum(xs) / len(xs)
        return mean, sum((x - mean) ** 2 for x in xs) / (len(xs) - 1), len(xs)

    ours = welch_t_test(*summary(a), *summary(b))
    theirs = stats.ttest_ind(a, b, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-7)


def test_welch_needs_two_samples_per_group():
    with pytest.raises(ValueError, match="at least two samples"):
        welch_t_test(1.0, 0.0, 1, 0.5, 0.1, 5)
