"""Numerical checks of the paper's Section 5.

M = E[a a^T / |a|^2] over the unit directions a; its top eigenvalue lambda and
eigenvector v. Theorem 1: Pr(|<a, v>| >= delta |a|) >= (lambda - delta^2) /
(1 - delta^2). Theorem 2: the top eigenvector of a sample of size m is close
to v, with a distance that shrinks with m and with the eigengap.
"""

import numpy as np

from keras_uap.analysis.spectrum import singular_spectrum, unit_rows

__all__ = ["top_eigenpair", "theorem1_rows", "sample_vector_distances"]


def top_eigenpair(directions):
    """(lambda_1, lambda_2, v) of M = (1/N) sum a a^T / |a|^2.

    The eigenvalues of M are the squared singular values of the unit rows
    divided by N, so this reuses the SVD.
    """
    s, vectors = singular_spectrum(directions, top=1)
    eigenvalues = np.square(s) / len(directions)
    return float(eigenvalues[0]), float(eigenvalues[1]), vectors[0]


def theorem1_rows(directions, v, lam, deltas=(0.05, 0.1, 0.15, 0.2, 0.3)):
    """Rows [delta, measured Pr(|<a, v>| >= delta |a|), Theorem 1's bound]."""
    cosines = np.abs(unit_rows(directions) @ np.asarray(v, np.float64))
    rows = []
    for delta in deltas:
        bound = (lam - delta**2) / (1 - delta**2)
        rows.append([float(delta), float(np.mean(cosines >= delta)), float(bound)])
    return rows


def sample_vector_distances(directions, v, sizes=(100, 500, 1000, 5000), seeds=(0, 1, 2)):
    """Rows [m, mean, std] of min(|v - v_m|, |v + v_m|) over seeds, where v_m is
    the top singular vector of m directions drawn without replacement."""
    directions = np.asarray(directions).reshape(len(directions), -1)
    rows = []
    for m in sizes:
        if m > len(directions):
            continue
        distances = []
        for seed in seeds:
            pick = np.random.default_rng([seed, m]).choice(len(directions), m, replace=False)
            _, v_m = singular_spectrum(directions[pick], top=1)
            distances.append(min(np.linalg.norm(v - v_m[0]), np.linalg.norm(v + v_m[0])))
        rows.append([int(m), float(np.mean(distances)), float(np.std(distances))])
    return rows
