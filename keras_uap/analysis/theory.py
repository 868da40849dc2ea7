"""Numerical checks of the paper's Section 5.

M = E[a a^T / |a|^2] over the unit directions a; its top eigenvalue lambda and
eigenvector v. Theorem 1: Pr(|<a, v>| >= delta |a|) >= (lambda - delta^2) /
(1 - delta^2). Theorem 2: the top eigenvector v_m of the matrix M_m of m
sampled directions satisfies |v - v_m| <= epsilon / (gamma - epsilon), where
epsilon = |M - M_m|_2 and gamma = lambda_1 - lambda_2 > epsilon.

Theorem 1 measured on the same rows that gave lambda and v holds for any
finite set of rows (it is Markov's inequality on those rows), so
`theorem1_rows` is a sanity check; `theorem1_held_out` fits lambda and v on
one half of the rows and measures on the other half, which can fail.
`theorem2_rows` evaluates Theorem 2's bound itself.
"""

import numpy as np

from keras_uap.analysis.spectrum import singular_spectrum, unit_rows

__all__ = ["top_eigenpair", "theorem1_rows", "theorem1_held_out", "sample_vector_distances", "theorem2_rows",
           "nonvacuous_sample_size", "DELTAS"]

DELTAS = (0.05, 0.1, 0.15, 0.2, 0.3)


def top_eigenpair(directions):
    """(lambda_1, lambda_2, v) of M = (1/N) sum a a^T / |a|^2.

    The eigenvalues of M are the squared singular values of the unit rows
    divided by N, so this reuses the SVD.
    """
    s, vectors = singular_spectrum(directions, top=1)
    eigenvalues = np.square(s) / len(directions)
    return float(eigenvalues[0]), float(eigenvalues[1]), vectors[0]


def theorem1_rows(directions, v, lam, deltas=DELTAS):
    """Rows [delta, measured Pr(|<a, v>| >= delta |a|), Theorem 1's bound]."""
    cosines = np.abs(unit_rows(directions) @ np.asarray(v, np.float64))
    rows = []
    for delta in deltas:
        bound = (lam - delta**2) / (1 - delta**2)
        rows.append([float(delta), float(np.mean(cosines >= delta)), float(bound)])
    return rows


def theorem1_held_out(directions, seed=0, deltas=DELTAS):
    """Theorem 1 out of sample: lambda and v from a seeded half of the rows,
    the probability measured on the other half.

    Returns:
        {"n_fit", "n_held_out", "top_eigenvalue" (of the fitted half's M),
        "rows": [[delta, measured on the held-out half, bound], ...]}.
    """
    directions = np.asarray(directions).reshape(len(directions), -1)
    order = np.random.default_rng([seed, 1]).permutation(len(directions))
    fit, held_out = order[: len(order) // 2], order[len(order) // 2:]
    lam, _, v = top_eigenpair(directions[fit])
    return {"n_fit": int(len(fit)), "n_held_out": int(len(held_out)), "top_eigenvalue": lam,
            "rows": theorem1_rows(directions[held_out], v, lam, deltas)}


def _draw(n, m, seed):
    return np.random.default_rng([seed, m]).choice(n, m, replace=False)


def _aligned_distance(v, w):
    """|v - w| with the sign of w that makes it smallest (an eigenvector's sign is arbitrary)."""
    return float(min(np.linalg.norm(v - w), np.linalg.norm(v + w)))


def sample_vector_distances(directions, v, sizes=(100, 500, 1000, 5000), seeds=(0, 1, 2)):
    """Rows [m, mean, std] of min(|v - v_m|, |v + v_m|) over seeds, where v_m is
    the top singular vector of m directions drawn without replacement."""
    directions = np.asarray(directions).reshape(len(directions), -1)
    rows = []
    for m in sizes:
        if m > len(directions):
            continue
        distances = [_aligned_distance(v, singular_spectrum(directions[_draw(len(directions), m, seed)], top=1)[1][0])
                     for seed in seeds]
        rows.append([int(m), float(np.mean(distances)), float(np.std(distances))])
    return rows


# Up to this many dimensions (MNIST's 784 among them), and whenever the rows
# outnumber the dimensions, M is formed as the d x d matrix itself; else the
# same eigenproblems are solved in the rows' span (n x n), so that a larger
# input (3,072 values, or 150,528) costs no d x d eigendecomposition.
_EXPLICIT_DIM = 1024


def _coordinates(rows):
    """(basis, points): the rows as `points` (n x k) in the orthonormal
    columns of `basis` (d x k), so that every M = points.T @ points / n
    and M_m keeps M's eigenvalues and maps its eigenvectors by `basis`.
    basis None: the rows themselves (k = d)."""
    n, d = rows.shape
    if d <= max(n, _EXPLICIT_DIM):
        return None, rows
    basis, r = np.linalg.qr(rows.T)  # rows.T = basis @ r
    return basis, r.T


def theorem2_rows(directions, sizes=(100, 500, 1000, 5000), seed=0):
    """Theorem 2's bound evaluated for one seeded sample of each size m.

    M and M_m are d x d for moderate d (784 for MNIST), else solved in the
    span of the rows (`_coordinates`), with the same eigenvalues. The sample
    is drawn without replacement, as the method draws its m inputs.

    Returns:
        One row per m < N: {"m", "epsilon": |M - M_m|_2, "gap": lambda_1 - lambda_2
        of M, "bound": epsilon / (gap - epsilon), or None when gap <= epsilon
        (vacuous), "distance": the sign-aligned |v - v_m|}.
    """
    basis, points = _coordinates(unit_rows(directions))
    n = len(points)

    def in_input_space(vector):
        return vector if basis is None else basis @ vector

    full = points.T @ points / n
    eigenvalues, eigenvectors = np.linalg.eigh(full)
    gap, v = float(eigenvalues[-1] - eigenvalues[-2]), in_input_space(eigenvectors[:, -1])
    out = []
    for m in sizes:
        if m >= n:
            continue
        sample = points[_draw(n, m, seed)]
        sampled = sample.T @ sample / m
        epsilon = float(np.max(np.abs(np.linalg.eigvalsh(full - sampled))))
        v_m = in_input_space(np.linalg.eigh(sampled)[1][:, -1])
        out.append({"m": int(m), "epsilon": epsilon, "gap": gap,
                    "bound": epsilon / (gap - epsilon) if gap > epsilon else None,
                    "distance": _aligned_distance(v, v_m)})
    return out


def nonvacuous_sample_size(rows):
    """The m at which Theorem 2's bound would stop being vacuous (epsilon < gap),
    extrapolating epsilon = c / sqrt(m) with c fitted (least squares in log)
    to `theorem2_rows`; None without rows or with a zero gap."""
    if not rows or not rows[0]["gap"] or rows[0]["gap"] <= 0:
        return None
    m = np.array([r["m"] for r in rows], float)
    c = float(np.exp(np.mean(np.log(np.array([r["epsilon"] for r in rows], float)) + 0.5 * np.log(m))))
    return int(np.ceil((c / rows[0]["gap"]) ** 2))
