"""keras-uap: universal adversarial perturbations of equivariant networks."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ info lines drown the CLI's own output; users can still override.
_TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in _os.environ
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The public API (keras_uap.api) imports TensorFlow: load it on first use, so
# that `import keras_uap` (and the CLI's --help) stays fast.
_API_NAMES = ("svd_universal_perturbation", "attack_directions", "fooling_curve", "load_classifier", "load_images")


def __getattr__(name):
    if name in _API_NAMES:
        from keras_uap import api

        return getattr(api, name)
    raise AttributeError(f"module 'keras_uap' has no attribute {name!r}")
