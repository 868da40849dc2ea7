"""Two stages the rotation-augmentation sweep adds to the engine's: the
unrotated test set, and the measures of one model on one test set (the
sweep's report is `keras_uap.pipelines.sweep_report_stage`).

Artifacts:
- upright test set: `test.npz` in the data stage's format (`x` (n, H, W, 1)
  float32, `y`, `angle` (all 0), `clip_min`, `clip_max`): the official test
  images as they are, beside the data stage's rotated `test.npz`.
- measures: `measures.json` with the clean accuracy, the rotation
  invariance (fraction of predictions unchanged when each input is rotated
  by a seeded angle uniform in [-180, 180]) and, per attack, the top-5
  fraction of the squared singular spectrum of the unit directions.
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_uap.analysis.spectrum import singular_spectrum, spectrum_fractions
from keras_uap.data.rotation import rotate_images
from keras_uap.data.sources import load_raw_dataset
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.data_stage import VALUE_RANGE, make_splits, random_angles, rotate_split, save_split, value_range
from keras_uap.pipelines.directions_stage import load_directions
from keras_uap.pipelines.evaluation import load_evaluation_set
from keras_uap.pipelines.runner import Stage

__all__ = ["UPRIGHT_TEST_STAGE", "MEASURES_STAGE", "cell_name",
           "INVARIANCE_STREAM", "SPECTRUM_TOP"]

# The data stage draws the validation angles from stream 1 and the test angles
# from stream 2 of the run's seed; the invariance check draws its own.
INVARIANCE_STREAM = 3
SPECTRUM_TOP = 5


def cell_name(model, rotation, test_set):
    """The name of one (model, training range, test set) cell of the sweep:
    its stages' directory names and the report stage's input suffix."""
    return f"{model}-rot{rotation:g}-{test_set}"


def _upright_test_stage(output_dir, dataset, test_size, source_dir=None):
    raw, origin = load_raw_dataset(dataset, source_dir)
    _, _, (images, labels) = make_splits(raw, 0, 0, test_size)
    angles = np.zeros(len(images), np.float32)
    save_split(os.path.join(output_dir, "test.npz"), rotate_split(images, angles), labels, *VALUE_RANGE, angles=angles)
    return {"source": origin, "test": int(len(images))}


UPRIGHT_TEST_STAGE = Stage(
    name="upright_test",
    fn=_upright_test_stage,
    version=code_version("1", __name__),
    inputs=("source_dir",),
    params=("dataset", "test_size"),
)


def _predict_all(predict_fn, x, batch_size):
    return np.concatenate([predict_fn(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


def _measures_stage(output_dir, model_file, test_data, seed, batch_size=5000, **directions_files):
    with np.load(test_data, allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
        clip_min, clip_max = value_range(f)
    evaluation = load_evaluation_set(model_file, x, y, None, seed, batch_size)
    angles = random_angles(seed, INVARIANCE_STREAM, len(x))
    turned = np.concatenate([np.clip(np.asarray(rotate_images(x[i:i + batch_size], angles[i:i + batch_size])),
                                     clip_min, clip_max) for i in range(0, len(x), batch_size)])
    unchanged = _predict_all(evaluation.predict_fn, turned, batch_size) == evaluation.clean
    spectrum = {}
    for name, path in sorted(directions_files.items()):
        singular_values, _ = singular_spectrum(load_directions(os.path.dirname(path))["directions"], top=0)
        spectrum[name.removeprefix("directions_")] = {
            f"top{SPECTRUM_TOP}_fraction": spectrum_fractions(singular_values, (SPECTRUM_TOP,))[str(SPECTRUM_TOP)]}
    result = {"n_test": int(len(x)), "accuracy": 1.0 - evaluation.clean_error_rate,
              "invariance": float(np.mean(unchanged)), "spectrum": spectrum}
    with open(os.path.join(output_dir, "measures.json"), "w") as f:
        json.dump(result, f)
    return {k: result[k] for k in ("accuracy", "invariance")}


MEASURES_STAGE = Stage(
    name="sweep_measures",
    fn=_measures_stage,
    version=code_version("1", __name__),
    inputs=("model_file", "test_data", "directions_*"),
    params=("seed",),
    settings=("batch_size",),
)
