"""The one fooling-curve evaluator: error and prediction-change rates of
universal perturbations over a norm grid.

Two rates are measured on the perturbed inputs clip(x + eps * v, clip_min,
clip_max):
- error rate: fraction misclassified against the true labels (the paper's
  "fooling rate");
- fooling rate: fraction whose prediction changed from the clean prediction
  (the usual definition for universal perturbations).
"""

import dataclasses

import numpy as np

__all__ = ["L2_GRID", "FoolingCurves", "fooling_curves", "interpolate_crossing"]

# The L2 norms of the paper's Figures 5-6 axis (MNIST, inputs in [0, 1]):
# from a barely visible change to about twice a digit's own norm.
L2_GRID = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)


@dataclasses.dataclass(frozen=True)
class FoolingCurves:
    """Rates of k perturbations over the norms evaluated.

    Attributes:
        eps: the norms evaluated, float64 (a prefix of the grid if it stopped early).
        error_rate, fooling_rate: (len(eps), k).
        clean_error_rate: the error rate without perturbation.
    """

    eps: np.ndarray
    error_rate: np.ndarray
    fooling_rate: np.ndarray
    clean_error_rate: float


def _saturated(errors, saturation, plateau_tol, plateau_floor):
    """True when every curve has reached `saturation`, or has flattened out
    (risen by less than `plateau_tol` over the last step) above `plateau_floor`."""
    last = np.asarray(errors[-1])
    if len(errors) < 3:  # the clean point and one measured norm
        return bool(np.all(last >= saturation))
    rise = last - np.asarray(errors[-2])
    done = (last >= saturation) | ((last >= plateau_floor) & (rise < plateau_tol))
    return bool(np.all(done))


def _labels(predict, x, batch_size):
    return np.concatenate([np.asarray(predict(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def fooling_curves(predict, x, y, vectors, eps_grid, clean=None, clip_min=0.0, clip_max=1.0, batch_size=1000,
                   saturation=None, strategy=None, plateau_tol=0.01, plateau_floor=0.5, known=None):
    """Error and fooling rates of every vector at every norm of `eps_grid`.

    The grid is walked upwards for all vectors together; with `saturation`
    it stops early once every vector's error rate has reached it or
    flattened out above `plateau_floor` (beyond that the curve is flat and
    each further point costs a full pass). Norm 0 costs no pass, and
    neither does a point given in `known`.

    Args:
        predict: float32 batch (NumPy) -> predicted int labels.
        x: inputs (N, *input_shape), any shape.
        y: int labels (N,), or None to count errors against the clean predictions.
        vectors: (k, *input_shape) or (k, d) steps of norm 1 in the norm the
            grid is in (unit L2 vectors, or sign vectors for L-infinity).
        eps_grid: increasing norms (>= 0).
        clean: the clean predictions of `x`, if already known.
        clip_min, clip_max: the valid input range.
        batch_size: inputs predicted at once; memory holds one batch.
        saturation: the early-stop level, or None to evaluate the whole grid.
        strategy: a `tf.distribute.Strategy` to predict data-parallel, or None.
        known: {column: (error rates, fooling rates)} of vectors whose rates
            were already measured at the first norms of `eps_grid` on the
            same inputs, labels, clean predictions and clip range (e.g. by
            another stage, for the same vector): those points are taken as
            given, the column's later points are predicted. The early stop
            is decided on the assembled rows, so the result is the one
            predicting every point gives, provided the given rates are
            what `predict` gives (the same function and batch size, since
            a batch's size can change the last bits of its logits).

    Returns:
        A `FoolingCurves`.

    Example:

        curves = fooling_curves(predict, x, y, v[None], [0.0, 1.0, 2.0], clip_min=0.0, clip_max=1.0)
        assert curves.error_rate.shape == (3, 1)
    """
    if strategy is not None:
        from keras_uap.api.distribute import BatchRunner

        predict = BatchRunner(predict, strategy)
    x = np.asarray(x, np.float32)
    shape = x.shape[1:]
    vectors = [np.asarray(v, np.float32).reshape(shape) for v in vectors]
    if clean is None:
        clean = _labels(predict, x, batch_size)
    truth = clean if y is None else np.asarray(y)
    clean_error = float(np.mean(clean != truth))
    known = {column: np.asarray(rates, float) for column, rates in (known or {}).items()}
    eps_done, errors, foolings = [], [], []
    for i, eps in enumerate(eps_grid):
        row = []
        for column, v in enumerate(vectors):
            given = known.get(column)
            if given is not None and i < given.shape[1]:
                row.append((float(given[0, i]), float(given[1, i])))
            elif float(eps) == 0.0:
                row.append((clean_error, 0.0))
            else:
                row.append(_rates(predict, x, truth, clean, np.float32(eps) * v, clip_min, clip_max, batch_size))
        eps_done.append(float(eps))
        errors.append([r[0] for r in row])
        foolings.append([r[1] for r in row])
        if saturation is not None and _saturated(errors, saturation, plateau_tol, plateau_floor):
            break
    return FoolingCurves(np.array(eps_done), np.array(errors), np.array(foolings), clean_error)


def _rates(predict, x, y, clean, perturbation, clip_min, clip_max, batch_size):
    wrong = changed = 0
    for start in range(0, len(x), batch_size):
        batch = np.clip(x[start:start + batch_size] + perturbation, clip_min, clip_max)
        pred = np.asarray(predict(batch))
        wrong += int(np.sum(pred != y[start:start + batch_size]))
        changed += int(np.sum(pred != clean[start:start + batch_size]))
    return wrong / len(x), changed / len(x)


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
