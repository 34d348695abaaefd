"""Pareto fronts: the points no other point beats on both accuracy (lower perplexity) and cost."""

from __future__ import annotations


def front(points: list[tuple[float, float]], *, maximize_x: bool) -> list[int]:
    """Indices of the non-dominated (x, y) points, y minimised, x maximised or minimised; sorted by x.

    A point is dominated when another is at least as good on both axes and strictly better on one; exact
    duplicates are all kept.
    """
    sign = -1.0 if maximize_x else 1.0
    keyed = [(sign * x, y) for x, y in points]  # both axes minimised now
    out = []
    for i, (xi, yi) in enumerate(keyed):
        dominated = any(
            (xj <= xi and yj <= yi) and (xj < xi or yj < yi) for j, (xj, yj) in enumerate(keyed) if j != i
        )
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: keyed[i][0])
