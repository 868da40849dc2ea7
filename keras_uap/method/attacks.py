"""The attack registry: every per-input attack the method can take its
directions from, with the norm it works in and whether the paper uses it.

The CLI's choices, the report's attack order, the stages and
`keras_uap.api.ATTACKS` all read `ATTACKS` (registry order is the paper's
order, this project's additions after their closest relative). TensorFlow
is imported when an attack runs, so the CLI can list the names without it.
"""

import dataclasses

import numpy as np

__all__ = ["Attack", "AttackParams", "AttackOutput", "ATTACKS", "ATTACK_NAMES", "PAPER_ATTACKS", "get_attack"]


@dataclasses.dataclass(frozen=True)
class AttackParams:
    """The attacks' settings (each attack reads its own).

    Attributes:
        fgsm_eps: FGSM's L-infinity step.
        gradient_step: L2 norm of the step along the unit gradient whose
            prediction change counts as the gradient "attack"'s success.
        deepfool_candidates: DeepFool's top classes (at most the model's).
        deepfool_overshoot, deepfool_max_iter: DeepFool's overshoot and steps.
        pgd_eps, pgd_eps_iter, pgd_nb_iter: PGD's L-infinity radius, step and steps.
        clip_min, clip_max: the valid input range.
    """

    fgsm_eps: float = 0.3
    gradient_step: float = 2.0
    deepfool_candidates: int = 10
    deepfool_overshoot: float = 0.02
    deepfool_max_iter: int = 50
    pgd_eps: float = 0.3
    pgd_eps_iter: float = 0.03
    pgd_nb_iter: int = 20
    clip_min: float = 0.0
    clip_max: float = 1.0


@dataclasses.dataclass(frozen=True)
class AttackOutput:
    """One batch's directions (N, *input_shape) float32 tensor, and, where the
    attack decides them itself (DeepFool), its success flags and step counts."""

    direction: object
    success: np.ndarray | None = None
    iterations: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Attack:
    """One registered attack.

    Attributes:
        name: the name the CLI, the API and the artifacts use.
        norm: the norm the attack works in ("l2" or "linf").
        in_paper: whether the paper uses it.
        traceable: pure TensorFlow (can be compiled into one graph).
        run: `(logits_fn, x, y, params) -> AttackOutput`.
        adversarial: `(x, direction, params) -> inputs` whose prediction
            change counts as success, for attacks that do not report it.
    """

    name: str
    norm: str
    in_paper: bool
    traceable: bool
    run: object
    adversarial: object = None


def _gradient(logits_fn, x, y, params):
    from keras_uap.attacks import loss_gradient

    return AttackOutput(loss_gradient(logits_fn, x, y))


def _gradient_step(x, direction, params):
    flat = direction.reshape(len(x), -1)
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return np.clip(x + params.gradient_step * unit.reshape(x.shape), params.clip_min, params.clip_max)


def _plus(x, direction, params):
    return x + direction


def _fgsm(logits_fn, x, y, params):
    from keras_uap.attacks import fgsm_direction

    return AttackOutput(fgsm_direction(logits_fn, x, y, eps=params.fgsm_eps))


def _fgsm_clipped(logits_fn, x, y, params):
    from keras_uap.attacks import fgsm_direction

    return AttackOutput(fgsm_direction(logits_fn, x, y, eps=params.fgsm_eps, clip_min=params.clip_min,
                                       clip_max=params.clip_max))


def _deepfool(logits_fn, x, y, params):
    import tensorflow as tf

    from keras_uap.attacks import deepfool

    classes = int(logits_fn(tf.convert_to_tensor(x[:1], tf.float32)).shape[-1])
    x_adv, success, iterations = deepfool(
        logits_fn, x, nb_candidate=min(params.deepfool_candidates, classes), overshoot=params.deepfool_overshoot,
        max_iter=params.deepfool_max_iter, clip_min=params.clip_min, clip_max=params.clip_max, return_details=True)
    return AttackOutput(x_adv - tf.cast(x, tf.float32), np.asarray(success), np.asarray(iterations, np.int32))


def _pgd(logits_fn, x, y, params):
    from keras_uap.attacks import pgd_direction

    return AttackOutput(pgd_direction(logits_fn, x, y, eps=params.pgd_eps, eps_iter=params.pgd_eps_iter,
                                      nb_iter=params.pgd_nb_iter, clip_min=params.clip_min,
                                      clip_max=params.clip_max))


_REGISTRY = (
    Attack("gradient", "l2", True, True, _gradient, _gradient_step),
    Attack("fgsm", "linf", True, True, _fgsm, _plus),
    Attack("fgsm_clipped", "linf", False, True, _fgsm_clipped, _plus),
    Attack("deepfool", "l2", True, False, _deepfool),
    Attack("pgd", "linf", False, False, _pgd, _plus),
)
ATTACKS = {attack.name: attack for attack in _REGISTRY}
ATTACK_NAMES = tuple(ATTACKS)
PAPER_ATTACKS = tuple(a.name for a in _REGISTRY if a.in_paper)


def get_attack(name):
    """The registered attack `name`; ValueError naming the choices otherwise."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACK_NAMES)}")
    return ATTACKS[name]
