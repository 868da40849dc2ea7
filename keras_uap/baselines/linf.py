"""L-infinity perturbations from unit (L2) directions."""

import math
import numbers

import numpy as np

__all__ = ["linf_perturbation"]


def linf_perturbation(unit_vector, budget):
    """`budget * sign(v)`: the L-infinity perturbation of size `budget` that
    best aligns with `v` (it maximises `<p, v>` over `||p||_inf <= budget`).

    Args:
        unit_vector: a direction of any shape (its length does not matter).
        budget: the L-infinity size, a finite number >= 0.

    Returns:
        A float32 array of `unit_vector`'s shape, entries in
        {-budget, 0, budget} (0 where `v` is 0).

    Raises:
        ValueError: for a negative or non-finite `budget`.
    """
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"`budget` must be a finite number >= 0. Received: budget={budget!r}")
    return (np.float32(budget) * np.sign(np.asarray(unit_vector, np.float32))).astype(np.float32)
