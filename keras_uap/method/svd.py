"""The one SVD universal perturbation: the top right singular vector of the
unit-normalised attack directions of a sample, with its sign chosen.

Sign rule (an SVD fixes a singular vector only up to sign): keep `v` or
`-v`, whichever misclassifies more of the sampled inputs over the norms
`sign_norms`, measured as the area under the sample's own error-rate curve
(trapezoids over the norms, the perturbed inputs clipped to [clip_min,
clip_max]); ties keep `v`. Only the sampled inputs decide (at most
`SIGN_INPUTS` of them, a seeded draw, when the sample is larger), and the
norms are the study's L2 grid, the paper's Figures 5-6 axis, fixed before
any result: no norm is picked by looking at test-set curves. Two signs can
swap places between small and large norms, so one probe norm would have to
be chosen; the area over the whole grid needs no such choice.
TensorFlow is imported on first use (the CLI imports this package for the
attack names).
"""

import dataclasses
import math

import numpy as np

from keras_uap.method.curves import L2_GRID, fooling_curves
from keras_uap.method.sampling import draw_sample

__all__ = ["UniversalPerturbation", "SIGN_INPUTS", "choose_sign", "default_sign_norms", "l2_scale", "svd_direction",
           "universal_perturbation", "random_unit_vectors"]

# Enough inputs to tell two error rates apart by a few points, few enough
# that judging the sign of the full set's vector costs a fraction of a curve.
SIGN_INPUTS = 1000


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


def l2_scale(input_shape, clip_min=0.0, clip_max=1.0):
    """`sqrt(d) / 28 * (clip_max - clip_min)` for inputs of `d` values: what an
    L2 norm chosen for the paper's 784-value images in [0, 1] is multiplied
    by to make the same root-mean-square change per value on other inputs."""
    return math.sqrt(int(np.prod(input_shape))) / 28.0 * (float(clip_max) - float(clip_min))


def default_sign_norms(input_shape, clip_min=0.0, clip_max=1.0):
    """The norms at which the two signs are compared by default: the study's
    L2 grid (`L2_GRID`, made for 784-value images in [0, 1]) scaled by
    `l2_scale`, i.e. the same root-mean-square change per value whatever the
    input's size and range."""
    scale = l2_scale(input_shape, clip_min, clip_max)
    return tuple(scale * e for e in L2_GRID)


def _sign_areas(v, logits_fn, x, y, sign_norms, clip_min, clip_max, batch_size=1000):
    """The areas under the error-rate curves of `v` and `-v` on (x, y)."""
    import tensorflow as tf

    def predict(batch):
        return tf.argmax(logits_fn(tf.constant(batch)), axis=-1, output_type=tf.int32).numpy()

    norms = (0.0, *sorted(float(e) for e in sign_norms))
    curves = fooling_curves(predict, x, y, [v, -v], norms, clip_min=clip_min, clip_max=clip_max,
                            batch_size=batch_size, saturation=0.99)
    # A curve cut short at saturation stays at its last value to the end of the norms.
    rates = np.vstack([curves.error_rate, np.repeat(curves.error_rate[-1:], len(norms) - len(curves.eps), axis=0)])
    widths = np.diff(norms)[:, None]
    return np.sum(widths * (rates[1:] + rates[:-1]) / 2.0, axis=0)


def choose_sign(v, logits_fn, x, y, sign_norms, clip_min=0.0, clip_max=1.0):
    """`v` or `-v` by the module's sign rule.

    Args:
        v: a unit vector with the size of one input.
        logits_fn: batch -> logits.
        x, y: the sampled inputs (m, *input_shape) and their int labels.
        sign_norms: the L2 norms over which the two error-rate curves are
            compared (`default_sign_norms` for the study's grid).
        clip_min, clip_max: the valid input range.

    Returns:
        `v` or `-v`, float32 of one input's shape.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if len(x) > SIGN_INPUTS:
        pick = draw_sample(len(x), SIGN_INPUTS, 0)
        x, y = x[pick], y[pick]
    v = np.asarray(v, np.float32).reshape(x.shape[1:])
    kept, other = _sign_areas(v, logits_fn, x, y, sign_norms, clip_min, clip_max)
    return v if kept >= other else -v


def svd_direction(directions, x, y, logits_fn, sign_norms, clip_min=0.0, clip_max=1.0):
    """The SVD step on the directions of a sample already drawn.

    Args:
        directions: (m, ...) attack directions of the inputs `x`.
        x, y: those inputs (m, *input_shape) and their int labels.
        logits_fn, sign_norms, clip_min, clip_max: as for `choose_sign`.

    Returns:
        (perturbation float32 of one input's shape, unit L2 norm, sign
        chosen; singular values of the unit rows, descending).
    """
    from keras_uap.analysis.spectrum import singular_spectrum

    singular_values, vectors = singular_spectrum(directions, top=1)
    v = vectors[0].reshape(np.shape(x)[1:])
    v = (v / np.linalg.norm(v)).astype(np.float32)
    return choose_sign(v, logits_fn, np.asarray(x, np.float32), y, sign_norms, clip_min, clip_max), singular_values


def universal_perturbation(x, y, directions_of, logits_fn, sample_size, seed, sign_norms, clip_min=0.0,
                           clip_max=1.0, attack="custom"):
    """The paper's universal perturbation from a seeded sample of `x`.

    Args:
        x, y: the candidate inputs (N, *input_shape) and their int labels.
        directions_of: indices into `x` -> the attack directions of those
            inputs (computed, or looked up in stored directions).
        logits_fn: batch -> logits, for the sign.
        sample_size, seed: the sample, `draw_sample(len(x), sample_size, seed)`.
        sign_norms, clip_min, clip_max: the sign rule's.
        attack: the attack's name, recorded in the result.

    Returns:
        A `UniversalPerturbation`.

    Example:

        # `stored`: the directions of every input of `x`, looked up by index.
        result = universal_perturbation(x, y, stored.__getitem__, model, sample_size=100, seed=0,
                                        sign_norms=default_sign_norms(x.shape[1:]))
        assert result.perturbation.shape == x.shape[1:]
    """
    indices = draw_sample(len(x), sample_size, seed)
    v, singular_values = svd_direction(directions_of(indices), x[indices], y[indices], logits_fn, sign_norms,
                                       clip_min, clip_max)
    return UniversalPerturbation(v, singular_values, indices, attack)
