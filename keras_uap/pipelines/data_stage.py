"""Data stage: splits MNIST as in the paper and rotates validation and test once.

Artifacts (in the stage's output directory, npz without pickle):
- `train.npz`: `x` (n, H, W) uint8 (the source's images), unrotated
  (training rotates afresh every epoch), `y` (n,) int64.
- `validation.npz`, `test.npz`: `x` (n, H, W, 1) float32, rotated once;
  `y` (n,) int64; `angle` (n,) float32 degrees; `clip_min`, `clip_max`
  (scalars): the valid input range, which every later stage clips to
  (`value_range`).

Splits follow the paper's appendix: the first 5,000 images of the official
training file are the validation set, the remaining 55,000 the training set,
and the official 10,000 test images the test set.
"""

import os

import numpy as np

from keras_uap.data.rotation import MAX_ANGLE, rotate_images
from keras_uap.data.sources import load_raw_dataset
from keras_uap.errors import UserError
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.runner import Stage

__all__ = ["DATA_STAGE", "make_splits", "random_angles", "rotate_split", "save_split", "load_split", "value_range",
           "VALUE_RANGE"]

TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 55_000, 5_000, 10_000
# uint8 images divided by 255 lie in [0, 1].
VALUE_RANGE = (0.0, 1.0)
_ROTATE_BATCH = 2_000


def random_angles(seed, stream, n):
    """`n` angles uniform in [-180, 180] degrees, reproducible from (seed, stream)."""
    rng = np.random.default_rng([seed, stream])
    return rng.uniform(-MAX_ANGLE, MAX_ANGLE, size=n).astype(np.float32)


def rotate_split(images_uint8, angles):
    """Scales uint8 images (n, H, W) to `VALUE_RANGE` and rotates each by its
    angle: (n, H, W, 1) float32."""
    x = images_uint8.astype(np.float32)[..., None] / 255.0
    out = np.empty_like(x)
    for start in range(0, len(x), _ROTATE_BATCH):
        stop = start + _ROTATE_BATCH
        out[start:stop] = np.asarray(rotate_images(x[start:stop], angles[start:stop]))
    # Bilinear weights sum to one, but float rounding can step just outside the range.
    return np.clip(out, *VALUE_RANGE)


def make_splits(raw, train_size, validation_size, test_size):
    """Cuts the raw arrays into (train, validation, test) (images, labels) pairs."""
    available = len(raw["train_images"])
    if validation_size + train_size > available:
        raise UserError(
            f"train_size + validation_size = {train_size + validation_size} exceeds the "
            f"{available} training images"
        )
    if test_size > len(raw["test_images"]):
        raise UserError(f"test_size = {test_size} exceeds the {len(raw['test_images'])} test images")
    val = slice(0, validation_size)
    train = slice(validation_size, validation_size + train_size)
    test = slice(0, test_size)
    return (
        (raw["train_images"][train], raw["train_labels"][train]),
        (raw["train_images"][val], raw["train_labels"][val]),
        (raw["test_images"][test], raw["test_labels"][test]),
    )


def _data_stage(output_dir, dataset, seed, train_size, validation_size, test_size, source_dir=None):
    """Without `source_dir` the data comes from tensorflow-datasets."""
    raw, origin = load_raw_dataset(dataset, source_dir)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = make_splits(
        raw, train_size, validation_size, test_size
    )
    np.savez(os.path.join(output_dir, "train.npz"), x=train_x, y=train_y.astype(np.int64))
    for stream, (name, images, labels) in enumerate(
        [("validation", val_x, val_y), ("test", test_x, test_y)], start=1
    ):
        angles = random_angles(seed, stream, len(images))
        save_split(os.path.join(output_dir, f"{name}.npz"), rotate_split(images, angles), labels, *VALUE_RANGE,
                   angles=angles)
    return {"source": origin, "train": len(train_x), "validation": len(val_x), "test": len(test_x)}


DATA_STAGE = Stage(
    name="data",
    fn=_data_stage,
    version=code_version("1", __name__),
    inputs=("source_dir",),
    params=("dataset", "seed", "train_size", "validation_size", "test_size"),
)


def save_split(path, x, y, clip_min, clip_max, angles=None):
    """Writes an evaluation split in the format every model stage reads (the
    module's docstring; any (n, H, W, C) images): the data stage's splits, the
    sweep's test sets and a user study's images. `angles` None: no rotation
    is recorded (a user's images)."""
    arrays = {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.int64)}
    if angles is not None:
        arrays["angle"] = np.asarray(angles, np.float32)
    np.savez(path, **arrays, clip_min=np.float32(clip_min), clip_max=np.float32(clip_max))


def load_split(data_dir, split):
    """Loads one split of a data-stage artifact as a dict of arrays."""
    path = os.path.join(data_dir, f"{split}.npz")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found; run `keras-uap data` first")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def value_range(split):
    """(clip_min, clip_max) of a rotated split (its npz file or `load_split`'s
    dict): the range its inputs lie in and every attack and curve clips to."""
    return float(split["clip_min"]), float(split["clip_max"])
