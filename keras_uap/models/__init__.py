"""The study's models, as in Table 2 of the paper."""

from keras_uap.models.table2 import MODELS, build_gcnn, build_model, build_stdcnn

__all__ = ["MODELS", "build_model", "build_stdcnn", "build_gcnn"]
