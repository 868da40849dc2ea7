"""The results pages: the committed README table and docs/results.md are the
generator's output from docs/metrics-default.json (and docs/metrics-sweep.json
where the sweep is published), the snapshots hold exactly what they show, and
a run without optional sections still gives pages."""

import copy
import doctest
import json
import re
from pathlib import Path

import pytest

from keras_uap.report import metrics_reader
from keras_uap.report.seeds import HEADLINES
from keras_uap.report.results_pages import README_BEGIN, README_END, main, make_pages, replace_readme_section
from keras_uap.report.sweep_report import CRITERION, FOLLOW_UP, FOLLOW_UP_CLAIM
from keras_uap.report.tables import display_name

REPO = Path(__file__).resolve().parents[1]
# The snapshot the generator wrote from a quick-profile run (`keras-uap run-all --quick`).
QUICK = REPO / "tests" / "fixtures" / "metrics-quick-profile.json"
# The sweep snapshot the generator wrote from `keras-uap sweep --quick` (StdCNN and GCNN at 0 and 180).
SWEEP_QUICK = REPO / "tests" / "fixtures" / "metrics-sweep-quick-profile.json"
SWEEP_HEADING = "## Beyond the paper: training-rotation sweep"
SEEDS_HEADING = "## What varies with the training seed"


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture()
def quick():
    return _load(QUICK)


@pytest.fixture()
def sweep():
    return _load(SWEEP_QUICK)


def test_committed_readme_table_and_results_page_are_generated_from_the_snapshots():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    snapshot, sweep_snapshot = REPO / "docs" / "metrics-default.json", REPO / "docs" / "metrics-sweep.json"
    seeds_snapshot = REPO / "docs" / "metrics-seeds.json"
    if not snapshot.exists():  # no default run committed: no numbers either
        assert readme[begin:end] == f"{README_BEGIN}\n{README_END}" and "No default run" in page
        assert not re.search(r"\d\.\d{3}", page)
        return
    # Without a published sweep the page has no sweep section.
    sweep = _load(sweep_snapshot) if sweep_snapshot.exists() else None
    seeds = _load(seeds_snapshot) if seeds_snapshot.exists() else None
    pages = make_pages(_load(snapshot), sweep, seeds)
    assert readme[begin:end] == pages.readme_section, "README results edited by hand: rerun results_pages"
    assert page == pages.results_page, ("docs/results.md edited by hand, or made without (or with) "
                                        "--sweep-metrics: rerun results_pages")
    assert pages.snapshot == _load(snapshot) and pages.sweep_snapshot == sweep and pages.seeds_snapshot == seeds
    assert (SWEEP_HEADING in page) == (sweep is not None) and (SEEDS_HEADING in page) == (seeds is not None)


def test_the_snapshot_holds_exactly_the_numbers_the_pages_show(quick):
    full = copy.deepcopy(quick)
    full["spectrum"]["gcnn"]["gradient"]["singular_values"] = [3.0, 2.0, 1.0]  # not shown
    full["models"]["gcnn"]["export_path"] = "/elsewhere/model.keras"
    full["timings"]["stages"] = {"data": 1.0}
    full["claims"]["counted"][0]["value"] = 0.5
    pages, again = make_pages(full), make_pages(quick)
    assert pages.snapshot == quick
    assert (pages.readme_section, pages.results_page) == (again.readme_section, again.results_page)


def test_the_pages_show_the_run_beside_the_paper(quick):
    pages = make_pages(quick)
    table = pages.readme_section
    assert table.startswith(README_BEGIN) and table.endswith(README_END)
    assert "| top-5 fraction of the gradient spectrum | 0.465 | 0.245 | 0.103 | > 0.10 (Sec. 3, Fig. 1) |" in table
    assert "| 75.3 | 67.8 | 52.1 | 78.9 / 68.8 / 69.0 (Table 1) |" in table
    assert "Of the 54 counted checks of the paper's claims, 40 hold, 8 do not hold and 6 cannot be judged" in table
    page = pages.results_page
    assert "| GCNN | 88.7, 87.9, 82.7, 73.8, 67.8 | 89.1, 88.3, 87.5, 84.3, 68.8 |" in page
    # The time ratio comes from `timings`, the verdict from the gradient evaluations.
    assert "| StdCNN | 25 | SVD-UAP (gradient) | 0.804 | 0.718 | 0.035 | 0.404 | yes |" in page
    assert "| GCNN | gradient | 0.100 | 5 of 5 | 1 of 1 | 30 | 0.305 (m = 100) |" in page
    assert "| StdCNN | gradient | 0.207 | 5 of 5 | uninformative at every m | 42 | 0.240 (m = 100) |" in page


def test_rates_near_a_threshold_keep_three_decimals_and_unreached_norms_give_the_max(quick):
    gcnn = quick["universal"]["gcnn"]
    gcnn["random"]["eps80"] = None
    gcnn["random"]["error_rate"] = [0.15, 0.5, 0.7964, None]
    quick["spectrum"]["stdcnn"]["gradient"]["top5_fraction"] = 0.0996
    table = make_pages(quick).readme_section
    assert "| same, random direction | not reached (max 0.733) | not reached (max 0.796) |" in table
    assert "| top-5 fraction of the gradient spectrum | 0.100 |" in table


def test_a_run_without_optional_sections_gives_shorter_pages(quick):
    for section in ("cost_verdict", "transfer", "theory", "claims"):
        del quick[section]
    for section in ("models", "spectrum", "invariant", "universal"):
        del quick[section]["roteqnet"]
    pages = make_pages(quick)
    assert "RotEqNet" not in pages.readme_section and "| StdCNN | GCNN | paper |" in pages.readme_section
    assert "counted checks" not in pages.readme_section and "iterative UAP" not in pages.readme_section
    for heading in ("Beyond the paper", "Section 5", "Each claim checked", "RotEqNet"):
        assert heading not in pages.results_page
    assert "## Universal perturbation along the top singular vector" in pages.results_page


def test_the_command_writes_the_pages_and_user_mistakes_exit_2(tmp_path, quick, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n\n{README_BEGIN}\nold\n{README_END}\n\nmore\n", encoding="utf-8")
    args = ["--metrics", str(QUICK), "--readme", str(readme), "--results", str(tmp_path / "results.md"),
            "--snapshot", str(tmp_path / "snapshot.json"), "--figures-dir", "", "--sweep-metrics", "",
            "--seeds-metrics", ""]
    main(args)
    pages = make_pages(quick)
    assert readme.read_text(encoding="utf-8") == f"# project\n\n{pages.readme_section}\n\nmore\n"
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == pages.results_page
    assert _load(tmp_path / "snapshot.json") == quick

    readme.write_text("# no markers\n", encoding="utf-8")
    for bad, message in ((args, "no results markers"), (["--metrics", str(tmp_path / "absent.json")], "cannot read")):
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_the_claims_are_shown_with_their_verdicts_and_counts(quick):
    quick["claims"]["counts"] = {"holds": 7, "does not hold": 2, "cannot be judged": 1}
    entry = dict(quick["claims"]["counted"][0], verdict="does not hold")
    quick["claims"]["counted"] = [entry]
    pages = make_pages(quick)
    counts = "Of the 10 counted checks of the paper's claims, 7 hold, 2 do not hold and 1 cannot be judged"
    assert counts in pages.readme_section and counts in pages.results_page
    criterion = quick["claims"]["criteria"][entry["claim"]]
    who = f"{display_name(entry['model'])} {display_name(entry['attack'])}"
    claim = f"{criterion['source']} (`{entry['claim']}`): {criterion['criterion']}".replace("|", "\\|")
    assert f"| {claim} | - | {who} | - |" in pages.results_page


def test_claims_whose_training_seeds_disagree_have_their_own_count_and_column(quick):
    quick["claims"]["counts"] = {"holds": 6, "does not hold": 2, "cannot be judged": 1, "seeds disagree": 1}
    entry = dict(quick["claims"]["counted"][0], verdict="seeds disagree")
    quick["claims"]["counted"] = [entry]
    pages = make_pages(quick)
    counts = ("Of the 10 counted checks of the paper's claims, 6 hold, 2 do not hold, 1 cannot be judged and 1 "
              "have training seeds that disagree (not counted as holding)")
    assert counts in pages.readme_section and counts in pages.results_page
    who = f"{display_name(entry['model'])} {display_name(entry['attack'])}"
    assert f"| - | - | - | {who} |" in pages.results_page
    assert make_pages(pages.snapshot).results_page == pages.results_page


def test_theorem2_counts_only_the_sample_sizes_where_its_bound_is_informative(quick):
    theory = quick["theory"]["gcnn"]["gradient"]
    theory["theorem2"] = [{"m": 100, "bound": None, "distance": 0.9},   # vacuous
                          {"m": 500, "bound": 1.6, "distance": 0.5},    # above √2: cannot fail
                          {"m": 1000, "bound": 0.4, "distance": 0.3},
                          {"m": 5000, "bound": 0.1, "distance": 0.2}]
    theory["theorem1_held_out"]["rows"] = [[0.1, 0.5, 0.4], [0.3, 0.2, 0.3], [0.9, 0.0, -0.5]]
    section = make_pages(quick).results_page.split("## Section 5")[1]
    row = next(line for line in section.splitlines() if line.startswith("| GCNN | gradient | "))
    assert row.split(" | ")[3:5] == ["1 of 2", "1 of 2"]


def test_replacing_the_section_keeps_the_rest_of_the_readme():
    text = f"a\n{README_BEGIN}\nx\n{README_END}\nb\n"
    assert replace_readme_section(text, "NEW") == "a\nNEW\nb\n"


def test_the_figures_the_pages_show_are_copied_from_the_run(tmp_path, quick):
    run = tmp_path / "run"
    (run / "report" / "figures").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(quick), encoding="utf-8")
    for name in ("gcnn_universal.png", "gcnn_theory.png"):
        (run / "report" / "figures" / name).write_bytes(b"png " + name.encode())
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n", encoding="utf-8")
    main(["--metrics", str(run / "metrics.json"), "--readme", str(readme), "--results", str(tmp_path / "results.md"),
          "--snapshot", str(tmp_path / "snapshot.json"), "--figures-dir", str(tmp_path / "figures")])
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["gcnn_universal.png"]
    assert (tmp_path / "figures" / "gcnn_universal.png").read_bytes() == b"png gcnn_universal.png"
    assert "figures/gcnn_universal.png" in (tmp_path / "results.md").read_text(encoding="utf-8")


def test_the_sweep_section_sets_each_models_table_and_verdict_beside_the_follow_ups_claim(quick, sweep):
    pages, without = make_pages(quick, sweep), make_pages(quick)
    assert pages.readme_section == without.readme_section and pages.snapshot == without.snapshot
    assert SWEEP_HEADING not in without.results_page and without.sweep_snapshot is None
    section = pages.results_page.split(SWEEP_HEADING)[1].split("\n## ")[0]
    assert pages.results_page.replace(SWEEP_HEADING + section + "\n", "") == without.results_page
    # The claim and the criterion are the sweep report's own words.
    assert f"{FOLLOW_UP} reports that {FOLLOW_UP_CLAIM}." in section and f"{CRITERION}." in section
    assert "`keras-uap sweep --augmentation 0,180 --models stdcnn,gcnn`" in section
    assert "measures it on 1,000 test images" in section
    assert "| 0° | 0.348 | 0.938 | 0.309 | 8.29 / 11.56 | > grid / 9.79 | > grid | 0.816 / 0.808 / 0.652 |" in section
    assert "| 180° | 0.846 | 0.852 | 0.888 | 4.98 / 4.87 | 5.66 / 5.25 | 19.93 | 0.862 / 0.832 / 0.306 |" in section
    assert section.index("### StdCNN") < section.index("### GCNN")
    assert "- GCNN: universal vulnerability grows with r: **holds**" in section
    assert "  - DeepFool: holds (fooling ε80 0°: above grid, 180°: 7.13)" in section
    for name in ("sweep_eps80.png", "sweep_accuracy.png"):
        assert f"(figures/{name})" in section


def test_the_sweep_snapshot_holds_exactly_the_sweep_numbers_the_page_shows(quick, sweep):
    full = copy.deepcopy(sweep)
    full["sweep"]["gcnn"]["0"]["rotated"]["gradient"]["top5_fraction"] = 0.2   # not shown
    full["sweep"]["gcnn"]["0"]["upright"]["invariance"] = 0.5
    full["sweep_reading"]["gcnn"]["attacks"]["gradient"]["extra"] = 1
    pages = make_pages(quick, full)
    assert pages.sweep_snapshot == sweep
    assert make_pages(quick, pages.sweep_snapshot).results_page == pages.results_page
    # A verdict or a number changed in the snapshot changes the page.
    full["sweep_reading"]["stdcnn"]["verdict"] = "does not hold"
    full["sweep"]["stdcnn"]["180"]["rotated"]["accuracy"] = 0.25
    changed = make_pages(quick, full).results_page
    assert "- StdCNN: universal vulnerability grows with r: **does not hold**" in changed
    assert "| 180° | 0.250 | 0.636 |" in changed


def test_the_command_adds_the_sweep_with_its_snapshot_and_figures(tmp_path, quick, sweep, capsys):
    run, sweep_run = tmp_path / "run", tmp_path / "sweep"
    for path, metrics in ((run, quick), (sweep_run, sweep)):
        (path / "report" / "figures").mkdir(parents=True)
        (path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    for name in ("sweep_eps80.png", "sweep_accuracy.png", "sweep_other.png"):
        (sweep_run / "report" / "figures" / name).write_bytes(b"png " + name.encode())
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n", encoding="utf-8")
    args = ["--metrics", str(run / "metrics.json"), "--readme", str(readme), "--results", str(tmp_path / "results.md"),
            "--snapshot", str(tmp_path / "snapshot.json"), "--figures-dir", str(tmp_path / "figures"),
            "--sweep-snapshot", str(tmp_path / "sweep-snapshot.json"), "--seeds-metrics", ""]
    main([*args, "--sweep-metrics", str(sweep_run / "metrics.json")])
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == make_pages(quick, sweep).results_page
    assert _load(tmp_path / "sweep-snapshot.json") == sweep
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["sweep_accuracy.png", "sweep_eps80.png"]
    assert (tmp_path / "figures" / "sweep_eps80.png").read_bytes() == b"png sweep_eps80.png"

    # A run-all metrics.json given as the sweep's is a one-line error with exit code 2.
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--sweep-metrics", str(run / "metrics.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "is not a sweep's metrics.json (no `sweep` section)" in err
    assert err.count("\n") == 1


def _seeds_metrics():
    """A several-seed run's `seeds` section (`seeds.seeds_section`'s layout), RotEqNet over seeds 0, 1, 2."""
    numbers = {key: {"values": [0.9, 0.8, None], "mean": 0.85, "min": 0.8, "max": 0.9} for key in HEADLINES}
    numbers["test_accuracy"] = {"values": [0.9709, 0.9757, 0.9688], "mean": 0.9718, "min": 0.9688, "max": 0.9757}
    numbers["claims_holds"] = {"values": [14, 13, 14], "mean": 41 / 3, "min": 13, "max": 14}
    return {"seeds": {"training_seeds": [0, 1, 2], "models": {"roteqnet": numbers}}, "models": {"roteqnet": {}}}


def test_the_seeds_section_shows_each_number_per_seed_from_its_snapshot(quick):
    seeds = _seeds_metrics()
    pages = make_pages(quick, seeds=seeds)
    page = pages.results_page
    assert SEEDS_HEADING in page and SEEDS_HEADING not in make_pages(quick).results_page
    assert "`keras-uap run-all --models roteqnet --training-seeds 0,1,2`" in page
    assert "| RotEqNet | test accuracy (rotated test set) | 0.9709 | 0.9757 | 0.9688 | 0.9718 | 0.9688 – 0.9757 |" \
        in page
    assert "| RotEqNet | counted claims that hold | 14 | 13 | 14 | 13.7 | 13 – 14 |" in page
    # The snapshot holds exactly the section's numbers and remakes the same page.
    assert pages.seeds_snapshot == {"seeds": seeds["seeds"]}
    assert make_pages(quick, seeds=pages.seeds_snapshot).results_page == page
    seeds["seeds"]["models"]["roteqnet"]["test_accuracy"]["values"][1] = 0.5
    assert "| 0.9709 | 0.5000 | 0.9688 |" in make_pages(quick, seeds=seeds).results_page


def test_the_command_takes_the_sweep_and_seeds_sections_from_their_snapshots_by_default(tmp_path, quick, sweep,
                                                                                       capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n", encoding="utf-8")
    sweep_snapshot, seeds_snapshot = tmp_path / "sweep-snapshot.json", tmp_path / "seeds-snapshot.json"
    args = ["--metrics", str(QUICK), "--readme", str(readme), "--results", str(tmp_path / "results.md"),
            "--snapshot", str(tmp_path / "snapshot.json"), "--figures-dir", "",
            "--sweep-snapshot", str(sweep_snapshot), "--seeds-snapshot", str(seeds_snapshot)]
    main(args)  # no snapshots: no sections
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == make_pages(quick).results_page
    seeds = make_pages(quick, seeds=_seeds_metrics()).seeds_snapshot
    sweep_snapshot.write_text(json.dumps(sweep), encoding="utf-8")
    seeds_snapshot.write_text(json.dumps(seeds), encoding="utf-8")
    main(args)
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == make_pages(quick, sweep, seeds).results_page
    main([*args, "--sweep-metrics", "", "--seeds-metrics", ""])
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == make_pages(quick).results_page
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--seeds-metrics", str(QUICK)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no `seeds` section" in err and err.count("\n") == 1


def test_the_metrics_reader_examples_run():
    results = doctest.testmod(metrics_reader)
    assert results.attempted > 0 and results.failed == 0
