"""Writers of small synthetic IDX files, for the reader's fault tests."""

import gzip
import os
import struct

import numpy as np

from keras_uap.data import IDX_FILES


def write_idx(path, array, magic_dtype=0x08, gz=False):
    header = struct.pack(">HBB", 0, magic_dtype, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(payload)


def fake_dataset(directory, n_train=6, n_test=4, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, array in arrays.items():
        write_idx(os.path.join(directory, IDX_FILES[key] + suffix), array, gz=gz)
    return arrays
