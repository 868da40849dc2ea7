"""The study's models: StdCNN and GCNN of the paper's Table 2, and RotEqNet.

`MODELS` maps a name to its builder; the train stage's code version follows
each builder's imports, so a model is retrained when, and only when, code it
is built from changes.
"""

from keras_uap.errors import UserError
from keras_uap.models.roteqnet import build_roteqnet
from keras_uap.models.table2 import build_gcnn, build_stdcnn

__all__ = ["MODELS", "build_model", "build_stdcnn", "build_gcnn", "build_roteqnet"]

MODELS = {"stdcnn": build_stdcnn, "gcnn": build_gcnn, "roteqnet": build_roteqnet}


def build_model(name, **kwargs):
    """Builds the model called `name` (one of `MODELS`)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
