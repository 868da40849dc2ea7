"""Training seeds: the `seeds` section of the report, claims whose seeds
disagree, and one real run of StdCNN trained with two seeds (the option's
user errors are in test_cli.py)."""

import copy
import dataclasses
import json
import os

import pytest

from keras_uap.pipelines.study import StudyConfig, export_path, quick_config, run_all
from keras_uap.report import claims, seeds


def _curve(eps80):
    grid = [0.0, 2.0, 4.0, 8.0]
    rates = [0.1, 0.5, 0.85, 0.95] if eps80 is not None else [0.1, 0.2, 0.3, 0.4]
    return {"eps": grid, "error_rate": rates, "fooling_rate": rates, "eps50": 2.0, "eps80": eps80}


def _metrics(accuracy, top5, eps80_m100, iterative_error):
    """One seed's measured metrics of StdCNN: only the sections the seeds section and its claims read."""
    universal = {attack: {"100": _curve(eps80_m100), "500": _curve(3.0)} for attack in ("gradient", "deepfool")}
    universal["random"] = _curve(None)
    universal["random"]["eps"] = [0.0, 5.0, 10.0, 20.0]
    verdict = {"iterative_error_rate": iterative_error, "iterative_fooling_rate": iterative_error - 0.1}
    return {"models": {"stdcnn": {"test_accuracy": accuracy}},
            "spectrum": {"stdcnn": {"gradient": {"top5_fraction": top5}}},
            "universal": {"stdcnn": universal},
            "cost_verdict": {"stdcnn": {"100": {"svd_gradient": verdict, "svd_deepfool": verdict}}}}


@pytest.fixture()
def three_seeds():
    # Seed 2's gradient spectrum is flatter than the paper's 10% in the top 5: Fig. 1's claim flips there.
    # Seed 1's DeepFool/gradient curves at m = 100 never reach 80%.
    return {0: _metrics(0.95, 0.30, 3.0, 0.40), 1: _metrics(0.97, 0.25, None, 0.30),
            2: _metrics(0.96, 0.05, 3.5, 0.50)}


def _entry(result, claim, attack="gradient"):
    return next(e for e in result["counted"] if e["claim"] == claim and e["model"] == "stdcnn"
                and e["attack"] == attack)


def test_a_claim_whose_seeds_disagree_says_so_and_is_not_counted_as_holding(three_seeds):
    single = claims.evaluate_claims(three_seeds[0])
    assert _entry(single, "fig1_top5_fraction")["verdict"] == claims.HOLDS
    assert set(single["counts"]) == {claims.HOLDS, claims.DOES_NOT_HOLD, claims.CANNOT_BE_JUDGED}
    assert all("seed_verdicts" not in e for e in single["counted"])

    judged = claims.evaluate_claims(three_seeds[0], three_seeds)
    fig1 = _entry(judged, "fig1_top5_fraction")
    assert fig1["verdict"] == claims.SEEDS_DISAGREE
    assert fig1["seed_verdicts"] == {"0": claims.HOLDS, "1": claims.HOLDS, "2": claims.DOES_NOT_HOLD}
    assert "training seed 2: does not hold" in fig1["detail"] and fig1["value"] == 0.30
    # m = 100: seed 1's curve above its grid against random's (also above): undecided there only.
    m100 = _entry(judged, "figs5_6_universal_m100")
    assert m100["verdict"] == claims.SEEDS_DISAGREE and m100["seed_verdicts"]["1"] == claims.CANNOT_BE_JUDGED
    # The largest m agrees on every seed: its verdict stands, with the seeds' verdicts beside it.
    agreed = _entry(judged, "figs5_6_universal")
    assert agreed["verdict"] == claims.HOLDS == _entry(single, "figs5_6_universal")["verdict"]
    assert set(agreed["seed_verdicts"].values()) == {claims.HOLDS}
    counts = judged["counts"]
    assert counts[claims.SEEDS_DISAGREE] == sum(e["verdict"] == claims.SEEDS_DISAGREE for e in judged["counted"])
    assert counts[claims.HOLDS] == single["counts"][claims.HOLDS] - counts[claims.SEEDS_DISAGREE]
    assert sum(counts.values()) == len(judged["counted"]) == len(single["counted"])
    reading = claims.reading_markdown(judged)
    assert f"{counts[claims.SEEDS_DISAGREE]} have training seeds that disagree (not counted as holding)" in reading
    assert f"(**{claims.SEEDS_DISAGREE}**)" in reading


def test_seeds_that_agree_leave_every_verdict_as_one_seed_gives_it(three_seeds):
    same = {0: three_seeds[0], 5: copy.deepcopy(three_seeds[0])}
    same[5]["models"]["stdcnn"]["test_accuracy"] = 0.5  # no claim reads the accuracy
    judged, single = claims.evaluate_claims(same[0], same), claims.evaluate_claims(same[0])
    assert [e["verdict"] for e in judged["counted"]] == [e["verdict"] for e in single["counted"]]
    assert judged["counts"][claims.SEEDS_DISAGREE] == 0


def test_seeds_section_gives_each_number_per_seed_with_mean_and_range(three_seeds):
    section = seeds.seeds_section(three_seeds)
    assert section["training_seeds"] == [0, 1, 2]
    numbers = section["models"]["stdcnn"]
    assert set(numbers) == set(seeds.HEADLINES)
    accuracy = numbers["test_accuracy"]
    assert accuracy["values"] == [0.95, 0.97, 0.96] and accuracy["min"] == 0.95 and accuracy["max"] == 0.97
    assert accuracy["mean"] == pytest.approx(0.96)
    # Not reached on seed 1: None there, and left out of the mean and range.
    eps80 = numbers["gradient_eps80_m100"]
    assert eps80["values"] == [3.0, None, 3.5] and eps80["mean"] == pytest.approx(3.25)
    assert (eps80["min"], eps80["max"]) == (3.0, 3.5)
    assert numbers["deepfool_eps80_all"]["values"] == [3.0, 3.0, 3.0]  # the largest m, 500
    assert numbers["iterative_uap_error_rate"]["values"] == [0.40, 0.30, 0.50]
    assert numbers["iterative_uap_fooling_rate"]["max"] == pytest.approx(0.40)
    # Each seed's own verdicts, counted: Fig. 1's claim holds on seeds 0 and 1 only.
    holds = numbers["claims_holds"]["values"]
    assert holds[0] - holds[2] == 1 and holds[0] > 0
    table = seeds.seeds_markdown(section)
    assert "| StdCNN | test accuracy (rotated test set) | 0.9500 | 0.9700 | 0.9600 | 0.9600 | 0.9500 – 0.9700 |" \
        in table
    assert "| 3.00 | n/a | 3.50 | 3.25 (2 of 3 seeds) | 3.00 – 3.50 |" in table


def test_model_seeds_put_the_runs_seed_first():
    assert StudyConfig(seed=2, training_seeds=(0, 1, 2)).model_seeds == (2, 0, 1)
    assert StudyConfig(seed=3).model_seeds == (3,)
    cfg = StudyConfig(export_dir="exports", seed=3)
    assert export_path(cfg, "gcnn") == export_path(cfg, "gcnn", 3) == os.path.join("exports", "mnist-gcnn")
    assert export_path(cfg, "gcnn", 0) == os.path.join("exports", "mnist-gcnn-seed0")


def _read_metrics(cfg):
    with open(os.path.join(cfg.run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def test_two_training_seeds_of_stdcnn_on_real_mnist(tmp_path, mnist_dir):
    cfg = quick_config({"data.train_size": 1000, "data.validation_size": 100, "data.test_size": 200,
                        "directions.limit": 100, "directions.batch_size": 100, "universal.sample_sizes": (100,),
                        "universal.seeds": (0,), "universal.random_seeds": (0,), "comparison.sample_sizes": (100,),
                        "transfer.sample_size": 100},
                       run_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "export"), data_dir=mnist_dir,
                       verbose=0, training_seeds=(0, 1))
    attacks = ("gradient", "deepfool")
    results = run_all(cfg, models=("stdcnn",), attacks=attacks)
    assert {"train-stdcnn", "train-stdcnn-seed1", "comparison-stdcnn-seed1", "universal-stdcnn-seed1"} <= set(results)
    assert os.path.isfile(os.path.join(tmp_path, "export", "mnist-stdcnn-seed1", "model.keras"))
    assert os.path.isdir(os.path.join(cfg.run_dir, "directions", "stdcnn-seed1-deepfool"))
    both = _read_metrics(cfg)
    section = both["seeds"]
    assert section["training_seeds"] == [0, 1]
    assert all(len(s["values"]) == 2 for s in section["models"]["stdcnn"].values())
    accuracy = section["models"]["stdcnn"]["test_accuracy"]["values"]
    assert accuracy[0] != accuracy[1]  # another initialisation and order of the training images
    assert all("seed_verdicts" in e for e in both["claims"]["counted"])
    with open(os.path.join(cfg.run_dir, "report", "report.md"), encoding="utf-8") as f:
        assert "## Training seeds" in f.read()

    # The run's seed alone (the default): every stage but the report reused, i.e. the same cache keys
    # and paths as the seed-0 models above, and the same numbers as the seeds section's first column.
    single = run_all(dataclasses.replace(cfg, training_seeds=()), models=("stdcnn",), attacks=attacks)
    assert [name for name, r in single.items() if not r.cached] == ["report"]
    assert not any("seed1" in name for name in single)
    one = _read_metrics(cfg)
    assert "seeds" not in one and set(one["claims"]["counts"]) == {"holds", "does not hold", "cannot be judged"}
    first = seeds.headline_numbers(one, "stdcnn", one["claims"]["counted"])
    assert first == {key: s["values"][0] for key, s in section["models"]["stdcnn"].items()}
    assert first["iterative_uap_error_rate"] is not None and first["gradient_top5_fraction"] is not None
    for key in ("models", "spectrum", "universal", "comparison", "cost_verdict", "theory"):
        assert one[key] == both[key], key
