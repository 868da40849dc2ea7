"""The one seeded sampler: which inputs a stage, the API or a baseline uses."""

import numpy as np

__all__ = ["draw_sample"]


def draw_sample(n, m, seed):
    """The sorted indices of `min(m, n)` of `n` items, drawn without
    replacement with `np.random.default_rng(seed)`.

    Every stage that samples (the attacked subset, the analysis sample, the
    SVD samples of the universal curves and of the comparison, the evaluated
    subset) and `keras_uap.api.svd_universal_perturbation` draw here, so the
    same `(n, m, seed)` names the same inputs everywhere. `m >= n` gives
    `arange(n)`.

    Example:

        >>> draw_sample(10, 3, seed=0).tolist()
        [5, 6, 9]
    """
    n, m = int(n), int(m)
    if n < 0 or m < 0:
        raise ValueError(f"`n` and `m` must be >= 0. Received: n={n}, m={m}")
    return np.sort(np.random.default_rng(seed).choice(n, size=min(m, n), replace=False))
