"""keras-uap: universal adversarial perturbations of equivariant networks."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ info lines drown the CLI's own output; users can still override.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
