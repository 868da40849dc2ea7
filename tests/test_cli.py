import pytest
from idx_helpers import fake_dataset

from keras_uap.cli import main


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_help_lists_commands(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "run-all" in out and "study" in out
    for stage in ("data", "train", "directions", "analyse", "universal", "compare", "transfer", "report"):
        assert f" {stage} " in out, stage


def test_every_model_can_be_chosen(capsys):
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0 and "roteqnet" in out
    code, out, _ = _run(capsys, "run-all", "--help")
    assert code == 0 and "--models" in out and "stdcnn,gcnn,roteqnet" in out


@pytest.mark.parametrize("argv,expected", [
    (["train", "--model", "resnet"], "'resnet' is not one of"),
    (["train", "--model", "gcnn", "--epochs", "-1"], "--epochs"),
    (["data", "--data-dir", "/no/such/dir"], "/no/such/dir: data directory not found"),
    (["data", "--dataset", "cifar"], "'cifar' is not one of"),
    (["run-all", "--models", "stdcnn,resnet"], "unknown model 'resnet'; choose from: stdcnn, gcnn, roteqnet"),
    (["run-all", "--models", " , "], "no model chosen"),
    (["universal", "--models", "resnet"], "unknown model 'resnet'; choose from: stdcnn, gcnn, roteqnet"),
    (["train"], "Missing option '--model'. Choose from: stdcnn, gcnn, roteqnet"),
    (["data", "--seed", "-1"], "'--seed'"),
    (["study", "--model-path", "m.keras", "--data", "d.npz", "--seed", "-3"], "'--seed'"),
    (["run-all", "--training-seeds", "0,x"], "--training-seeds must be comma-separated integers, got '0,x'"),
    (["run-all", "--training-seeds", "1,2"], "--training-seeds must include the run's --seed 0"),
    (["run-all", "--seed", "1", "--training-seeds", "0,1,1"], "--training-seeds lists a seed twice: 0,1,1"),
    (["run-all", "--training-seeds", "0,-1"], "--training-seeds must be integers >= 0, got 0,-1"),
    (["report", "--training-seeds", ","], "--training-seeds must list at least one seed"),
    (["run-all", "--strategy", "tpu"], "'tpu' is not one of 'none', 'mirrored'"),
    (["compare", "--strategy", "multi_worker"], "'multi_worker' is not one of 'none', 'mirrored'"),
])
def test_user_errors_are_one_line_with_exit_2(capsys, argv, expected):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert expected in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_every_command_that_attacks_or_evaluates_takes_a_strategy(capsys):
    for command in ("directions", "analyse", "universal", "compare", "transfer", "report", "run-all", "study"):
        code, out, _ = _run(capsys, command, "--help")
        assert code == 0 and "--strategy" in out and "mirrored" in out, command


@pytest.mark.parametrize("argv", [["run-all"], ["compare"], ["directions", "--model", "gcnn"]])
def test_the_strategy_reaches_the_study_config(capsys, monkeypatch, tmp_path, argv):
    from keras_uap.pipelines import study
    from keras_uap.pipelines.runner import StageResult

    seen = []
    done = StageResult(str(tmp_path), {"n": 1, "success_rate": 1.0, "median_l2": 1.0}, True, 0.0)
    # The study's entry points, replaced by recorders of the configuration they are given.
    monkeypatch.setattr(study, "run_all", lambda cfg, **kwargs: seen.append(cfg) or {})
    monkeypatch.setattr(study, "prepare_data", lambda cfg, log=None: seen.append(cfg) or done)
    monkeypatch.setattr(study, "collect_directions", lambda cfg, *args, **kwargs: seen.append(cfg) or done)
    code, _, err = _run(capsys, *argv, "--strategy", "mirrored", "--run-dir", str(tmp_path))
    assert code == 0, err
    assert seen and all(cfg.strategy == "mirrored" for cfg in seen)


def test_corrupt_data_dir_names_the_file(capsys, tmp_path):
    fake_dataset(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    code, _, err = _run(capsys, "data", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "train-images-idx3-ubyte" in err and "truncated" in err
    assert not (tmp_path / "run" / "data").exists()


def test_data_command_on_real_mnist(capsys, tmp_path, mnist_dir):
    code, out, _ = _run(capsys, "data", "--quick", "--data-dir", mnist_dir, "--run-dir", str(tmp_path))
    assert code == 0 and "'test': 1000" in out
    code, _, err = _run(capsys, "data", "--quick", "--data-dir", mnist_dir, "--run-dir", str(tmp_path))
    assert code == 0 and "up to date" in err


@pytest.mark.parametrize("argv", [["directions", "--model", "gcnn"], ["analyse", "--models", "gcnn"]])
def test_a_stage_without_an_export_names_the_command_that_makes_it(capsys, tmp_path, mnist_dir, argv):
    code, _, err = _run(capsys, *argv, "--quick", "--data-dir", mnist_dir, "--run-dir", str(tmp_path),
                        "--export-dir", str(tmp_path / "none"))
    assert code == 2 and "keras-uap train --model gcnn" in err and "Traceback" not in err


def test_version(capsys):
    from keras_uap import __version__

    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"keras-uap {__version__}"


def test_bad_directories_are_one_line_errors(capsys, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("")
    (tmp_path / "idx").mkdir()
    fake_dataset(tmp_path / "idx")
    data = ["--data-dir", str(tmp_path / "idx")]
    cases = [
        (["data", "--run-dir", str(afile), *data], f"--run-dir {afile}: is a file, not a directory"),
        (["data", "--run-dir", str(afile / "sub"), *data], f"lies under the file {afile}"),
        (["train", "--model", "gcnn", "--run-dir", str(tmp_path / "run"), "--export-dir", str(afile), *data],
         f"--export-dir {afile}: is a file"),
        (["data", "--data-dir", str(afile)], f"{afile}: data directory is a file, not a directory"),
    ]
    for argv, expected in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and expected in err and err.strip().count("\n") == 0, err
    monkeypatch.setenv("KERAS_UAP_DATA_DIR", str(tmp_path / "nope"))
    code, _, err = _run(capsys, "data", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "data directory (from $KERAS_UAP_DATA_DIR) not found" in err, err
    assert not (tmp_path / "run").exists()


def test_usage_errors_do_not_wait_for_tensorflow():
    import subprocess
    import sys

    code = ("import sys\nfrom keras_uap.cli import main\ntry:\n    main(['train', '--model', 'resnet'])\n"
            "except SystemExit as exit:\n    print(exit.code, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr[-2000:]
