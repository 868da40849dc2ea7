"""Comparing two sets of singular vectors."""

import numpy as np
import scipy.linalg

__all__ = ["avg_abs_dot", "max_abs_dot", "principal_angles_deg"]


def avg_abs_dot(a, b, k):
    """Mean of |<a_i, b_j>| over all pairs of the top-k rows of `a` and `b`
    (unit vectors): 0 for orthogonal sets, 1/k-ish for random ones in low d."""
    a, b = np.asarray(a, np.float64)[:k], np.asarray(b, np.float64)[:k]
    return float(np.mean(np.abs(a @ b.T)))


def max_abs_dot(a, b, k):
    """Largest |<a_i, b_j>| over the pairs of the top-k rows: one shared
    direction that the mean over all k^2 pairs would hide."""
    a, b = np.asarray(a, np.float64)[:k], np.asarray(b, np.float64)[:k]
    return float(np.max(np.abs(a @ b.T)))


def principal_angles_deg(a, b, k):
    """Principal angles, in degrees and descending, between the spans of the
    top-k rows of `a` and of `b` (`scipy.linalg.subspace_angles`)."""
    angles = scipy.linalg.subspace_angles(np.asarray(a, np.float64)[:k].T, np.asarray(b, np.float64)[:k].T)
    return sorted((float(x) for x in np.degrees(angles)), reverse=True)
