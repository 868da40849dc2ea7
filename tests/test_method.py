"""The method's core: registry, sampler, SVD universal perturbation and
fooling-curve evaluator, against closed-form cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_uap.method import (
    ATTACK_NAMES,
    ATTACKS,
    PAPER_ATTACKS,
    L2_GRID,
    AttackParams,
    choose_sign,
    default_sign_norms,
    draw_sample,
    fooling_curves,
    get_attack,
    interpolate_crossing,
    svd_direction,
    universal_perturbation,
)


def _first_pixel_logits(batch):
    """Two classes: class 1 iff pixel 0 exceeds 0.8."""
    first = tf.reshape(tf.cast(batch, tf.float32), [tf.shape(batch)[0], -1])[:, 0] - 0.8
    return tf.stack([-first * 5, first * 5], axis=1)


def test_the_registry_names_every_attack_once_in_order():
    assert ATTACK_NAMES == ("gradient", "fgsm", "fgsm_clipped", "deepfool", "pgd")
    assert PAPER_ATTACKS == ("gradient", "fgsm", "deepfool")
    assert {a.norm for a in ATTACKS.values()} == {"l2", "linf"}
    with pytest.raises(ValueError, match="unknown attack 'cw'; choose one of: gradient, fgsm"):
        get_attack("cw")


def test_every_registered_attack_moves_the_input_against_its_label():
    x = np.full((4, 2, 2, 1), 0.5, np.float32)
    y = np.zeros(4, np.int64)  # class 0, as predicted: the attacks raise pixel 0
    params = AttackParams(fgsm_eps=0.1, pgd_eps=0.1, pgd_eps_iter=0.05, pgd_nb_iter=2, deepfool_candidates=2)
    for name, attack in ATTACKS.items():
        out = attack.run(_first_pixel_logits, x, y, params)
        direction = np.asarray(out.direction)
        assert direction.shape == x.shape, name
        assert np.all(direction[:, 0, 0, 0] > 0), name
        if out.success is None:  # the stage judges success on this input
            assert attack.adversarial(x, direction, params).shape == x.shape
        else:
            assert out.success.all() and out.iterations.min() >= 1


def test_draw_sample_is_the_seeded_sorted_choice_without_replacement():
    index = draw_sample(500, 50, seed=3)
    np.testing.assert_array_equal(index, np.sort(np.random.default_rng(3).choice(500, 50, replace=False)))
    assert len(np.unique(index)) == 50 and np.all(np.diff(index) > 0)
    assert not np.array_equal(index, draw_sample(500, 50, seed=4))
    np.testing.assert_array_equal(draw_sample(7, 100, seed=0), np.arange(7))


def test_choose_sign_keeps_the_sign_with_more_errors_over_the_norms_and_clips():
    u = np.zeros((4, 4, 1), np.float32)
    u[0, 0, 0] = 1.0
    x = np.full((8, 4, 4, 1), 0.5, np.float32)
    y = np.zeros(8, np.int64)
    assert choose_sign(-u, _first_pixel_logits, x, y, sign_norms=(0.1, 0.4))[0, 0, 0] == 1.0
    assert choose_sign(u, _first_pixel_logits, x, y, sign_norms=(0.1, 0.4))[0, 0, 0] == 1.0
    # In [0.5, 0.5] neither sign moves pixel 0: a tie keeps the vector given.
    assert choose_sign(-u, _first_pixel_logits, x, y, (0.1, 0.4), clip_min=0.5, clip_max=0.5)[0, 0, 0] == -1.0


def test_choose_sign_weighs_the_whole_grid_not_one_norm():
    # Class 1 iff pixel 0 lies outside [0.2, 0.7]; inputs at 0.5: +v errs from
    # norm 0.2 on, -v from norm 0.3 on, so -v wins at no norm but +v's area is larger.
    def band_logits(batch):
        first = tf.reshape(tf.cast(batch, tf.float32), [tf.shape(batch)[0], -1])[:, 0]
        outside = tf.cast((first > 0.7) | (first < 0.2), tf.float32)
        return tf.stack([1.0 - outside, outside], axis=1)

    u = np.zeros((2, 2, 1), np.float32)
    u[0, 0, 0] = 1.0
    x = np.full((4, 2, 2, 1), 0.5, np.float32)
    y = np.zeros(4, np.int64)
    assert choose_sign(-u, band_logits, x, y, (0.1, 0.25, 0.35, 0.45))[0, 0, 0] == 1.0
    # Where only the largest norms are weighed the two signs tie: the vector given stays.
    assert choose_sign(-u, band_logits, x, y, (0.35, 0.45))[0, 0, 0] == -1.0


def test_default_sign_norms_scale_the_grid_to_the_input():
    assert default_sign_norms((28, 28, 1)) == pytest.approx(L2_GRID)
    assert default_sign_norms((32, 32, 3), 0.0, 255.0) == pytest.approx(
        [e * np.sqrt(32 * 32 * 3) / 28.0 * 255.0 for e in L2_GRID])


def test_universal_perturbation_is_the_top_singular_vector_of_its_sample():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (60, 3, 3, 2)).astype(np.float32)
    y = np.zeros(60, np.int64)
    u = np.zeros(18)
    u[0] = 1.0
    stored = (rng.choice([-1.0, 1.0], 60)[:, None] * u + 0.05 * rng.standard_normal((60, 18))).reshape(x.shape)
    asked = []

    def directions_of(indices):
        asked.append(indices)
        return stored[indices]

    result = universal_perturbation(x, y, directions_of, _first_pixel_logits, 20, 5, sign_norms=(0.25, 0.5),
                                    attack="gradient")
    np.testing.assert_array_equal(result.sample_indices, draw_sample(60, 20, 5))
    np.testing.assert_array_equal(asked[0], result.sample_indices)
    assert result.perturbation.shape == (3, 3, 2) and result.perturbation.dtype == np.float32
    assert np.linalg.norm(result.perturbation) == pytest.approx(1.0, abs=1e-6)
    assert result.perturbation.ravel()[0] > 0.95  # the signal, with the error-raising sign
    s = np.linalg.svd(stored[result.sample_indices].reshape(20, -1)
                      / np.linalg.norm(stored[result.sample_indices].reshape(20, -1), axis=1, keepdims=True),
                      compute_uv=False)
    np.testing.assert_allclose(result.singular_values, s, rtol=1e-6)
    v, _ = svd_direction(stored[result.sample_indices], x[result.sample_indices], y[result.sample_indices],
                         _first_pixel_logits, (0.25, 0.5))
    np.testing.assert_array_equal(v, result.perturbation)


def _threshold_predict(batch):
    """Class 1 iff the pixel sum exceeds 4."""
    return (np.asarray(batch).reshape(len(batch), -1).sum(axis=1) > 4.0).astype(np.int64)


def test_fooling_curves_of_a_threshold_classifier_stop_when_saturated():
    # Along v = 1/sqrt(d) the sum grows by eps*sqrt(d) = 4 eps.
    x = np.zeros((100, 4, 4, 1), np.float32)
    x[:50] += 0.1  # sums 1.6: still class 0, so all 100 start correct
    y = np.zeros(100, np.int64)
    v = np.full((1, 16), 1 / 4, np.float32)
    curves = fooling_curves(_threshold_predict, x, y, v, [0.0, 0.5, 0.7, 1.1, 2.0, 3.0], batch_size=30,
                            saturation=0.99)
    # Shifted images cross at eps*4 + 1.6 > 4 (eps > 0.6), zeros at eps*4 > 4 (eps > 1).
    np.testing.assert_allclose(curves.error_rate[:, 0], [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(curves.fooling_rate, curves.error_rate)
    assert list(curves.eps) == [0.0, 0.5, 0.7, 1.1]  # stopped once saturated
    assert curves.clean_error_rate == 0.0


def test_fooling_curves_take_known_points_as_given_and_predict_only_the_rest():
    x = np.zeros((100, 4, 4, 1), np.float32)
    x[:50] += 0.1
    y = np.zeros(100, np.int64)
    vectors = np.stack([np.full(16, 1 / 4, np.float32), -np.full(16, 1 / 4, np.float32)])
    grid = [0.0, 0.5, 0.7, 1.1, 2.0, 3.0]
    predicted = []

    def counting_predict(batch):
        predicted.append(len(batch))
        return _threshold_predict(batch)

    full = fooling_curves(counting_predict, x, y, vectors, grid, batch_size=100, saturation=0.99)
    assert len(predicted) == 2 * (len(full.eps) - 1) + 1  # both columns at every norm above 0, and the clean pass
    # Column 0 known at its first three norms (from an earlier, shorter walk): only its later points are predicted.
    known = {0: (full.error_rate[:3, 0], full.fooling_rate[:3, 0])}
    predicted.clear()
    reused = fooling_curves(counting_predict, x, y, vectors, grid, batch_size=100, saturation=0.99, known=known)
    assert len(predicted) == 1 + (len(full.eps) - 1) + (len(full.eps) - 3)
    np.testing.assert_array_equal(reused.eps, full.eps)
    np.testing.assert_array_equal(reused.error_rate, full.error_rate)
    np.testing.assert_array_equal(reused.fooling_rate, full.fooling_rate)
    # Known points are taken as they are (the caller vouches for them), and decide the early stop too.
    made_up = fooling_curves(_threshold_predict, x, y, vectors, grid, saturation=0.99,
                             known={0: ([0.0] + [1.0] * 5, [0.0] + [1.0] * 5), 1: ([0.0] + [1.0] * 5, [0.0] * 6)})
    assert list(made_up.eps) == [0.0, 0.5] and made_up.error_rate[1].tolist() == [1.0, 1.0]


def test_fooling_curves_clip_to_the_given_range_and_count_changes_without_labels():
    x = np.full((10, 2, 2, 3), 0.9, np.float32)  # sum 10.8 > 4: class 1
    v = -np.full((1, 2, 2, 3), 1 / np.sqrt(12), np.float32)
    # Clipped at 0.5 from below, the sum never drops under 6: nothing changes.
    clipped = fooling_curves(_threshold_predict, x, None, v, [5.0], clip_min=0.5, clip_max=1.0)
    assert clipped.fooling_rate[0, 0] == 0.0
    free = fooling_curves(_threshold_predict, x, None, v, [5.0], clip_min=-10.0, clip_max=10.0)
    assert free.fooling_rate[0, 0] == free.error_rate[0, 0] == 1.0


def test_interpolate_crossing():
    assert interpolate_crossing([1, 2, 3], [0.2, 0.4, 0.8], 0.5) == pytest.approx(2.25)
    assert interpolate_crossing([1, 2], [0.6, 0.9], 0.5) == 1.0
    assert interpolate_crossing([1, 2], [0.1, 0.2], 0.5) is None
