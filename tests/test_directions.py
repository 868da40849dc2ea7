import dataclasses
import os

import numpy as np
import pytest

from keras_uap.errors import UserError
from keras_uap.method import ATTACK_NAMES as ATTACKS
from keras_uap.pipelines.directions_stage import attacked_indices, load_directions
from keras_uap.pipelines.study import collect_directions
from keras_uap.pipelines.exported_model import load_exported_model


@pytest.fixture(scope="module")
def collected(tiny_run):
    cfg, results = tiny_run
    return cfg, results, {a: collect_directions(cfg, "gcnn", a, data=results["data"]) for a in ATTACKS}


def test_every_attack_stores_its_arrays(collected):
    cfg, results, found = collected
    test = np.load(f"{results['data'].output_dir}/test.npz")
    model = load_exported_model(results["train-gcnn"].output_dir)
    clean = model.predict_on_batch(test["x"][:200]).argmax(1)
    for attack, result in found.items():
        d = load_directions(result.output_dir)
        assert d["directions"].shape == (200, 784) and d["directions"].dtype == np.float32
        np.testing.assert_array_equal(d["label"], test["y"][:200])
        np.testing.assert_array_equal(d["clean_prediction"], clean)
        np.testing.assert_allclose(d["l2"], np.linalg.norm(d["directions"], axis=1), rtol=1e-5)
        np.testing.assert_allclose(d["linf"], np.abs(d["directions"]).max(axis=1), rtol=1e-6)
        assert np.isfinite(d["directions"]).all()
        assert sorted(os.listdir(result.output_dir)) == ["directions.npz", "lineage.json"]


def test_fgsm_variants_and_deepfool_success(collected):
    cfg, results, found = collected
    fgsm = load_directions(found["fgsm"].output_dir)["directions"]
    np.testing.assert_allclose(np.abs(fgsm[fgsm != 0]), cfg.directions.attack_params.fgsm_eps, rtol=1e-6)
    clipped = load_directions(found["fgsm_clipped"].output_dir)["directions"]
    x = np.load(f"{results['data'].output_dir}/test.npz")["x"][:200].reshape(200, -1)
    assert (x + clipped).min() >= 0 and (x + clipped).max() <= 1 + 1e-6
    deepfool = load_directions(found["deepfool"].output_dir)
    model = load_exported_model(results["train-gcnn"].output_dir)
    adversarial = (x + deepfool["directions"]).reshape(-1, 28, 28, 1)
    changed = model.predict_on_batch(adversarial).argmax(1) != deepfool["clean_prediction"]
    # DeepFool stops just past the boundary, so x + (x_adv - x) rounded in float32
    # can fall back on it for the odd input; all but a few must agree.
    assert np.mean(changed == deepfool["success"]) >= 0.95
    assert deepfool["success"].mean() > 0.9 and deepfool["iterations"].max() <= cfg.directions.attack_params.deepfool_max_iter


def test_pgd_directions_are_cleverhans_pgd_steps_inside_the_ball(collected):
    from keras_uap.attacks import pgd_direction

    cfg, results, found = collected
    pgd = load_directions(found["pgd"].output_dir)
    test = np.load(f"{results['data'].output_dir}/test.npz")
    x = test["x"][pgd["index"]]
    assert pgd["linf"].max() <= cfg.directions.attack_params.pgd_eps + 1e-6
    moved = x.reshape(len(x), -1) + pgd["directions"]
    assert moved.min() >= 0 and moved.max() <= 1 + 1e-6
    model = load_exported_model(results["train-gcnn"].output_dir)
    direct = pgd_direction(model, x[:20], test["y"][pgd["index"][:20]], eps=cfg.directions.attack_params.pgd_eps, eps_iter=cfg.directions.attack_params.pgd_eps_iter,
                           nb_iter=cfg.directions.attack_params.pgd_nb_iter).numpy()
    np.testing.assert_allclose(pgd["directions"][:20], direct.reshape(20, -1), atol=1e-5)
    # Twenty steps of 0.03 in a 0.3 ball fool a one-epoch model on most inputs.
    assert pgd["success"].mean() > 0.8


def test_rerun_is_cached(collected):
    cfg, results, _ = collected
    assert collect_directions(cfg, "gcnn", "fgsm", data=results["data"]).cached


def test_missing_export_names_the_command_that_creates_it(tiny_run, tmp_path):
    cfg, _ = tiny_run
    elsewhere = dataclasses.replace(cfg, export_dir=str(tmp_path))
    with pytest.raises(UserError, match="keras-uap train --model gcnn"):
        collect_directions(elsewhere, "gcnn", "deepfool")


def test_a_deepfool_subset_is_a_seeded_random_sample_of_the_attacked_inputs(tiny_run, tmp_path):
    cfg, results = tiny_run
    index = attacked_indices(500, limit=200, subset=50, seed=0)
    assert len(index) == 50 and np.all(np.diff(index) > 0) and index.max() < 200
    assert index.max() > 100  # not a prefix: MNIST's test file is ordered by writer group
    np.testing.assert_array_equal(index, attacked_indices(500, limit=200, subset=50, seed=0))
    assert not np.array_equal(index, attacked_indices(500, limit=200, subset=50, seed=1))
    np.testing.assert_array_equal(attacked_indices(500, limit=200, subset=300), np.arange(200))

    sub = dataclasses.replace(cfg, run_dir=str(tmp_path), model_settings={}).replace_params(**{"directions.deepfool_subset": 50})
    found = load_directions(collect_directions(sub, "stdcnn", "deepfool", data=results["data"]).output_dir)
    np.testing.assert_array_equal(found["index"], index)
    test = np.load(f"{results['data'].output_dir}/test.npz")
    np.testing.assert_array_equal(found["label"], test["y"][index])
    # The other attacks ignore the DeepFool subset.
    gradient = load_directions(collect_directions(sub, "stdcnn", "gradient", data=results["data"]).output_dir)
    np.testing.assert_array_equal(gradient["index"], np.arange(200))


def test_the_attacks_clip_to_the_data_artifacts_range(collected, tmp_path):
    from keras_uap.pipelines.directions_stage import DIRECTIONS_STAGE
    from keras_uap.pipelines.stage_params import cache_params

    cfg, results, found = collected
    with np.load(f"{results['data'].output_dir}/test.npz") as f:
        narrow = {**{k: f[k] for k in f.files}, "clip_min": np.float32(0.1), "clip_max": np.float32(0.9)}
    np.savez(tmp_path / "test.npz", **narrow)
    params = {**cache_params(dataclasses.replace(cfg.directions, limit=20, batch_size=20, pgd_subset=None)),
              "seed": 0}
    model = os.path.join(results["train-gcnn"].output_dir, "model.keras")
    x = narrow["x"][:20].reshape(20, -1)
    for attack in ("fgsm_clipped", "pgd"):
        out = tmp_path / attack
        out.mkdir()
        DIRECTIONS_STAGE.fn(str(out), model=model, test_data=str(tmp_path / "test.npz"), attack=attack, **params)
        moved = x + load_directions(str(out))["directions"]
        assert moved.min() >= 0.1 - 1e-6 and moved.max() <= 0.9 + 1e-6
        # With the artifact's own [0, 1] the same inputs do leave [0.1, 0.9].
        wide = x + load_directions(found[attack].output_dir)["directions"][:20]
        assert wide.min() < 0.1 or wide.max() > 0.9
