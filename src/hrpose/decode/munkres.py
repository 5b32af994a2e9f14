"""Classic Munkres (Hungarian) assignment with the tie-breaking of ``munkres`` 1.1.4.

The official HigherHRNet grouping used that package; on cost ties (common when tags are close,
since costs are rounded distances) other solvers such as scipy's ``linear_sum_assignment`` pick a
different, equally cheap assignment and so different people. This implementation follows the
same steps, scan orders and float64 arithmetic, with numpy doing each step's scans.
"""

from __future__ import annotations

import numpy as np


def _find_a_zero(zeros: np.ndarray, i0: int, j0: int) -> tuple[int, int]:
    """First row (cyclic from i0) with an uncovered zero; in it the last such column, scanning
    cyclically from j0 (the reference implementation keeps scanning after a hit)."""
    rows = np.flatnonzero(zeros.any(axis=1))
    if rows.size == 0:
        return -1, -1
    n = zeros.shape[0]
    row = int(rows[np.argmin((rows - i0) % n)])
    cols = np.flatnonzero(zeros[row])
    col = int(cols[np.argmax((cols - j0) % n)])
    return row, col


def munkres(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of a (rows, cols) matrix; pairs sorted by row, like munkres 1.1.4.

    Non-square matrices are padded with zeros to a square, as the reference does.
    """
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = cost.shape
    n = max(rows, cols)
    c = np.zeros((n, n))
    c[:rows, :cols] = cost
    c -= c.min(axis=1, keepdims=True)  # step 1
    starred = np.zeros((n, n), bool)
    primed = np.zeros((n, n), bool)
    row_cov = np.zeros(n, bool)
    col_cov = np.zeros(n, bool)
    for i in range(n):  # step 2: greedy stars, row by row, first free zero column
        free = np.flatnonzero((c[i] == 0) & ~col_cov)
        if free.size:
            starred[i, free[0]] = True
            col_cov[free[0]] = True
    col_cov[:] = False
    while True:
        col_cov = starred.any(axis=0)  # step 3
        if col_cov.sum() >= n:
            break
        row, col = 0, 0
        while True:  # step 4
            zeros = (c == 0) & ~row_cov[:, None] & ~col_cov[None, :]
            row, col = _find_a_zero(zeros, row, col)
            if row < 0:  # step 6: shift by the smallest uncovered value, back to step 4
                uncovered = c[~row_cov][:, ~col_cov]
                m = uncovered.min()
                c = np.where(row_cov[:, None], c + m, c)
                c = np.where(~col_cov[None, :], c - m, c)
                row, col = 0, 0
                continue
            primed[row, col] = True
            star_cols = np.flatnonzero(starred[row])
            if star_cols.size:
                col = int(star_cols[0])
                row_cov[row] = True
                col_cov[col] = False
                continue
            break
        # step 5: augmenting path of alternating primes and stars
        path = [(row, col)]
        while True:
            star_rows = np.flatnonzero(starred[:, path[-1][1]])
            if star_rows.size == 0:
                break
            r = int(star_rows[0])
            path.append((r, path[-1][1]))
            c_prime = int(np.flatnonzero(primed[r])[0])
            path.append((r, c_prime))
        for r, cc in path:
            starred[r, cc] = not starred[r, cc]
        row_cov[:] = False
        col_cov[:] = False
        primed[:] = False
    pr, pc = np.nonzero(starred[:rows, :cols])
    return list(zip(pr.tolist(), pc.tolist(), strict=True))
