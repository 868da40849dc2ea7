"""The results pages: the committed README table and docs/results.md are the
generator's output from docs/metrics-default.json, the snapshot holds exactly
what they show, and a run without optional sections still gives pages."""

import copy
import json
import re
from pathlib import Path

import pytest

from keras_uap.report.results_pages import README_BEGIN, README_END, main, make_pages, replace_readme_section

REPO = Path(__file__).resolve().parents[1]
# The snapshot the generator wrote from a quick-profile run (`keras-uap run-all --quick`).
QUICK = REPO / "tests" / "fixtures" / "metrics-quick-profile.json"


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture()
def quick():
    return _load(QUICK)


def test_committed_readme_table_and_results_page_are_generated_from_the_snapshot():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    snapshot = REPO / "docs" / "metrics-default.json"
    if not snapshot.exists():  # no default run committed: no numbers either
        assert readme[begin:end] == f"{README_BEGIN}\n{README_END}" and "No default run" in page
        assert not re.search(r"\d\.\d{3}", page)
        return
    pages = make_pages(_load(snapshot))
    assert readme[begin:end] == pages.readme_section, "README results edited by hand: rerun results_pages"
    assert page == pages.results_page, "docs/results.md edited by hand: rerun results_pages"
    assert pages.snapshot == _load(snapshot)


def test_the_snapshot_holds_exactly_the_numbers_the_pages_show(quick):
    full = copy.deepcopy(quick)
    full["spectrum"]["gcnn"]["gradient"]["singular_values"] = [3.0, 2.0, 1.0]  # not shown
    full["models"]["gcnn"]["export_path"] = "/elsewhere/model.keras"
    full["timings_s"] = {"data": 1.0}
    pages, again = make_pages(full), make_pages(quick)
    assert pages.snapshot == quick
    assert (pages.readme_section, pages.results_page) == (again.readme_section, again.results_page)


def test_the_pages_show_the_run_beside_the_paper(quick):
    pages = make_pages(quick)
    table = pages.readme_section
    assert table.startswith(README_BEGIN) and table.endswith(README_END)
    assert "| top-5 fraction of the gradient spectrum | 0.465 | 0.245 | 0.102 | > 0.10 (Sec. 3, Fig. 1) |" in table
    assert "| 75.3 | 67.8 | 53.9 | 78.9 / 68.8 / 69.0 (Table 1) |" in table
    assert "44 of the 51 checks of the paper's claims agree" in table
    page = pages.results_page
    assert "| GCNN | 88.7, 87.9, 82.7, 73.8, 67.8 | 89.1, 88.3, 87.5, 84.3, 68.8 |" in page
    assert "| StdCNN | 50 | SVD-UAP (gradient) | 0.807 | 0.781 | 0.051 | 0.061 | yes |" in page


def test_rates_near_a_threshold_keep_three_decimals_and_unreached_norms_give_the_max(quick):
    gcnn = quick["universal"]["gcnn"]
    gcnn["random"]["eps80"] = None
    gcnn["random"]["error_rate"] = [0.15, 0.5, 0.7964, None]
    quick["spectrum"]["stdcnn"]["gradient"]["top5_fraction"] = 0.0996
    table = make_pages(quick).readme_section
    assert "| same, random direction | not reached (max 0.733) | not reached (max 0.796) |" in table
    assert "| top-5 fraction of the gradient spectrum | 0.100 |" in table


def test_a_run_without_optional_sections_gives_shorter_pages(quick):
    for section in ("cost_verdict", "transfer", "theory", "reading"):
        del quick[section]
    for section in ("models", "spectrum", "invariant", "universal"):
        del quick[section]["roteqnet"]
    pages = make_pages(quick)
    assert "RotEqNet" not in pages.readme_section and "| StdCNN | GCNN | paper |" in pages.readme_section
    assert "checks of the paper's claims" not in pages.readme_section and "iterative UAP" not in pages.readme_section
    for heading in ("Beyond the paper", "Section 5", "Each claim checked", "RotEqNet"):
        assert heading not in pages.results_page
    assert "## Universal perturbation along the top singular vector" in pages.results_page


def test_the_command_writes_the_pages_and_user_mistakes_exit_2(tmp_path, quick, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n\n{README_BEGIN}\nold\n{README_END}\n\nmore\n", encoding="utf-8")
    args = ["--metrics", str(QUICK), "--readme", str(readme), "--results", str(tmp_path / "results.md"),
            "--snapshot", str(tmp_path / "snapshot.json"), "--figures-dir", ""]
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
