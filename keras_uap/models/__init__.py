"""The study's models: StdCNN and GCNN of the paper's Table 2, and RotEqNet.

`MODELS` maps a name to its builder; `MODEL_SOURCES` lists the modules whose
source defines each model, so that the train stage retrains a model when,
and only when, its own code changes.
"""

from keras_uap.errors import UserError
from keras_uap.models.roteqnet import build_roteqnet
from keras_uap.models.table2 import build_gcnn, build_stdcnn

__all__ = ["MODELS", "MODEL_SOURCES", "build_model", "build_stdcnn", "build_gcnn", "build_roteqnet"]

MODELS = {"stdcnn": build_stdcnn, "gcnn": build_gcnn, "roteqnet": build_roteqnet}

_P4_LAYERS = ("keras_uap.layers.conv_args", "keras_uap.layers.base_group_conv", "keras_uap.layers.base_p4_conv",
              "keras_uap.layers.p4_ops",
              "keras_uap.layers.p4_conv_z2", "keras_uap.layers.p4_conv_p4",
              "keras_uap.layers.group_spatial_max_pooling_2d")
_VECTOR_LAYERS = ("keras_uap.layers.conv_args", "keras_uap.layers.base_group_conv", "keras_uap.layers.rot_conv",
                  "keras_uap.layers.rot_conv_tensorflow", "keras_uap.layers.disk_windows",
                  "keras_uap.layers.orientation_pooling", "keras_uap.layers.vector_ops",
                  "keras_uap.layers.vector_max_pool", "keras_uap.layers.vector_batch_norm",
                  "keras_uap.layers.vector_to_magnitude")

MODEL_SOURCES = {
    "stdcnn": ("keras_uap.models.table2",),
    "gcnn": ("keras_uap.models.table2",) + _P4_LAYERS,
    "roteqnet": ("keras_uap.models.roteqnet",) + _VECTOR_LAYERS,
}


def build_model(name, **kwargs):
    """Builds the model called `name` (one of `MODELS`)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
