"""`load_stage_model`: one set of compiled functions per model file version,
shared by the stages of a process, computing what the model computes."""

import os

import keras
import numpy as np

from keras_uap.pipelines.stage_model import load_stage_model
from small_models import strided_cnn


def _saved(path, seed):
    keras.utils.set_random_seed(seed)
    model = strided_cnn((12, 12, 1), 10)
    model.save(path)
    return model


def test_one_stage_model_per_file_version(tmp_path):
    path = str(tmp_path / "model.keras")
    first = _saved(path, 0)
    shared = load_stage_model(path)
    assert load_stage_model(os.path.join(str(tmp_path), ".", "model.keras")) is shared  # same file
    x = np.random.default_rng(0).random((5, 12, 12, 1), dtype=np.float32)
    np.testing.assert_array_equal(shared.logits(x).numpy(), first(x, training=False).numpy())
    np.testing.assert_array_equal(shared.labels(x).numpy(), np.argmax(first(x, training=False).numpy(), axis=1))

    # A retrained export at the same path (a new file: another size or modification time) loads afresh.
    os.remove(path)
    second = _saved(path, 1)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    reloaded = load_stage_model(path)
    assert reloaded is not shared
    np.testing.assert_array_equal(reloaded.logits(x).numpy(), second(x, training=False).numpy())
    assert not np.array_equal(reloaded.logits(x).numpy(), shared.logits(x).numpy())
