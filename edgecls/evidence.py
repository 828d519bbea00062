"""95% intervals for the parity gates: how sure a count of images lets us be.

A gate on a point estimate judges noise on small data: one changed answer in 40 held-out images
reads as a 2.5-point accuracy drop. The int8 gates therefore fail only on evidence: when the
interval lies wholly on the wrong side of the limit.
"""

from __future__ import annotations

import math

Z = 1.959964  # two-sided 95%


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_drop(lost: int, gained: int, n: int) -> tuple[float, float, float]:
    """Accuracy drop in points (reference minus candidate) from paired answers on the same `n` images,
    with its 95% interval: `lost` = reference right and candidate wrong, `gained` = the reverse.

    Newcombe's hybrid score interval built from the Wilson intervals of the two discordant counts
    (their small negative correlation is ignored); unlike the Wald interval it behaves on small
    counts, e.g. one changed answer in 40 images.
    """
    if n == 0:
        return 0.0, -100.0, 100.0
    drop = (lost - gained) / n
    l1, u1 = wilson(lost, n)
    l2, u2 = wilson(gained, n)
    p1, p2 = lost / n, gained / n
    d1, d2 = p1 - l1, u1 - p1
    e1, e2 = p2 - l2, u2 - p2
    lower = drop - math.sqrt(d1 * d1 + e2 * e2)
    upper = drop + math.sqrt(d2 * d2 + e1 * e1)
    return 100 * drop, 100 * lower, 100 * upper
