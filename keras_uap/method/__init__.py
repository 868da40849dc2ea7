"""The method's core, the only place each of its steps lives: the attack
registry, the seeded sampler, the SVD universal perturbation and the
fooling-curve evaluator. `run-all`, `study`, the baselines, the transfer and
`keras_uap.api` all build on it."""

from keras_uap.method.attacks import (
    ATTACK_NAMES,
    ATTACKS,
    PAPER_ATTACKS,
    Attack,
    AttackOutput,
    AttackParams,
    get_attack,
)
from keras_uap.method.curves import L2_GRID, FoolingCurves, fooling_curves, interpolate_crossing
from keras_uap.method.sampling import draw_sample
from keras_uap.method.svd import (
    SIGN_INPUTS,
    UniversalPerturbation,
    choose_sign,
    default_sign_norms,
    l2_scale,
    random_unit_vectors,
    svd_direction,
    universal_perturbation,
)

__all__ = [
    "ATTACK_NAMES",
    "ATTACKS",
    "PAPER_ATTACKS",
    "Attack",
    "AttackOutput",
    "AttackParams",
    "get_attack",
    "L2_GRID",
    "FoolingCurves",
    "fooling_curves",
    "interpolate_crossing",
    "draw_sample",
    "SIGN_INPUTS",
    "UniversalPerturbation",
    "choose_sign",
    "default_sign_norms",
    "l2_scale",
    "random_unit_vectors",
    "svd_direction",
    "universal_perturbation",
]
