"""Universal perturbations from the top singular vector, and their error curves.

Two rates are measured on perturbed inputs clip(x + eps * v, 0, 1):
- error rate: fraction misclassified against the true labels (the paper's
  "fooling rate");
- fooling rate: fraction whose prediction changed from the clean prediction
  (the usual definition for universal perturbations).
"""

import numpy as np
import tensorflow as tf

from keras_uap.analysis.spectrum import singular_spectrum

__all__ = ["top_singular_vector", "choose_sign", "error_curves", "interpolate_crossing", "random_unit_vectors"]


def top_singular_vector(directions):
    """The top right singular vector (unit, (d,)) of the unit-normalised rows."""
    _, vectors = singular_spectrum(directions, top=1)
    return vectors[0].astype(np.float32)


def random_unit_vectors(d, seeds):
    """One Gaussian random unit vector of dimension `d` per seed, (k, d)."""
    rows = [np.random.default_rng([7919, s]).standard_normal(d) for s in seeds]
    return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


def _mean_loss(logits_fn, x, y, batch_size=2000):
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = logits_fn(tf.constant(x[start:start + batch_size]))
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[start:start + batch_size], logits=logits)
        total += float(tf.reduce_sum(losses))
    return total / len(x)


def choose_sign(v, logits_fn, x_sample, y_sample, probe_norm=2.0):
    """`v` or `-v`, whichever raises the sample's mean loss at L2 norm
    `probe_norm` (an SVD fixes a singular vector only up to sign)."""
    shape = x_sample.shape[1:]
    step = probe_norm * v.reshape(shape)
    plus = _mean_loss(logits_fn, np.clip(x_sample + step, 0.0, 1.0), y_sample)
    minus = _mean_loss(logits_fn, np.clip(x_sample - step, 0.0, 1.0), y_sample)
    return v if plus >= minus else -v


def _rates(predict_fn, x, y, clean, perturbation, batch_size):
    wrong = changed = 0
    for start in range(0, len(x), batch_size):
        batch = np.clip(x[start:start + batch_size] + perturbation, 0.0, 1.0)
        pred = predict_fn(tf.constant(batch)).numpy()
        wrong += int(np.sum(pred != y[start:start + batch_size]))
        changed += int(np.sum(pred != clean[start:start + batch_size]))
    return wrong / len(x), changed / len(x)


def _saturated(errors, saturation, plateau_tol, plateau_floor):
    """True when every curve has reached `saturation`, or has flattened out
    (risen by less than `plateau_tol` over the last step) above `plateau_floor`."""
    last = np.asarray(errors[-1])
    if len(errors) < 3:  # the clean point and one measured norm
        return bool(np.all(last >= saturation))
    rise = last - np.asarray(errors[-2])
    done = (last >= saturation) | ((last >= plateau_floor) & (rise < plateau_tol))
    return bool(np.all(done))


def error_curves(predict_fn, x, y, clean, vectors, eps_grid, saturation=0.99, batch_size=5000,
                 plateau_tol=0.01, plateau_floor=0.5):
    """Error and fooling rates of every vector at every norm of `eps_grid`.

    The grid is walked upwards for all vectors together and stops early once
    every vector's error rate has reached `saturation` or flattened out above
    `plateau_floor`: beyond that the curve is flat and each further point
    costs a full pass over the test set.

    Args:
        predict_fn: batch -> predicted labels (a compiled forward pass).
        x, y, clean: test inputs (N, H, W, C), true labels, clean predictions.
        vectors: (k, d) unit vectors.
        eps_grid: increasing L2 norms.

    Returns:
        (eps, error_rate (len(eps), k), fooling_rate (len(eps), k)), the
        grid starting with norm 0 (the clean rates).
    """
    shape = x.shape[1:]
    # Norm 0 is the clean model: no pass needed to know it.
    eps_done = [0.0]
    errors = [[float(np.mean(clean != y))] * len(vectors)]
    foolings = [[0.0] * len(vectors)]
    for eps in eps_grid:
        row = [_rates(predict_fn, x, y, clean, float(eps) * v.reshape(shape), batch_size) for v in vectors]
        eps_done.append(float(eps))
        errors.append([r[0] for r in row])
        foolings.append([r[1] for r in row])
        if _saturated(errors, saturation, plateau_tol, plateau_floor):
            break
    return np.array(eps_done), np.array(errors), np.array(foolings)


def interpolate_crossing(eps, rates, level):
    """The norm at which a curve first reaches `level`, linearly interpolated
    between grid points; None when it never does."""
    eps, rates = np.asarray(eps, float), np.asarray(rates, float)
    above = np.nonzero(rates >= level)[0]
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(eps[0])
    e0, e1, r0, r1 = eps[i - 1], eps[i], rates[i - 1], rates[i]
    return float(e0 + (level - r0) * (e1 - e0) / (r1 - r0))
