"""The analysis against closed-form cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_uap.analysis import (
    avg_abs_dot,
    invariant_directions,
    max_abs_dot,
    nonvacuous_sample_size,
    principal_angles_deg,
    sample_vector_distances,
    singular_spectrum,
    spectrum_fractions,
    theorem1_held_out,
    theorem1_rows,
    theorem2_rows,
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


def test_theorem1_cannot_fail_in_sample_but_can_on_a_held_out_half():
    # Pure noise: 40 random directions in 784 dimensions. In sample, v fits the rows
    # and the bound holds, as it does for any rows; on the held-out half it fails.
    rows = np.random.default_rng(4).standard_normal((40, 784))
    lam, _, v = top_eigenpair(rows)
    assert all(measured >= bound for _, measured, bound in theorem1_rows(rows, v, lam))
    held_out = theorem1_held_out(rows, seed=0)
    assert held_out["n_fit"] == held_out["n_held_out"] == 20
    failed = [delta for delta, measured, bound in held_out["rows"] if measured < bound]
    assert 0.2 in failed
    # With a shared direction the held-out half agrees with the bound.
    signal, _ = _rank_one_plus_noise(n=400, d=100, noise=2.0)
    assert all(measured >= bound for _, measured, bound in theorem1_held_out(signal)["rows"])


def _known_spectrum_rows(n, d, share, seed=0):
    """Rows ±e_0 with probability `share`, else ±e_j (j ≥ 1) uniformly: M is diagonal with
    M_00 = share and every other entry (1 - share)/(d - 1), so v = e_0 and the gap is known."""
    rng = np.random.default_rng(seed)
    axis = np.where(rng.random(n) < share, 0, rng.integers(1, d, n))
    rows = np.zeros((n, d))
    rows[np.arange(n), axis] = rng.choice([-1.0, 1.0], n)
    return rows, axis


def test_theorem2_bound_holds_for_a_known_spectrum_with_a_large_gap():
    n, d, share = 4000, 30, 0.6
    rows, axis = _known_spectrum_rows(n, d, share)
    result = theorem2_rows(rows, sizes=(50, 200, 1000), seed=1)
    assert [r["m"] for r in result] == [50, 200, 1000]
    counts_full = np.bincount(axis, minlength=d) / n
    gap = counts_full[0] - np.max(counts_full[1:])
    for r in result:
        assert r["gap"] == pytest.approx(gap)
        # M - M_m is diagonal: its spectral norm is the largest difference of axis frequencies.
        pick = np.random.default_rng([1, r["m"]]).choice(n, r["m"], replace=False)
        counts_sample = np.bincount(axis[pick], minlength=d) / r["m"]
        assert r["epsilon"] == pytest.approx(np.max(np.abs(counts_full - counts_sample)))
        assert r["bound"] == pytest.approx(r["epsilon"] / (gap - r["epsilon"]))
        assert r["distance"] <= r["bound"]
    assert result[-1]["epsilon"] < result[0]["epsilon"]


def test_theorem2_bound_holds_with_a_rotated_spectrum_and_is_vacuous_without_a_gap():
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.standard_normal((40, 40)))[0]
    scales = np.r_[3.0, np.full(39, 0.5)]
    rows = (rng.standard_normal((5000, 40)) * scales) @ basis.T
    result = theorem2_rows(rows, sizes=(100, 400, 2000))
    assert all(r["bound"] is not None and 0 < r["distance"] <= r["bound"] for r in result)
    noise = theorem2_rows(rng.standard_normal((3000, 40)), sizes=(100, 400))
    assert all(r["bound"] is None for r in noise)  # isotropic: a gap far below ε


def test_nonvacuous_sample_size_extrapolates_epsilon_as_one_over_root_m():
    rows = [{"m": m, "epsilon": 0.3 / np.sqrt(m), "gap": 0.01} for m in (100, 400)]
    assert nonvacuous_sample_size(rows) == 900  # 0.3 / sqrt(m) < 0.01 from m = 900
    assert nonvacuous_sample_size([]) is None


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


def test_max_abs_dot_finds_the_one_shared_direction_the_mean_hides():
    # A 63° principal angle: one pair with cosine 0.45, the other 24 pairs orthogonal.
    e = np.eye(10)
    b = np.stack([e[5], e[6], e[7], e[8], 0.45 * e[0] + np.sqrt(1 - 0.45**2) * e[9]])
    assert avg_abs_dot(e[:5], b, 5) == pytest.approx(0.45 / 25)
    assert max_abs_dot(e[:5], b, 5) == pytest.approx(0.45)


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


def test_theorem2_in_the_rows_span_matches_the_explicit_matrices(monkeypatch):
    import keras_uap.analysis.theory as theory

    rng = np.random.default_rng(0)
    # More dimensions than rows (as a 32x32x3 input's 300 directions), one shared direction for a gap.
    rows = rng.standard_normal((80, 1200)) + 3 * rng.standard_normal(1200)
    in_span = theorem2_rows(rows, sizes=(20, 50), seed=2)
    monkeypatch.setattr(theory, "_EXPLICIT_DIM", 10_000)
    explicit = theorem2_rows(rows, sizes=(20, 50), seed=2)
    assert [r["m"] for r in in_span] == [r["m"] for r in explicit] == [20, 50]
    for a, b in zip(in_span, explicit):
        for key in ("epsilon", "gap", "distance"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-6), key
    assert explicit[0]["gap"] > 0.5 and explicit[0]["distance"] > 1e-3
