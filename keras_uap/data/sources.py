"""Where the raw data comes from: a local IDX directory or TensorFlow Datasets.

Order, first that applies: an explicit `data_dir`; the environment variable
`KERAS_UAP_DATA_DIR`; for fashion_mnist the Debian package location; else
`tfds.load`, which downloads when online or reads a prepared TFDS data dir.
"""

import os

import numpy as np

from keras_uap.data.idx import read_idx_dataset
from keras_uap.errors import DataError, UserError

__all__ = ["DATASETS", "DATA_DIR_ENV", "resolve_data_dir", "load_raw_dataset"]

DATASETS = ("mnist", "fashion_mnist")
DATA_DIR_ENV = "KERAS_UAP_DATA_DIR"
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def resolve_data_dir(dataset, data_dir=None):
    """The local IDX directory to read, or None to fall back to TFDS."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir:
        return str(data_dir)
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    if dataset == "fashion_mnist" and os.path.isdir(DEBIAN_FASHION_MNIST):
        return DEBIAN_FASHION_MNIST
    return None


def _load_tfds(dataset):
    import tensorflow_datasets as tfds

    try:
        splits = tfds.load(dataset, split=["train", "test"], batch_size=-1, as_supervised=True)
    except Exception as exc:  # TFDS raises many kinds when offline or misconfigured.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot obtain {dataset} through tensorflow-datasets ({reason[:160]}); offline, pass "
            f"--data-dir DIR (or set {DATA_DIR_ENV}=DIR) where DIR holds train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
        ) from None
    (train_x, train_y), (test_x, test_y) = [(np.asarray(x)[..., 0], np.asarray(y)) for x, y in splits]
    return {
        "train_images": train_x.astype(np.uint8),
        "train_labels": train_y.astype(np.uint8),
        "test_images": test_x.astype(np.uint8),
        "test_labels": test_y.astype(np.uint8),
    }


def load_raw_dataset(dataset="mnist", data_dir=None):
    """Loads the raw uint8 train and test images and labels of `dataset`.

    Returns:
        (arrays, source): arrays as in `read_idx_dataset`, and a string naming
        where they came from (a directory, or "tfds:<name>").
    """
    local = resolve_data_dir(dataset, data_dir)
    if local is not None:
        return read_idx_dataset(local), os.path.abspath(local)
    return _load_tfds(dataset), f"tfds:{dataset}"
