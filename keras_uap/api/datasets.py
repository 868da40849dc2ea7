"""Images and labels from an `.npz` file, an IDX directory or TensorFlow Datasets.

Every source comes back the same way: float32 images (N, H, W, C) and int64
labels (N,), checked so that a bad file fails with a one-line `UserError`
before any model runs.
"""

import os
import zipfile

import numpy as np

from keras_uap.api._checks import ArgumentError, check_positive_int
from keras_uap.data.idx import IDX_FILES, find_idx_file, read_idx
from keras_uap.data.sources import tfds_download_blocked
from keras_uap.errors import DataError, UserError

__all__ = ["load_images", "check_compatible", "prepare_images", "prepare_labels"]

_SPLITS = ("train", "test")


def load_images(source, split="test", limit=None):
    """Loads a labelled image set.

    Args:
        source: one of
            - a path to an `.npz` file with arrays `x_<split>` and
              `y_<split>` (the layout of `keras.datasets` caches), or with
              `x` (images, (N, H, W) or (N, H, W, C)) and `y` (labels, (N,))
              holding one split, read for the default split "test" only;
            - a directory of IDX files named as MNIST's
              (`t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`
              for "test", `train-...` for "train"), of any image size;
            - the name of a TensorFlow Datasets image classification set,
              loaded with `as_supervised=True`.
        split: "train" or "test" for IDX directories; any TFDS split
            ("test", "train[:10%]") for TFDS; picks `x_<split>` in an `.npz`.
        limit: keep only the first `limit` examples (None keeps all).

    Returns:
        (x, y): float32 images (N, H, W, C) and int64 labels (N,). Integer
        images (uint8 and the like, 0..255) are divided by 255 into [0, 1];
        float images are kept as they are (their range is the caller's
        `clip_min`/`clip_max`). A missing channel axis is added.

    Raises:
        DataError: a missing, unreadable or malformed source: no images or
            labels, lengths that differ, images not of rank 3 or 4, NaN or
            infinite values, integer images outside 0..255, labels that are
            negative or not integers, or a TFDS set that cannot be obtained.
        ArgumentError: a bad `split` or `limit`.
    """
    limit = check_positive_int("limit", limit, allow_none=True)
    if not isinstance(split, str) or not split:
        raise ArgumentError(f"`split` must be a non-empty string. Received: split={split!r}")
    if not isinstance(source, (str, os.PathLike)):
        raise ArgumentError(f"`source` must be a path or a TFDS name. Received: {type(source).__name__}")
    source = os.fspath(source)
    if os.path.isdir(source):
        x, y = _load_idx_dir(source, split)
    elif os.path.isfile(source):
        if not source.endswith(".npz"):
            raise DataError(f"{source}: unknown data format; expected an .npz file, an IDX directory "
                            "or a TensorFlow Datasets name")
        x, y = _load_npz(source, split)
    elif source.endswith(".npz") or os.sep in source or source.startswith("."):
        raise DataError(f"{source}: data not found")
    else:
        x, y = _load_tfds(source, split, limit)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return _validated(x, y, source)


def _load_npz(path, split):
    # np.load reads a non-zip file as a pickle, and its error then suggests allow_pickle.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive (an .npz is a zip of .npy arrays, as np.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if f"x_{split}" in names or "x" not in names:
                keys = [f"x_{split}", f"y_{split}"]
            elif split != "test":
                raise DataError(f"{path}: no x_{split}/y_{split} in the .npz (it holds: {', '.join(names)}); "
                                "its x and y are read as the split \"test\", the default")
            else:
                keys = ["x", "y"]
            for key, what in zip(keys, ("images", "labels")):
                if key not in names:
                    raise DataError(f"{path}: no array {key[0]!r} ({what}) in the .npz; it holds: "
                                    f"{', '.join(names) or 'nothing'}")
            return archive[keys[0]], archive[keys[1]]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npz ({str(exc).strip().splitlines()[0][:160]})") from None


def _read_images(path):
    try:
        return read_idx(path, 3)
    except DataError:
        # Colour IDX files hold (N, H, W, C).
        return read_idx(path, 4)


def _load_idx_dir(directory, split):
    if split not in _SPLITS:
        raise ArgumentError(f"unknown split {split!r} for an IDX directory; choose one of: {', '.join(_SPLITS)}")
    images = _read_images(find_idx_file(directory, IDX_FILES[f"{split}_images"]))
    labels = read_idx(find_idx_file(directory, IDX_FILES[f"{split}_labels"]), 1)
    return images, labels


def _load_tfds(name, split, limit):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"{name}: not a file or directory, and tensorflow-datasets is not installed") from None
    tfds_split = f"{split}[:{limit}]" if limit is not None and "[" not in split else split
    blocked = tfds_download_blocked(name)
    if blocked:
        raise DataError(f"{name}: not a file or directory, and cannot be loaded from tensorflow-datasets: "
                        f"{blocked}; offline, save the images as an .npz with arrays x and y")
    try:
        x, y = tfds.load(name, split=tfds_split, as_supervised=True, batch_size=-1)
    except Exception as exc:  # TFDS raises many kinds when offline, unknown or misconfigured.
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name}: not a file or directory, and cannot be loaded from tensorflow-datasets "
                        f"({reason}); offline, save the images as an .npz with arrays x and y") from None
    return np.asarray(x), np.asarray(y)


def prepare_images(x, source="x"):
    """Images as float32 (N, H, W, C): integers 0..255 scaled to [0, 1], floats kept."""
    x = np.asarray(x)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{source}: images must be numbers; got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{source}: images must have shape (N, H, W) or (N, H, W, C); got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{source}: integer images must lie in 0..255; got {x.min()}..{x.max()}")
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{source}: images contain NaN or infinite values")
    return x


def prepare_labels(y, source="y"):
    """Labels as int64 (N,): (N, 1) is flattened; floats must be whole numbers."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{source}: labels must have shape (N,); got {y.shape}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{source}: labels must be integers; got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)):
            raise DataError(f"{source}: labels contain NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise DataError(f"{source}: labels must be integers; got non-integer values such as "
                            f"{y[y != np.round(y)][0]!r}")
    if y.size and y.min() < 0:
        raise DataError(f"{source}: labels must be >= 0; got {int(y.min())}")
    return y.astype(np.int64)


def _validated(x, y, source):
    x = prepare_images(x, source)
    y = prepare_labels(y, source)
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} images but {len(y)} labels")
    if not len(x):
        raise DataError(f"{source}: no images")
    return x, y


def check_compatible(classifier, x, y=None):
    """Checks that `x` and `y` fit `classifier` (a `Classifier`).

    Raises:
        UserError: images whose shape differs from the model's input shape
            (dimensions the model leaves open match anything), or labels
            outside [0, num_classes).
    """
    shape = tuple(np.shape(x)[1:])
    expected = tuple(classifier.input_shape)
    if len(shape) != len(expected) or any(e is not None and e != s for s, e in zip(shape, expected)):
        show = "x".join("?" if d is None else str(d) for d in expected)
        raise UserError(f"images are {'x'.join(map(str, shape))} but {classifier.source} expects "
                        f"{show} inputs")
    if y is not None and np.size(y):
        top = int(np.max(y))
        if top >= classifier.num_classes:
            raise UserError(f"label {top} is out of range: {classifier.source} has {classifier.num_classes} "
                            f"classes (labels 0-{classifier.num_classes - 1})")
