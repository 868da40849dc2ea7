"""keras_uap.api on a model that is not the paper's: 32x32x3 colour inputs,
4 classes, loaded as a keras.Model, a .keras file and a SavedModel; data
loading and its one-line errors; and the mirrored run against one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers

from idx_helpers import write_idx
from small_models import strided_cnn

from keras_uap.method import random_unit_vectors
from keras_uap.api import (
    ArgumentError,
    BatchRunner,
    attack_directions,
    check_compatible,
    default_sign_norms,
    fooling_curve,
    load_classifier,
    load_images,
    make_strategy,
    svd_universal_perturbation,
    universal_from_directions,
)
from keras_uap.data import IDX_FILES
from keras_uap.errors import UserError

SHAPE = (32, 32, 3)
CLASSES = 4
SAMPLE = 64
HERE = os.path.dirname(os.path.abspath(__file__))


def _images(n, seed):
    """Class k is a fixed blocky colour pattern of contrast 0.15 under pixel
    noise of std 0.15: learnable in seconds, with a shared direction that
    fools the model (towards another class's pattern)."""
    patterns = np.random.default_rng(0).uniform(-1, 1, (CLASSES, 8, 8, 3)).repeat(4, axis=1).repeat(4, axis=2)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = np.clip(0.5 + 0.15 * patterns[y] + 0.15 * rng.standard_normal((n, *SHAPE)), 0.0, 1.0)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return _images(1000, 1), _images(300, 2)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A tiny CNN trained for ~2 s, saved as .keras and exported as a
    SavedModel; the same network with a softmax on top, saved both ways."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)
    model = strided_cnn(SHAPE, CLASSES, widths=(8, 8))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
    assert accuracy > 0.9, f"the test model only reached accuracy {accuracy}"
    softmax = keras.Sequential([model, layers.Softmax()])
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, net in (("logits", model), ("softmax", softmax)):
        paths[name + ".keras"] = str(root / f"{name}.keras")
        paths[name + "_saved_model"] = str(root / f"{name}_saved_model")
        net.save(paths[name + ".keras"])
        net.export(paths[name + "_saved_model"], format="tf_saved_model", verbose=False)
    return model, paths


def _one_line_error(excinfo, *phrases):
    message = str(excinfo.value)
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, message


# --- Loading any classifier ----------------------------------------------------


def test_every_format_gives_the_same_classifier(saved, data):
    model, paths = saved
    x = data[1][0][:16]
    reference = model(x, training=False).numpy()
    for source in (model, paths["logits.keras"], paths["logits_saved_model"]):
        classifier = load_classifier(source)
        assert classifier.input_shape == SHAPE
        assert classifier.num_classes == CLASSES
        assert classifier.output == "logits"
        np.testing.assert_allclose(classifier.logits_fn(tf.constant(x)).numpy(), reference, atol=1e-5)
    assert load_classifier(classifier) is classifier


def test_softmax_output_is_detected_as_probabilities(saved, data):
    model, paths = saved
    x = tf.constant(data[1][0][:16])
    log_probs = tf.nn.log_softmax(model(x, training=False)).numpy()
    for source in (paths["softmax.keras"], paths["softmax_saved_model"]):
        classifier = load_classifier(source)
        assert classifier.output == "probabilities", source
        np.testing.assert_allclose(classifier.logits_fn(x).numpy(), log_probs, atol=1e-4)
    assert load_classifier(paths["softmax_saved_model"], output="logits").output == "logits"
    assert load_classifier(paths["logits_saved_model"], output="probabilities").output == "probabilities"


# --- The universal perturbation and its fooling curve ----------------------------


def test_svd_perturbation_fools_better_than_random_directions(saved, data):
    _, paths = saved
    x, y = data[1]
    results = [svd_universal_perturbation(paths[key], x, y, attack="deepfool", sample_size=SAMPLE, batch_size=32)
               for key in ("logits.keras", "logits_saved_model")]
    for result in results:
        v = result.perturbation
        assert v.shape == SHAPE and v.dtype == np.float32
        assert abs(np.linalg.norm(v) - 1.0) < 1e-5
        assert np.all(np.diff(result.singular_values) <= 1e-9)
        assert len(result.sample_indices) == SAMPLE
        assert np.all(np.diff(result.sample_indices) > 0)
    np.testing.assert_allclose(results[0].perturbation, results[1].perturbation, atol=1e-4)

    eps = [0.0, 2.0, 4.0, 8.0]
    svd = fooling_curve(paths["logits.keras"], x, y, results[0].perturbation, eps)
    random = [fooling_curve(paths["logits.keras"], x, y, v.reshape(SHAPE), eps).error_rate
              for v in random_unit_vectors(int(np.prod(SHAPE)), range(3))]
    assert svd.error_rate[0] == svd.clean_error_rate and svd.fooling_rate[0] == 0.0
    assert svd.error_rate[-1] > np.max(random) + 0.3, (svd.error_rate, random)


@pytest.mark.parametrize("attack", ["gradient", "fgsm", "custom"])
def test_other_attacks_agree_across_formats(saved, data, attack):
    model, paths = saved
    x, y = data[1]
    if attack == "custom":
        def attack(logits_fn, xb, yb):  # noqa: F811 (the callable form of the argument)
            return tf.sign(xb - 0.5)
    sources = [model, paths["logits_saved_model"]]
    if attack != "fgsm":
        # Log-probabilities have the logits' cross-entropy gradient (up to
        # rounding, which can flip the sign of a near-zero FGSM component).
        sources.append(paths["softmax.keras"])
    results = [svd_universal_perturbation(source, x, None, attack=attack, sample_size=SAMPLE, seed=3).perturbation
               for source in sources]
    assert results[0].shape == SHAPE
    assert abs(np.linalg.norm(results[0]) - 1.0) < 1e-5
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-4)


def _error_area(model, x, y, v, norms):
    """The area under the error-rate curve of v on (x, y) over [0, *norms], by trapezoids."""
    rates = [float(np.mean(np.argmax(model(tf.constant(np.clip(x + e * v, 0.0, 1.0)), training=False), -1) != y))
             for e in (0.0, *norms)]
    widths = np.diff((0.0, *norms))
    return float(np.sum(widths * (np.array(rates[1:]) + np.array(rates[:-1])) / 2))


def test_sign_misclassifies_more_of_the_sample_over_the_norms(saved, data):
    model, _ = saved
    x, y = data[1][0][:SAMPLE], data[1][1][:SAMPLE]
    directions = attack_directions(model, x, y, attack="fgsm")
    default, _ = universal_from_directions(model, directions, x, y)
    explicit, _ = universal_from_directions(model, directions, x, y, sign_norms=default_sign_norms(SHAPE))
    np.testing.assert_array_equal(default, explicit)
    for norms in ((0.5,), (2.0, 4.0), default_sign_norms(SHAPE)):
        v, _ = universal_from_directions(model, directions, x, y, sign_norms=norms)
        assert _error_area(model, x, y, v, norms) >= _error_area(model, x, y, -v, norms) - 1e-9, norms
    for bad in ((0.0,), (-1.0,), (float("nan"),), (), "abc"):
        with pytest.raises(ArgumentError):
            universal_from_directions(model, directions, x, y, sign_norms=bad)


def test_fooling_curve_is_batch_size_independent(saved, data):
    model, _ = saved
    x, y = data[1]
    v = np.random.default_rng(5).standard_normal(SHAPE)
    for norm, eps in (("l2", [0.0, 3.0, 30.0]), ("linf", [0.0, 0.1, 0.5])):
        big = fooling_curve(model, x, y, v, eps, norm=norm)
        small = fooling_curve(model, x, y, v, eps, norm=norm, batch_size=7)
        np.testing.assert_array_equal(big.error_rate, small.error_rate)
        np.testing.assert_array_equal(big.fooling_rate, small.fooling_rate)
        assert big.fooling_rate[0] == 0.0 and big.fooling_rate[-1] > 0.0
    unlabelled = fooling_curve(model, x, None, v, [30.0])
    np.testing.assert_array_equal(unlabelled.error_rate, unlabelled.fooling_rate)


def test_attack_directions_shape_is_checked(saved, data):
    model, _ = saved
    x, y = data[1]
    with pytest.raises(ArgumentError) as excinfo:
        attack_directions(model, x[:4], y[:4], attack=lambda f, xb, yb: tf.zeros([len(xb), 3]))
    _one_line_error(excinfo, "shape")


# --- Loading data ------------------------------------------------------------------


def test_load_images_from_npz_and_idx(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (5, 20, 24), dtype=np.uint8)
    np.savez(tmp_path / "gray.npz", x=gray, y=np.arange(5))
    x, y = load_images(tmp_path / "gray.npz", limit=3)
    assert x.shape == (3, 20, 24, 1) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[..., 0], gray[:3] / 255.0, atol=1e-7)

    colour = np.random.default_rng(1).uniform(size=(4, 9, 9, 3)).astype(np.float64)
    np.savez(tmp_path / "split.npz", x_test=colour, y_test=np.array([0.0, 1.0, 2.0, 1.0]))
    x, y = load_images(str(tmp_path / "split.npz"))
    np.testing.assert_allclose(x, colour.astype(np.float32))
    assert y.tolist() == [0, 1, 2, 1]

    for key, array in (("test_images", gray), ("test_labels", np.arange(5) + 7)):
        write_idx(str(tmp_path / IDX_FILES[key]), array)
    x, y = load_images(str(tmp_path), split="test")
    assert x.shape == (5, 20, 24, 1) and y.tolist() == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("arrays,phrases", [
    ({"x": np.zeros((3, 8, 8))}, ["no array 'y'", "holds: x"]),
    ({"x": np.zeros((3, 8, 8)), "y": np.zeros(4, int)}, ["3 images but 4 labels"]),
    ({"x": np.zeros((3, 8)), "y": np.zeros(3, int)}, ["(N, H, W) or (N, H, W, C)"]),
    ({"x": np.full((2, 4, 4, 1), np.nan), "y": np.zeros(2, int)}, ["NaN"]),
    ({"x": np.zeros((2, 4, 4)), "y": np.array([0, -1])}, ["labels must be >= 0"]),
    ({"x": np.zeros((2, 4, 4)), "y": np.array([0.5, 1.0])}, ["labels must be integers"]),
    ({"x": np.full((2, 4, 4), 300), "y": np.zeros(2, int)}, ["0..255"]),
])
def test_bad_npz_is_a_one_line_user_error(tmp_path, arrays, phrases):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError) as excinfo:
        load_images(path)
    _one_line_error(excinfo, str(path), *phrases)


def test_bad_sources_are_one_line_user_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "garbage.keras").write_text("not a model")
    (tmp_path / "garbage.npz").write_bytes(b"\x80\x04not an archive")
    np.savez(tmp_path / "plain.npz", x=np.zeros((2, 4, 4)), y=np.zeros(2, int))
    cases = [
        (lambda: load_images(tmp_path / "missing.npz"), ["data not found"]),
        (lambda: load_images(tmp_path / "notes.txt"), ["unknown data format"]),
        (lambda: load_images(tmp_path), ["file not found"]),
        (lambda: load_images("no_such_dataset_xyz"), ["tensorflow-datasets", ".npz"]),
        (lambda: load_classifier(tmp_path / "missing.keras"), ["model not found"]),
        (lambda: load_classifier(tmp_path / "notes.txt"), ["unknown model format"]),
        (lambda: load_classifier(tmp_path), ["not a TF SavedModel directory"]),
        (lambda: load_classifier(tmp_path / "garbage.keras"), ["not a .keras file", "zip archive"]),
        (lambda: load_images(tmp_path / "garbage.npz"), ["not an .npz archive"]),
        (lambda: load_images(tmp_path / "plain.npz", split="train"), ["no x_train/y_train", "holds: x, y"]),
        (lambda: make_strategy("tpu"), ["unknown strategy 'tpu'", "none, mirrored"]),
    ]
    for call, phrases in cases:
        with pytest.raises(UserError) as excinfo:
            call()
        _one_line_error(excinfo, *phrases)


def test_data_that_does_not_fit_the_model_is_rejected(saved, data):
    model, _ = saved
    x, y = data[1]
    classifier = load_classifier(model)
    with pytest.raises(UserError) as excinfo:
        check_compatible(classifier, x[:5], np.array([0, 1, 2, 3, 4]))
    _one_line_error(excinfo, "label 4 is out of range", "4 classes")
    with pytest.raises(UserError) as excinfo:
        svd_universal_perturbation(classifier, np.zeros((5, 28, 28, 1), np.float32), attack="gradient")
    _one_line_error(excinfo, "images are 28x28x1", "expects 32x32x3")
    with pytest.raises(ArgumentError) as excinfo:
        svd_universal_perturbation(classifier, x, y, attack="cw")
    _one_line_error(excinfo, "unknown attack 'cw'")
    with pytest.raises(ValueError):
        fooling_curve(classifier, x, y, np.ones(SHAPE), eps=[-1.0])


def test_bad_arguments_are_one_line_errors_before_any_attack(saved, data):
    model, _ = saved
    x, y = data[1]
    x, y = x[:6], y[:6]
    classifier = load_classifier(model)
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    directions = np.zeros_like(x)
    cases = [
        (lambda: attack_directions(classifier, x, None, attack="gradient"), ["`y` is required"]),
        (lambda: attack_directions(classifier, x, y[:4], attack="gradient"), ["same length", "6 and 4"]),
        (lambda: attack_directions(classifier, x[:0], y[:0], attack="gradient"), ["holds no inputs"]),
        (lambda: attack_directions(classifier, x, y + 0.5, attack="gradient"), ["labels must be integers"]),
        (lambda: attack_directions(classifier, x, np.full(6, 9), attack="gradient"), ["label 9 is out of range"]),
        (lambda: svd_universal_perturbation(classifier, nan, y, attack="deepfool"), ["NaN"]),
        (lambda: svd_universal_perturbation(classifier, np.round(255 * x).astype(np.uint8), y),
         ["outside clip_min 0 / clip_max 1", "divide them by 255"]),
        (lambda: fooling_curve(classifier, 255 * x, y, np.ones(SHAPE), eps=[1.0]), ["outside clip_min"]),
        (lambda: svd_universal_perturbation(classifier, x, y, seed=-1), ["`seed` must be an int >= 0"]),
        (lambda: svd_universal_perturbation(classifier, x, y, strategy="mirrored"), ["make_strategy('mirrored')"]),
        (lambda: svd_universal_perturbation(classifier, None), ["`x` must be an array"]),
        (lambda: fooling_curve(classifier, x, y, "abc", eps=[1.0]), ["`perturbation` must be an array"]),
        (lambda: universal_from_directions(classifier, directions, x, y), ["every direction is zero"]),
        (lambda: universal_from_directions(classifier, np.full_like(x, np.nan), x, y), ["`directions` holds NaN"]),
        (lambda: default_sign_norms(SHAPE, 1.0, 0.0), ["`clip_min` must be a finite number below"]),
        (lambda: load_images(None), ["`source` must be a path"]),
    ]
    for call, phrases in cases:
        with pytest.raises(UserError) as excinfo:
            call()
        _one_line_error(excinfo, *phrases)


# --- Package surface and the mirrored strategy ------------------------------------


def _python(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.dirname(HERE))


def test_package_exports_the_api_lazily():
    import keras_uap
    from keras_uap import api

    assert keras_uap.svd_universal_perturbation is api.svd_universal_perturbation
    assert keras_uap.load_images is api.load_images
    assert keras_uap.attack_directions is api.attack_directions
    done = _python("-c", "import sys, keras_uap; print('tensorflow' in sys.modules)")
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def test_run_batches_takes_at_most_one_batch_per_replica():
    runner = BatchRunner(lambda t: (2.0 * t, tf.reduce_sum(t, axis=1)), compiled=False)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    [(doubled, sums)] = runner.run_batches([(x,)])
    assert np.array_equal(doubled, 2 * x) and np.array_equal(sums, [1.0, 5.0, 9.0])
    with pytest.raises(ValueError, match=r"at most one batch per local replica \(1\)"):
        runner.run_batches([(x,), (x,)])


def test_mirrored_strategy_matches_one_device():
    """Two logical CPU replicas: labels, every attack's directions, the SVD
    perturbation and the fooling curves equal the single-device ones."""
    done = _python(os.path.join(HERE, "api_mirrored_check.py"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["none"] is None
    assert len(result["max_abs_diff"]) == 16
    for name, diff in result["max_abs_diff"].items():
        assert diff <= 1e-5, (name, diff)
    # Whole batches per replica: bitwise the one-device results.
    assert result["max_abs_diff"]["batches"] == 0.0
