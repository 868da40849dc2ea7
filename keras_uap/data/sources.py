"""Where the raw data comes from: a local IDX directory or TensorFlow Datasets.

Order, first that applies: an explicit `data_dir`; the environment variable
`KERAS_UAP_DATA_DIR`; for fashion_mnist the Debian package location; else
`tfds.load`, which downloads when online or reads a prepared TFDS data dir.
"""

import os
import socket

import numpy as np

from keras_uap.data.idx import read_idx_dataset
from keras_uap.errors import DataError, UserError

__all__ = ["DATASETS", "DATA_DIR_ENV", "resolve_data_dir", "load_raw_dataset", "tfds_download_blocked"]

DATASETS = ("mnist", "fashion_mnist")
DATA_DIR_ENV = "KERAS_UAP_DATA_DIR"
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
_IDX_NAMES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
              "t10k-labels-idx1-ubyte.gz")


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


# Where TFDS downloads MNIST and Fashion-MNIST (and most image sets) from.
TFDS_DOWNLOAD_HOST = "storage.googleapis.com"


def tfds_download_blocked(name):
    """Why `tfds.load(name)` cannot work now, or None.

    Offline, `tfds.load` retries every file for minutes before it fails; when
    the set is not prepared in TFDS's data directory, one name lookup of the
    download host tells at once. None also when `name` is unknown to TFDS
    (`tfds.load` then says so itself).
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
        if builder.is_prepared():
            return None
    except Exception:  # unknown name, bad config: left to tfds.load's own message
        return None
    try:
        socket.getaddrinfo(TFDS_DOWNLOAD_HOST, 443)
    except OSError as exc:
        return (f"it is not prepared in {builder.data_dir} and {TFDS_DOWNLOAD_HOST} cannot be reached "
                f"({exc.strerror or exc})")
    return None


def _load_tfds(dataset):
    import tensorflow_datasets as tfds

    blocked = tfds_download_blocked(dataset)
    if blocked:
        raise DataError(f"cannot obtain {dataset} through tensorflow-datasets: {blocked}; offline, pass "
                        f"--data-dir DIR (or set {DATA_DIR_ENV}=DIR) where DIR holds {_IDX_NAMES}")
    try:
        splits = tfds.load(dataset, split=["train", "test"], batch_size=-1, as_supervised=True)
    except Exception as exc:  # TFDS raises many kinds when offline or misconfigured.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot obtain {dataset} through tensorflow-datasets ({reason[:160]}); offline, pass "
            f"--data-dir DIR (or set {DATA_DIR_ENV}=DIR) where DIR holds {_IDX_NAMES}"
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
