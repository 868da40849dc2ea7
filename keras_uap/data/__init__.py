"""Reading MNIST-format data and rotating images."""

from keras_uap.data.idx import IDX_FILES, read_idx, read_idx_dataset
from keras_uap.data.rotation import rotate_images
from keras_uap.data.sources import load_raw_dataset

__all__ = ["IDX_FILES", "read_idx", "read_idx_dataset", "rotate_images", "load_raw_dataset"]
