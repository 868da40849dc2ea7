"""Per-input attacks on models that return logits: DeepFool, FGSM, PGD and
the input gradient of the cross-entropy loss."""

from keras_uap.attacks.deepfool import deepfool
from keras_uap.attacks.fgsm import fgsm_direction
from keras_uap.attacks.loss_gradient import loss_gradient
from keras_uap.attacks.pgd import pgd_direction

__all__ = ["deepfool", "fgsm_direction", "loss_gradient", "pgd_direction"]
