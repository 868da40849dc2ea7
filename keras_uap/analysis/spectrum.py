"""Singular spectra of matrices whose rows are unit-normalised directions."""

import numpy as np
import tensorflow as tf

__all__ = ["unit_rows", "singular_spectrum", "spectrum_fractions"]


def unit_rows(directions, eps=1e-12):
    """(N, ...) directions as (N, d) rows of unit L2 norm; all-zero rows stay zero
    (an input whose gradient vanished carries no direction)."""
    flat = np.asarray(directions, dtype=np.float64).reshape(len(directions), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, eps)


def singular_spectrum(directions, top=None):
    """SVD (`tf.linalg.svd`) of the unit-normalised directions.

    Args:
        directions: (N, d) or (N, H, W, C) array.
        top: how many right singular vectors to return (default all).

    Returns:
        (singular_values (min(N, d),) descending, right singular vectors as
        rows, (top, d)).
    """
    rows = tf.constant(unit_rows(directions))
    s, _, v = tf.linalg.svd(rows, full_matrices=False)
    vectors = tf.transpose(v).numpy()
    return s.numpy(), vectors if top is None else vectors[:top]


def spectrum_fractions(singular_values, ks=(1, 5, 10)):
    """Fraction of the total squared spectrum held by the top k values, per k."""
    squared = np.square(np.asarray(singular_values, dtype=np.float64))
    total = squared.sum()
    return {str(k): float(squared[:k].sum() / total) if total > 0 else 0.0 for k in ks}
