"""Is a challenger's latency advantage beyond the noise? (pure)

Run-to-run noise is multiplicative, so the test works on log latencies: with the runs of the incumbent
(``x``) and of the challenger (``y``), the pooled two-sample t interval gives an upper bound, at one-sided
``confidence``, on the ratio challenger / incumbent. The challenger is faster "for real" when that bound is at
most ``1 - min_improvement``. The question is asked again after every run of the challenger, so the error rate
is split over its runs (Bonferroni: ``1 - (1 - confidence) / m`` for a challenger with ``m`` runs), or repeated
looks at two equal models would promote one by chance. With one run on each side nothing says how large the
noise is: the bound is infinite and latency alone never promotes.

The t quantile is computed here (regularised incomplete beta, Lentz's continued fraction, then bisection), so
the core needs no scientific library.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence


def ratio_upper_bound(incumbent: Sequence[float], challenger: Sequence[float], confidence: float) -> float:
    """Upper ``confidence`` bound on challenger / incumbent latency (``inf`` without an estimate of the noise)."""
    n, m = len(incumbent), len(challenger)
    df = n + m - 2
    if n == 0 or m == 0 or df < 1 or min(*incumbent, *challenger) <= 0:
        return math.inf
    x = [math.log(v) for v in incumbent]
    y = [math.log(v) for v in challenger]
    mx, my = sum(x) / n, sum(y) / m
    ss = sum((v - mx) ** 2 for v in x) + sum((v - my) ** 2 for v in y)
    se = math.sqrt(ss / df * (1 / n + 1 / m))
    per_look = 1.0 - (1.0 - confidence) / m
    return math.exp(my - mx + t_quantile(per_look, df) * se)


def beyond_noise(
    incumbent: Sequence[float], challenger: Sequence[float], confidence: float, min_improvement: float
) -> bool:
    """The challenger is faster by at least ``min_improvement`` at ``confidence``."""
    return ratio_upper_bound(incumbent, challenger, confidence) <= 1.0 - min_improvement


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0.5 < p < 1``)."""
    if not 0.5 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def _beta_cf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for k in range(1, 300):
        m2 = 2 * k
        num = k * (b - k) * x / ((a + m2 - 1) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c if abs(1.0 + num / c) > tiny else tiny
        h *= d * c
        num = -(a + k) * (a + b + k) * x / ((a + m2) * (a + m2 + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c if abs(1.0 + num / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h
