"""Significance tests for A/B analysis, exact and dependency-free.

Success rates are compared with the two-proportion z-test (pooled standard error), mean quality
scores with Welch's t-test (unequal variances, Welch-Satterthwaite degrees of freedom). The normal
tail comes from ``math.erfc``; Student's t tail from the regularised incomplete beta function,
evaluated by its continued fraction (Lentz's method), accurate to ~1e-12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TestResult:
    statistic: float
    p_value: float
    """Two-sided."""
    test: str


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> TestResult:
    """Whether two success rates differ (H0: equal rates); needs at least one trial each."""
    if n_a < 1 or n_b < 1:
        raise ValueError("each group needs at least one trial")
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    difference = successes_a / n_a - successes_b / n_b
    if variance == 0:
        # Both groups all-success or all-failure: identical rates, nothing to test.
        return TestResult(0.0, 1.0, "two-proportion z-test")
    z = difference / math.sqrt(variance)
    return TestResult(z, math.erfc(abs(z) / math.sqrt(2)), "two-proportion z-test")


def welch_t_test(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int
) -> TestResult:
    """Whether two means differ, from each group's mean, sample variance and size (n >= 2)."""
    if n_a < 2 or n_b < 2:
        raise ValueError("each group needs at least two samples")
    se_a, se_b = var_a / n_a, var_b / n_b
    if se_a + se_b == 0:
        p = 1.0 if mean_a == mean_b else 0.0
        return TestResult(0.0 if p == 1.0 else math.inf, p, "Welch's t-test")
    t = (mean_a - mean_b) / math.sqrt(se_a + se_b)
    df = (se_a + se_b) ** 2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))
    return TestResult(t, student_t_two_sided(t, df), "Welch's t-test")


def student_t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return regularized_beta(df / (df + t * t), df / 2, 0.5)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny, epsilon = 1e-300, 1e-14
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < epsilon:
            break
    return result
