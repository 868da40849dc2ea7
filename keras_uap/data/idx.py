"""Reader for the IDX files of MNIST and Fashion-MNIST, with validation.

Format (LeCun et al.): a big-endian header of two zero bytes, a type code
(0x08 for unsigned bytes), the number of dimensions, one uint32 per dimension,
then the data. Images are 3-dimensional (n, 28, 28), labels 1-dimensional (n,).
"""

import gzip
import os
import struct

import numpy as np

from keras_uap.errors import DataError

__all__ = ["IDX_FILES", "read_idx", "read_idx_dataset", "find_idx_file"]

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08
_IMAGE_SHAPE = (28, 28)
_NUM_CLASSES = 10


def find_idx_file(data_dir, stem):
    """The path of `stem` or `stem.gz` in `data_dir` (plain file first)."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"{os.path.join(data_dir, stem)}[.gz]: file not found")


def _read_bytes(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def read_idx(path, ndim):
    """Reads one IDX file of unsigned bytes with `ndim` dimensions, checking
    its magic number and that its size matches its header."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated (no IDX header)")
    zero, dtype, file_ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or file_ndim != ndim:
        magic = struct.unpack(">I", raw[:4])[0]
        expected = (_UBYTE << 8) | ndim
        raise DataError(f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x{expected:08x})")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated (incomplete IDX header)")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header_size])
    expected_bytes = int(np.prod(shape))
    got = len(raw) - header_size
    if got != expected_bytes:
        kind = "truncated" if got < expected_bytes else "corrupt (trailing bytes)"
        raise DataError(f"{path}: {kind}: header says {shape} = {expected_bytes} bytes of data, file has {got}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_split(data_dir, images_key, labels_key):
    images_path = find_idx_file(data_dir, IDX_FILES[images_key])
    labels_path = find_idx_file(data_dir, IDX_FILES[labels_key])
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != _IMAGE_SHAPE:
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected {_IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0-{_NUM_CLASSES - 1}")
    return images, labels


def read_idx_dataset(data_dir):
    """Reads the four standard IDX files of `data_dir`.

    Returns:
        dict with `train_images` (60000, 28, 28) uint8, `train_labels` (60000,),
        `test_images` (10000, 28, 28) uint8 and `test_labels` (10000,).
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data directory not found")
    train_images, train_labels = _read_split(data_dir, "train_images", "train_labels")
    test_images, test_labels = _read_split(data_dir, "test_images", "test_labels")
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
