"""The one SVD universal perturbation: the top right singular vector of the
unit-normalised attack directions of a sample, with its sign chosen.

Sign rule (an SVD fixes a singular vector only up to sign): keep `v` or
`-v`, whichever raises the sampled inputs' mean cross-entropy more at L2
norm `probe_norm`, the perturbed inputs clipped to [clip_min, clip_max];
ties keep `v`. TensorFlow is imported on first use (the CLI imports this
package for the attack names).
"""

import dataclasses

import numpy as np

from keras_uap.method.sampling import draw_sample

__all__ = ["UniversalPerturbation", "choose_sign", "svd_direction", "universal_perturbation", "random_unit_vectors"]


@dataclasses.dataclass(frozen=True)
class UniversalPerturbation:
    """An SVD universal perturbation.

    Attributes:
        perturbation: float32, shape of one input, unit L2 norm.
        singular_values: the singular values of the unit-normalised
            directions, descending, float64.
        sample_indices: the sorted indices of the attacked inputs (`draw_sample`).
        attack: the attack's name ("custom" for a callable).
    """

    perturbation: np.ndarray
    singular_values: np.ndarray
    sample_indices: np.ndarray
    attack: str


def random_unit_vectors(d, seeds):
    """One Gaussian random unit vector of dimension `d` per seed, (k, d)."""
    rows = [np.random.default_rng([7919, s]).standard_normal(d) for s in seeds]
    return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


def _mean_loss(logits_fn, x, y, batch_size=2000):
    import tensorflow as tf

    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = logits_fn(tf.constant(x[start:start + batch_size]))
        labels = tf.cast(y[start:start + batch_size], tf.int32)
        total += float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))
    return total / len(x)


def choose_sign(v, logits_fn, x, y, probe_norm, clip_min=0.0, clip_max=1.0):
    """`v` or `-v` by the module's sign rule.

    Args:
        v: a unit vector with the size of one input.
        logits_fn: batch -> logits.
        x, y: the sampled inputs (m, *input_shape) and their int labels.
        probe_norm: the L2 norm at which the two signs are compared.
        clip_min, clip_max: the valid input range.
    """
    step = np.float32(probe_norm) * np.asarray(v, np.float32).reshape(x.shape[1:])
    plus = _mean_loss(logits_fn, np.clip(x + step, clip_min, clip_max).astype(np.float32), y)
    minus = _mean_loss(logits_fn, np.clip(x - step, clip_min, clip_max).astype(np.float32), y)
    return v if plus >= minus else -v


def svd_direction(directions, x, y, logits_fn, probe_norm, clip_min=0.0, clip_max=1.0):
    """The SVD step on the directions of a sample already drawn.

    Args:
        directions: (m, ...) attack directions of the inputs `x`.
        x, y: those inputs (m, *input_shape) and their int labels.
        logits_fn, probe_norm, clip_min, clip_max: as for `choose_sign`.

    Returns:
        (perturbation float32 of one input's shape, unit L2 norm, sign
        chosen; singular values of the unit rows, descending).
    """
    from keras_uap.analysis.spectrum import singular_spectrum

    singular_values, vectors = singular_spectrum(directions, top=1)
    v = vectors[0].reshape(np.shape(x)[1:])
    v = (v / np.linalg.norm(v)).astype(np.float32)
    return choose_sign(v, logits_fn, np.asarray(x, np.float32), y, probe_norm, clip_min, clip_max), singular_values


def universal_perturbation(x, y, directions_of, logits_fn, sample_size, seed, probe_norm, clip_min=0.0,
                           clip_max=1.0, attack="custom"):
    """The paper's universal perturbation from a seeded sample of `x`.

    Args:
        x, y: the candidate inputs (N, *input_shape) and their int labels.
        directions_of: indices into `x` -> the attack directions of those
            inputs (computed, or looked up in stored directions).
        logits_fn: batch -> logits, for the sign.
        sample_size, seed: the sample, `draw_sample(len(x), sample_size, seed)`.
        probe_norm, clip_min, clip_max: the sign rule's.
        attack: the attack's name, recorded in the result.

    Returns:
        A `UniversalPerturbation`.

    Example:

        # `stored`: the directions of every input of `x`, looked up by index.
        result = universal_perturbation(x, y, stored.__getitem__, model, sample_size=100, seed=0,
                                        probe_norm=6.0)
        assert result.perturbation.shape == x.shape[1:]
    """
    indices = draw_sample(len(x), sample_size, seed)
    v, singular_values = svd_direction(directions_of(indices), x[indices], y[indices], logits_fn, probe_norm,
                                       clip_min, clip_max)
    return UniversalPerturbation(v, singular_values, indices, attack)
