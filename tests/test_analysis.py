"""The analysis against closed-form cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_uap.analysis import (
    avg_abs_dot,
    invariant_directions,
    principal_angles_deg,
    sample_vector_distances,
    singular_spectrum,
    spectrum_fractions,
    theorem1_rows,
    top_eigenpair,
)


def _rank_one_plus_noise(n=2000, d=784, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    signs = rng.choice([-1.0, 1.0], n)
    scales = rng.uniform(0.5, 2.0, n)
    rows = (signs * scales)[:, None] * u + noise * rng.standard_normal((n, d)) / np.sqrt(d)
    return rows, u


def test_rank_one_signal_is_recovered():
    rows, u = _rank_one_plus_noise()
    s, vectors = singular_spectrum(rows, top=3)
    assert abs(vectors[0] @ u) > 0.99
    fractions = spectrum_fractions(s)
    assert fractions["1"] > 0.7


def test_fractions_of_an_orthonormal_set_are_k_over_d():
    fractions = spectrum_fractions(singular_spectrum(np.eye(20) * 3.0)[0])
    assert fractions == pytest.approx({"1": 1 / 20, "5": 5 / 20, "10": 10 / 20})


def test_eigenvalues_of_m_sum_to_one_and_theorem1_holds():
    rows, _ = _rank_one_plus_noise(noise=2.0, d=100)
    lam1, lam2, v = top_eigenpair(rows)
    s, _ = singular_spectrum(rows)
    assert np.sum(np.square(s)) / len(rows) == pytest.approx(1.0)  # trace(M) = 1
    assert lam1 > lam2 > 0
    for delta, measured, bound in theorem1_rows(rows, v, lam1):
        assert measured >= bound - 1e-12  # Theorem 1 is a theorem: it must hold
        assert 0 <= measured <= 1


def test_sample_vector_distance_shrinks_with_m():
    rows, u = _rank_one_plus_noise(noise=3.0, n=4000, d=200)
    _, _, v = top_eigenpair(rows)
    distances = sample_vector_distances(rows, v, sizes=(50, 2000))
    assert distances[0][0] == 50 and distances[1][1] < distances[0][1]


def test_principal_angles_of_known_subspaces():
    theta = 30.0
    e = np.eye(4)
    a = np.stack([e[0], e[1]])
    b = np.stack([e[0], np.cos(np.radians(theta)) * e[1] + np.sin(np.radians(theta)) * e[2]])
    assert principal_angles_deg(a, b, 2) == pytest.approx([theta, 0.0], abs=1e-6)
    assert principal_angles_deg(a, np.stack([e[2], e[3]]), 2) == pytest.approx([90.0, 90.0])


def test_avg_abs_dot():
    e = np.eye(6)
    assert avg_abs_dot(e[:3], e[3:], 3) == 0.0
    assert avg_abs_dot(e[:3], e[:3], 3) == pytest.approx(1 / 3)
    assert avg_abs_dot(e[:2], -e[:2], 2) == pytest.approx(1 / 2)


def test_invariant_directions():
    yy, xx = np.mgrid[:28, :28]
    disk = np.exp(-((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / 30.0).astype(np.float32)[None, :, :, None]
    bar = np.zeros_like(disk)
    bar[0, 13:15, 4:24, 0] = 1.0
    assert np.abs(invariant_directions(disk, 0.0)).max() < 1e-5
    # A smooth blob centred on the rotation centre barely changes; a bar does.
    disk_change = np.linalg.norm(invariant_directions(disk, 2.0))
    bar_change = np.linalg.norm(invariant_directions(bar, 2.0))
    assert disk_change < 0.1 * bar_change


def test_an_attack_on_a_subset_is_compared_with_the_invariant_directions_of_its_inputs():
    from keras_uap.pipelines.analysis_stage import analyse_model

    rng = np.random.default_rng(0)
    x = rng.random((300, 28, 28, 1)).astype(np.float32)
    full = rng.standard_normal((300, 784)).astype(np.float32)
    index = np.sort(rng.choice(300, 120, replace=False))
    both, _ = analyse_model({"gradient": full, "deepfool": full[index]}, x, sample_size=50,
                            attack_indices={"gradient": np.arange(300), "deepfool": index})
    alone, _ = analyse_model({"deepfool": full[index]}, x[index], sample_size=50)
    assert both["n"] == 300 and both["spectrum"]["deepfool"]["n"] == 120
    for key in ("avg_abs_dot_top5", "avg_abs_dot_top5_sample", "principal_angles_deg"):
        np.testing.assert_allclose(both["comparison"]["deepfool"][key], alone["comparison"]["deepfool"][key],
                                   rtol=1e-5)
    assert both["theory"]["deepfool"]["top_eigenvalue"] == pytest.approx(alone["theory"]["deepfool"]["top_eigenvalue"])
