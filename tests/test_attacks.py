"""Attacks: DeepFool against foolbox 3 on a small model trained on real MNIST,
FGSM directions against the loss gradient, the loss gradient against finite
differences, and DeepFool's behaviour on degenerate inputs and models."""

import re

import numpy as np
import pytest
from small_models import train_small_cnn
import tensorflow as tf

import keras
from keras import layers

from keras_uap.attacks import deepfool, fgsm_direction, loss_gradient

N_TRAIN = 2000
N_ATTACK = 150
EPS = 0.3


@pytest.fixture(scope="module")
def trained(mnist_raw):
    """A small StdCNN-like model, 2 epochs on 2,000 real MNIST images (a few
    seconds), and up to N_ATTACK test images that it classifies correctly."""
    model = train_small_cnn(mnist_raw, N_TRAIN)

    x_test = mnist_raw["test_images"][: 2 * N_ATTACK, :, :, None].astype("float32") / 255.0
    y_test = mnist_raw["test_labels"][: 2 * N_ATTACK].astype("int64")
    predicted = np.argmax(model.predict(x_test, verbose=0), axis=1)
    correct = np.flatnonzero(predicted == y_test)
    assert correct.size >= 0.8 * x_test.shape[0], f"the test model only learned {correct.size} of {len(x_test)}"
    keep = correct[:N_ATTACK]
    return model, x_test[keep], y_test[keep]


def _l2(d):
    return np.linalg.norm(np.asarray(d).reshape(len(d), -1), axis=1)


# --- DeepFool against foolbox -------------------------------------------------


@pytest.mark.mnist
def test_deepfool_agrees_with_foolbox_l2_deepfool(trained):
    import foolbox as fb  # a test dependency ([test] extra); here so the other tests run without it

    model, x, _ = trained
    x_adv, success, iterations = deepfool(model, x, return_details=True)
    x_adv, success, iterations = x_adv.numpy(), success.numpy(), iterations.numpy()

    # foolbox stops on the labels it is given; our DeepFool attacks the model's
    # own clean prediction. They coincide here (x is correctly classified), but
    # pass the predictions so both attack the same thing whatever the labels.
    labels = tf.constant(np.argmax(model.predict(x, verbose=0), axis=1))
    attack = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02, loss="logits")
    _, fb_adv, fb_success = attack(fb.TensorFlowModel(model, bounds=(0, 1)), tf.constant(x), labels, epsilons=None)
    fb_adv, fb_success = fb_adv.numpy(), fb_success.numpy()

    assert np.all(np.isfinite(x_adv)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.array_equal(success, np.argmax(model.predict(x_adv, verbose=0), axis=1) != labels.numpy())
    assert np.all(iterations[success] >= 1) and np.all(iterations <= 50)
    # Both run the same iteration; they differ only by float rounding (compiled
    # graph vs eager) and where the 1e-4 is added (to |f_k| here, to the
    # distance in foolbox), so an input that ends within rounding of the
    # boundary after 50 steps may succeed in one and not the other: allow one.
    assert abs(int(success.sum()) - int(fb_success.sum())) <= 1, (success.sum(), fb_success.sum())
    assert success.mean() >= 0.9

    ours, theirs = _l2(x_adv - x), _l2(fb_adv - x)
    rel = np.abs(ours - theirs) / np.maximum(theirs, 1e-6)
    assert np.mean(rel <= 0.05) >= 0.95, np.sort(rel)[-10:]


@pytest.mark.mnist
def test_deepfool_batch_matches_one_input_at_a_time(trained):
    # Finished inputs leave the batch; that must not change the others' path.
    model, x, _ = trained
    x = x[:6]
    batch_adv, batch_success, batch_iters = deepfool(model, x, return_details=True)
    for i in range(len(x)):
        one_adv, one_success, one_iters = deepfool(model, x[i : i + 1], return_details=True)
        # Batched and single-input convolutions round differently (1.4e-5 seen with oneDNN on an Intel CPU).
        np.testing.assert_allclose(one_adv.numpy()[0], batch_adv.numpy()[i], atol=1e-4)
        assert one_success.numpy()[0] == batch_success.numpy()[i]
        # An input that lands within rounding of the boundary may take one more (tiny) step in one of them.
        assert abs(int(one_iters.numpy()[0]) - int(batch_iters.numpy()[i])) <= 1


# --- FGSM ---------------------------------------------------------------------


@pytest.mark.mnist
def test_unclipped_fgsm_direction_is_exactly_eps_sign_gradient(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    direction = fgsm_direction(model, x, y, eps=EPS).numpy()
    grad = loss_gradient(model, x, y).numpy()
    assert direction.dtype == np.float32 and direction.shape == x.shape
    np.testing.assert_array_equal(direction, np.float32(EPS) * np.sign(grad))
    assert np.all(direction[grad == 0] == 0)
    # Unclipped means the step may leave the image range.
    assert (x + direction).min() < 0.0 or (x + direction).max() > 1.0


@pytest.mark.mnist
@pytest.mark.parametrize("clip_min, clip_max", [(0.0, 1.0), (0.1, 0.9)])
def test_clipped_fgsm_direction_stays_in_range_and_is_eps_sign_elsewhere(trained, clip_min, clip_max):
    model, x, y = trained
    x, y = x[:32], y[:32]
    direction = fgsm_direction(model, x, y, eps=EPS, clip_min=clip_min, clip_max=clip_max).numpy()
    step = np.float32(EPS) * np.sign(loss_gradient(model, x, y).numpy())
    x_adv = x + direction
    assert x_adv.min() >= np.float32(clip_min) - 1e-7 and x_adv.max() <= np.float32(clip_max) + 1e-7
    unclipped = (x + step >= clip_min) & (x + step <= clip_max)
    assert 0 < unclipped.mean() < 1
    # x_adv - x carries the float32 rounding of x + eps (half an ulp of 1).
    np.testing.assert_allclose(direction[unclipped], step[unclipped], rtol=0, atol=1.2e-7)
    assert np.all(np.abs(direction) <= np.float32(EPS) + 1.2e-7)


def test_fgsm_direction_takes_one_hot_labels_like_int_labels():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(3)])
    x = np.random.default_rng(0).random((5, 4, 4, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 1, 0])
    np.testing.assert_array_equal(
        fgsm_direction(model, x, y).numpy(), fgsm_direction(model, x, np.eye(3)[y]).numpy()
    )


# --- loss gradient --------------------------------------------------------------


def _tiny_float64_model():
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(3, 3, 1, 4)), tf.float64)
    dense = tf.constant(rng.normal(size=(4 * 4 * 4, 5)) / 8.0, tf.float64)

    def model_fn(x):
        # tanh, not relu: smooth, so central differences are accurate.
        h = tf.tanh(tf.nn.conv2d(tf.cast(x, tf.float64), kernel, 1, "VALID"))
        return tf.reshape(h, [tf.shape(x)[0], -1]) @ dense

    return model_fn


def _loss(model_fn, x, y):
    logits = model_fn(tf.constant(x))
    return float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))


def test_loss_gradient_matches_central_finite_differences():
    model_fn = _tiny_float64_model()
    x = np.random.default_rng(1).random((3, 6, 6, 1))
    y = np.array([0, 3, 4])
    grad = loss_gradient(model_fn, x, y).numpy()
    assert grad.dtype == np.float64 and grad.shape == x.shape
    h = 1e-6
    for index in [(0, 0, 0, 0), (0, 2, 3, 0), (1, 5, 5, 0), (2, 1, 4, 0), (2, 3, 3, 0)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        numeric = (_loss(model_fn, plus, y) - _loss(model_fn, minus, y)) / (2 * h)
        assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9), index


def test_loss_gradient_is_per_example_not_batch_mean():
    model_fn = _tiny_float64_model()
    x = np.random.default_rng(2).random((4, 6, 6, 1))
    y = np.array([1, 2, 3, 4])
    grad = loss_gradient(model_fn, x, y).numpy()
    for i in range(len(x)):
        np.testing.assert_allclose(grad[i], loss_gradient(model_fn, x[i : i + 1], y[i : i + 1]).numpy()[0], rtol=1e-12)


def test_loss_gradient_is_float32_for_float32_and_uint8_inputs():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(3)])
    for x in (np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 4, 4, 1), np.uint8)):
        assert loss_gradient(model, x, [0, 1]).dtype == tf.float32


# --- DeepFool on degenerate inputs and models -----------------------------------


@pytest.mark.mnist
def test_deepfool_is_finite_on_blank_and_saturated_images(trained):
    model, _, _ = trained
    x = np.stack([np.zeros((28, 28, 1), np.float32), np.ones((28, 28, 1), np.float32)])
    x_adv, success, iterations = deepfool(model, x, max_iter=20, return_details=True)
    x_adv = x_adv.numpy()
    assert np.all(np.isfinite(x_adv)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert success.dtype == tf.bool and iterations.dtype == tf.int32
    assert np.all(iterations.numpy() <= 20)


@pytest.mark.parametrize("bias", [np.zeros(10), np.arange(10.0)], ids=["tied", "ranked"])
def test_deepfool_reports_failure_for_a_model_with_constant_logits(bias):
    # The kernel is 0, so the logits do not depend on the input: every
    # gradient difference is 0 (and with a zero bias every |f_k| too).
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Flatten(),
            layers.Dense(10, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias)),
        ]
    )
    x = np.random.default_rng(3).random((3, 28, 28, 1), dtype=np.float32)
    x_adv, success, iterations = deepfool(model, x, max_iter=4, return_details=True)
    np.testing.assert_array_equal(x_adv.numpy(), x)
    assert not success.numpy().any()
    np.testing.assert_array_equal(iterations.numpy(), [4, 4, 4])


def test_deepfool_disconnected_logits_are_a_failure_not_an_error():
    logits = tf.constant([[0.0, 2.0, 1.0]])
    x = np.full((2, 3, 3, 1), 0.5, np.float32)
    x_adv, success, _ = deepfool(lambda t: tf.tile(logits, [tf.shape(t)[0], 1]), x, nb_candidate=3, max_iter=2,
                                 return_details=True)
    np.testing.assert_array_equal(x_adv.numpy(), x)
    assert not success.numpy().any()


def test_deepfool_leaves_a_decision_boundary_in_one_step():
    # Logits (s - 2, 0) with s the pixel sum: at x = 0.5 everywhere both are 0,
    # a tie that the first class wins, so f_1 = 0 and only the 1e-4 moves x.
    def model_fn(x):
        s = tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)
        return tf.stack([s - 2.0, tf.zeros_like(s)], axis=1)

    x = np.full((1, 2, 2, 1), 0.5, np.float32)
    x_adv, success, iterations = deepfool(model_fn, x, nb_candidate=2, return_details=True)
    x_adv = x_adv.numpy()
    assert np.all(np.isfinite(x_adv))
    assert success.numpy()[0] and iterations.numpy()[0] == 1
    assert 0 < np.abs(x_adv - x).max() < 1e-3


def test_deepfool_of_an_empty_batch_is_empty():
    model = keras.Sequential([keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(3)])
    x_adv, success, iterations = deepfool(model, np.zeros((0, 4, 4, 1), np.float32), nb_candidate=3,
                                          return_details=True)
    assert x_adv.shape == (0, 4, 4, 1) and success.shape == (0,) and iterations.shape == (0,)


# --- bad arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"nb_candidate": 1}, "`nb_candidate` must be an int >= 2. Received: nb_candidate=1"),
        ({"nb_candidate": 2.0}, "`nb_candidate` must be an int >= 2. Received: nb_candidate=2.0"),
        ({"nb_candidate": 11}, "`nb_candidate` must not exceed the number of classes, 10. Received: nb_candidate=11"),
        ({"overshoot": -0.1}, "`overshoot` must be a finite number >= 0. Received: overshoot=-0.1"),
        ({"overshoot": float("nan")}, "`overshoot` must be a finite number >= 0. Received: overshoot=nan"),
        ({"max_iter": 0}, "`max_iter` must be an int >= 1. Received: max_iter=0"),
        ({"max_iter": 1.5}, "`max_iter` must be an int >= 1. Received: max_iter=1.5"),
        ({"clip_min": None}, "`clip_min` and `clip_max` must both be numbers or both be None. Received: clip_min=None"),
        ({"clip_min": 1.0, "clip_max": 0.0}, "`clip_min` must be a number below `clip_max`. Received: clip_min=1.0"),
    ],
)
def test_deepfool_rejects_bad_arguments(linear_model, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        deepfool(linear_model, np.zeros((2, 4, 4, 1), np.float32), **kwargs)


@pytest.mark.parametrize("eps", [-0.1, float("inf"), "0.3", True])
def test_fgsm_direction_rejects_bad_eps(linear_model, eps):
    with pytest.raises(ValueError, match=re.escape(f"`eps` must be a finite number >= 0. Received: eps={eps!r}")):
        fgsm_direction(linear_model, np.zeros((2, 4, 4, 1), np.float32), [0, 1], eps=eps)


def test_fgsm_direction_rejects_one_clip_bound(linear_model):
    message = "`clip_min` and `clip_max` must be given together. Received: clip_min=0.0, clip_max=None"
    with pytest.raises(ValueError, match=re.escape(message)):
        fgsm_direction(linear_model, np.zeros((2, 4, 4, 1), np.float32), [0, 1], clip_min=0.0)


@pytest.mark.parametrize(
    "y,message",
    [
        ([0], "`y` must hold one label per example, shape (2,). Received: shape=(1,)"),
        ([[0, 1], [1, 0], [0, 0]], "`y` must hold one label per example, shape (2,). Received: shape=(3,)"),
        ([0.5, 1.0], "`y` must hold integer class labels. Received: y=[0.5 1. ]"),
        (["a", "b"], "`y` must hold integer class labels. Received: dtype=string"),
    ],
)
def test_loss_gradient_and_fgsm_reject_bad_labels(linear_model, y, message):
    x = np.zeros((2, 4, 4, 1), np.float32)
    for attack in (loss_gradient, fgsm_direction):
        with pytest.raises(ValueError, match=re.escape(message)):
            attack(linear_model, x, y)


def test_attacks_reject_inputs_without_a_batch_axis(linear_model):
    message = re.escape("`x` must be a batch (N, ...) of rank >= 2. Received: shape=(16,)")
    with pytest.raises(ValueError, match=message):
        loss_gradient(linear_model, np.zeros(16, np.float32), [0])
    with pytest.raises(ValueError, match=message):
        fgsm_direction(linear_model, np.zeros(16, np.float32), [0])
    with pytest.raises(ValueError, match=message):
        deepfool(linear_model, np.zeros(16, np.float32))


def test_attacks_reject_models_that_do_not_return_logits():
    message = re.escape("`model_fn` must return logits of shape (N, C). Received: shape=(2,)")
    x = np.zeros((2, 4, 4, 1), np.float32)
    flat = lambda t: tf.reduce_sum(t, axis=[1, 2, 3])  # noqa: E731
    with pytest.raises(ValueError, match=message):
        loss_gradient(flat, x, [0, 1])
    with pytest.raises(ValueError, match=message):
        deepfool(flat, x)
