"""The `keras-uap` command line: one command per stage, plus `run-all`, and
`study` for the user's own model and data.

Every command is a thin layer over `keras_uap.pipelines.study` (or
`keras_uap.pipelines.user_study`); user mistakes end with a one-line error on
stderr and exit code 2.
"""

import dataclasses
import enum
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

import keras_uap
from keras_uap.errors import UserError
from keras_uap.method import ATTACK_NAMES, PAPER_ATTACKS

app = typer.Typer(
    help="Universal adversarial perturbations of equivariant networks (StdCNN, GCNN, RotEqNet) on rotated MNIST.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool):
    if value:
        from keras_uap import __version__

        typer.echo(f"keras-uap {__version__}")
        raise typer.Exit()


@app.callback()
def _app_options(
    version: Annotated[bool, typer.Option("--version", metavar=" ", callback=_show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
):
    pass


class ModelName(str, enum.Enum):
    stdcnn = "stdcnn"
    gcnn = "gcnn"
    roteqnet = "roteqnet"


# The registry's attacks, and "all".
AttackName = enum.Enum("AttackName", {name: name for name in (*ATTACK_NAMES, "all")}, type=str)


class DatasetName(str, enum.Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"


DatasetOpt = Annotated[DatasetName, typer.Option(help="Dataset to use.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(help="Directory holding the dataset's four IDX files (train-images-idx3-ubyte, "
                      "train-labels-idx1-ubyte, t10k-..., .gz or plain); default: $KERAS_UAP_DATA_DIR, for "
                      "fashion_mnist the Debian package's /usr/share/datasets/fashion-mnist, then "
                      "tensorflow-datasets. Give the same directory to every stage command of a run "
                      "(or set $KERAS_UAP_DATA_DIR): it is part of the data stage's cache key."),
]
SeedOpt = Annotated[int, typer.Option(min=0, help="Seed for rotations, initialisation and shuffling.")]
RunDirOpt = Annotated[Optional[Path], typer.Option(help="Where stage artifacts and TensorBoard logs go "
                                                        "(default: runs/default; runs/quick with --quick).")]
ExportDirOpt = Annotated[Optional[Path], typer.Option(help="Where models are exported as <dataset>-<model>/ "
                                                           "(default: saved_models).")]
EpochsOpt = Annotated[Optional[int], typer.Option(min=1, help="Training epochs of every model (default: 10, "
                                                               "RotEqNet 2; with --quick 3, RotEqNet 1).")]
# metavar " ": a flag takes no value, which the default "<bool>" hides.
QuickOpt = Annotated[bool, typer.Option("--quick", metavar=" ",
                                        help="Smoke run: small data subsets and few epochs.")]
ModelsOpt = Annotated[str, typer.Option(help="Comma-separated models to study, e.g. stdcnn,gcnn.")]
ForceOpt = Annotated[bool, typer.Option("--force", metavar=" ",
                                        help="Redo stages even when their cached result is valid.")]
TrainingSeedsOpt = Annotated[Optional[str], typer.Option(
    help="Comma-separated seeds to train every model with, --seed among them, e.g. 0,1,2 (default: --seed "
         "alone). Each model's stages, from training to the comparison, run once per seed (about N times their "
         "cost), on the same attacked inputs; the report adds each number's mean and range over the seeds and "
         "marks a claim whose seeds disagree. Models of seed s other than --seed go to "
         "<export-dir>/<dataset>-<model>-seed<s>.")]


class StrategyName(str, enum.Enum):
    none = "none"
    mirrored = "mirrored"


StrategyOpt = Annotated[StrategyName, typer.Option(
    help="mirrored: attack and evaluate data-parallel over the local GPUs (tf.distribute.MirroredStrategy); "
         "the numbers and the cache are those of one device.")]


def _log(line):
    typer.echo(f"[keras-uap] {line}", err=True)


def _progress_bar():
    """A `progress(done, total)` callable drawing a rich progress bar on stderr;
    each loop that reaches its total closes its bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    state = {}

    def update(done, total):
        if "bar" not in state:
            state["bar"] = Progress("  ", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                    console=Console(stderr=True))
            state["task"] = state["bar"].add_task("", total=total)
            state["bar"].start()
        state["bar"].update(state["task"], completed=done)
        if done >= total:
            state.pop("bar").stop()

    return update


def _training_seeds(text):
    """`--training-seeds` as a tuple of seeds; () when not given (the run's seed alone)."""
    if text is None:
        return ()
    seeds = _number_list("--training-seeds", text, int)
    if not seeds:
        raise UserError(f"--training-seeds must list at least one seed, got {text!r}")
    return seeds


def _config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force, training_seeds=None,
            strategy=StrategyName.none):
    from keras_uap.pipelines.study import StudyConfig, quick_config

    # Each option sets the stage field of its name ("stage.field").
    params = {"data.dataset": dataset.value, "train.epochs": epochs}
    overrides = dict(run_dir=run_dir and str(run_dir), export_dir=export_dir and str(export_dir),
                     data_dir=data_dir and str(data_dir), seed=seed, force=force, strategy=strategy.value,
                     training_seeds=_training_seeds(training_seeds),
                     verbose=1 if sys.stderr.isatty() else 2, progress=_progress_bar(),
                     user_set=("train.epochs",) if epochs is not None else ())
    if quick:
        return quick_config(params, **overrides).validate()
    cfg = StudyConfig(**{k: v for k, v in overrides.items() if v is not None})
    return cfg.replace_params(**{k: v for k, v in params.items() if v is not None}).validate()


@app.command()
def data(
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Load the dataset, split it 55,000/5,000/10,000 (5,000/500/1,000 with --quick) and rotate validation
    and test once (saved as npz)."""
    _import_tensorflow_quietly()
    from keras_uap.pipelines.study import prepare_data

    cfg = _config(quick, run_dir, None, dataset, data_dir, seed, None, force)
    result = prepare_data(cfg, _log)
    typer.echo(f"{result.output_dir}  {result.summary}")


@app.command()
def train(
    model: Annotated[ModelName, typer.Option(help="Which model to train: the paper's Table 2 StdCNN or GCNN, "
                                                  "or RotEqNet.")],
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    export_dir: ExportDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Train StdCNN, GCNN or RotEqNet with random rotations and export a SavedModel and a .keras file."""
    _import_tensorflow_quietly()
    from keras_uap.pipelines.study import train as train_model

    cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force)
    result = train_model(cfg, model.value, _log)
    typer.echo(f"{result.output_dir}  test accuracy {result.summary['test_accuracy']:.4f}")


@app.command()
def directions(
    model: Annotated[ModelName, typer.Option(help="Which exported model to attack.")],
    attack: Annotated[AttackName, typer.Option(help="Which attack's directions to collect.")] = AttackName.all,
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    export_dir: ExportDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
    strategy: StrategyOpt = StrategyName.none,
):
    """Collect per-input attack directions (loss gradient, FGSM unclipped and clipped, DeepFool, PGD) of an
    exported model on the rotated test set; saved as npz with labels, success and norms."""
    _import_tensorflow_quietly()
    from keras_uap.pipelines.study import collect_directions, prepare_data

    cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, None, force, strategy=strategy)
    data_result = None
    for name in ATTACK_NAMES if attack is AttackName.all else (attack.value,):
        data_result = data_result or prepare_data(cfg, _log)
        result = collect_directions(cfg, model.value, name, _log, data=data_result)
        summary = result.summary
        typer.echo(f"{model.value}-{name}: n={summary['n']} success={summary['success_rate']:.3f} "
                   f"median L2={summary['median_l2']:.3f}  {result.output_dir}")


def _model_list(text):
    from keras_uap.pipelines.study import check_models

    models = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    check_models(models)
    return models


@app.command("run-all")
def run_all(
    models: ModelsOpt = "stdcnn,gcnn,roteqnet",
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    export_dir: ExportDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
    training_seeds: TrainingSeedsOpt = None,
    strategy: StrategyOpt = StrategyName.none,
    no_comparison: Annotated[bool, typer.Option(
        "--no-comparison", metavar=" ",
        help="Skip the comparison of SVD-UAP with the iterative UAP, class-mean and random directions "
             "(L2, L-infinity, cost) and the transfer across models.")] = False,
):
    """Run the whole study: data; train and export StdCNN, GCNN and RotEqNet; attack directions; spectra and
    invariant directions; universal-attack curves; SVD-UAP against the baselines and transfer; report,
    metrics.json and TensorBoard. Stages whose inputs and parameters are unchanged are reused; an
    interrupted run resumes where it stopped."""
    _import_tensorflow_quietly()
    import dataclasses

    from keras_uap.pipelines.study import run_all as run_study

    chosen = _model_list(models)
    cfg = dataclasses.replace(_config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force,
                                      training_seeds, strategy), comparison_enabled=not no_comparison)
    _echo_results(run_study(cfg, models=chosen, log=_log))


def _stage_command(stage, help_text):
    """Registers `keras-uap <stage>`: `run_all(until=stage)`, so the stages it
    needs are reused from the cache (or run) and --force redoes this one only."""

    def command(
        models: ModelsOpt = "stdcnn,gcnn,roteqnet",
        dataset: DatasetOpt = DatasetName.mnist,
        data_dir: DataDirOpt = None,
        seed: SeedOpt = 0,
        run_dir: RunDirOpt = None,
        export_dir: ExportDirOpt = None,
        quick: QuickOpt = False,
        force: ForceOpt = False,
        training_seeds: TrainingSeedsOpt = None,
        strategy: StrategyOpt = StrategyName.none,
    ):
        _import_tensorflow_quietly()
        from keras_uap.pipelines.study import run_all as run_study

        chosen = _model_list(models)
        cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, None, force, training_seeds, strategy)
        _echo_results(run_study(cfg, models=chosen, log=_log, until=stage))

    command.__doc__ = help_text
    app.command(stage)(command)


def _echo_results(results):
    for name, result in results.items():
        state = "cached" if result.cached else f"{result.duration_s:.1f} s"
        typer.echo(f"{name:32s} {state:>10s}  {result.output_dir}")


_NEEDS_EXPORTS = " Reuses (or runs) the stages it needs; the models must be exported (`keras-uap train`)."
for _stage, _help in (
    ("analyse", "Spectra, invariant directions and theory checks of each model's attack directions." + _NEEDS_EXPORTS),
    ("universal", "Universal-attack curves of each model's SVD perturbations (`report` publishes them)."
     + _NEEDS_EXPORTS),
    ("compare", "SVD-UAP against the iterative UAP, class-mean and random directions (L2, L-infinity, cost)."
     + _NEEDS_EXPORTS),
    ("transfer", "Each model's universal perturbations applied to every model." + _NEEDS_EXPORTS),
    ("report", "report.md, metrics.json, figures and TensorBoard; publishes metrics.json and perturbations/. "
               "Reuses (or runs) every stage, training models whose export is missing."),
):
    _stage_command(_stage, _help)


@app.command()
def sweep(
    augmentation: Annotated[Optional[str], typer.Option(
        help="Comma-separated training rotation ranges r in degrees, 0 to 180: each model is trained with its "
             "inputs rotated uniformly in [-r, r] (default: 0,45,90,180; with --quick 0,180).")] = None,
    models: ModelsOpt = "stdcnn,gcnn",
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    run_dir: Annotated[Optional[Path], typer.Option(
        help="Where stage artifacts, report/sweep.md and metrics.json go; not a run-all run directory "
             "(default: runs/sweep; runs/sweep-quick with --quick).")] = None,
    export_dir: Annotated[Optional[Path], typer.Option(
        help="Where models are exported as <dataset>-<model>-rot<r>/ (default: saved_models; "
             "<run-dir>/saved_models with --quick).")] = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Beyond the paper: train each model at each training rotation range and measure, on upright and on
    rotated test inputs, clean accuracy, rotation invariance, the top-5 spectrum fraction, the SVD-UAPs
    of m = 100 and of all attacked inputs (gradient and DeepFool) beside random directions; then read
    whether universal vulnerability grows with the range (arXiv 2006.04449) by a criterion fixed in code.
    Every step is cached: a rerun with one more range trains and measures only that range."""
    _import_tensorflow_quietly()
    from keras_uap.pipelines.sweep import DEFAULT_RANGES, QUICK_RANGES, check_ranges, run_sweep, sweep_model_settings

    ranges = check_ranges(_number_list("--augmentation", augmentation, float) if augmentation is not None
                          else QUICK_RANGES if quick else DEFAULT_RANGES)
    chosen = _model_list(models)

    run_dir = run_dir or Path("runs/sweep-quick" if quick else "runs/sweep")
    cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force)
    if not quick:
        cfg = dataclasses.replace(cfg, model_settings=sweep_model_settings(cfg.model_settings))
    _echo_results(run_sweep(cfg, models=chosen, ranges=ranges, log=_log))
    typer.echo(f"report: {run_dir / 'report' / 'sweep.md'}  metrics: {run_dir / 'metrics.json'}")



def _number_list(option, text, kind):
    """`text` ("1,2,4") as a tuple of `kind`, or a UserError naming `option`."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"{option} must be comma-separated {'integers' if kind is int else 'numbers'}, "
                        f"got {text!r}") from None


# The `study` options that set a stage field of `UserStudyConfig`; a
# `--no-...` switch sets its field to the value that switches it off.
_STUDY_FIELDS = {"split": "user_data.split", "limit": "user_data.limit", "clip_min": "user_data.clip_min",
                 "clip_max": "user_data.clip_max", "sample_sizes": "universal.sample_sizes",
                 "eps": "universal.eps_grid", "linf_eps": "comparison.linf_grid",
                 "no_linf_curves": "universal.linf_grid", "no_sample_spectra": "universal.spectrum_top"}


@app.command()
def study(
    model_path: Annotated[Path, typer.Option(help="Your classifier: a .keras file or a TF SavedModel directory.")],
    data: Annotated[str, typer.Option(help="Your labelled images: an .npz with arrays x and y, a directory of "
                                           "IDX files, or a tensorflow-datasets name.")],
    split: Annotated[str, typer.Option(help="Split to load: test or train of an IDX directory; x_<split>, y_<split> "
                                            "of an npz (an npz with plain x, y is the split test); any TFDS split.")] = (
        "test"),
    clip_min: Annotated[float, typer.Option(help="Smallest valid pixel value.")] = 0.0,
    clip_max: Annotated[float, typer.Option(help="Largest valid pixel value.")] = 1.0,
    attacks: Annotated[str, typer.Option(help=f"Comma-separated attacks among: {', '.join(ATTACK_NAMES)}.")] = (
        ",".join(PAPER_ATTACKS)),
    sample_sizes: Annotated[str, typer.Option(help="Comma-separated numbers m of attacked inputs per SVD "
                                                   "(at most all inputs).")] = (
        "100,500"),
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N inputs (default: all).")] = None,
    eps: Annotated[Optional[str], typer.Option(help="Comma-separated L2 norms of the curves, also those over which "
                                                    "each vector's sign is chosen (default: run-all's grid, 1 to 20, "
                                                    "scaled to the inputs' size and range as the API's sign norms).")] = None,
    linf_eps: Annotated[Optional[str], typer.Option(help="Comma-separated L-infinity budgets of the L-infinity "
                                                         "curves and the comparison (default: 0.05 to 0.3 times "
                                                         "clip-max minus clip-min).")] = None,
    strategy: StrategyOpt = StrategyName.none,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the samples of attacked inputs.")] = 0,
    run_dir: Annotated[Path, typer.Option(help="Where stage artifacts, metrics.json and perturbations/ go.")] = (
        Path("runs/study")),
    force: ForceOpt = False,
    no_analysis: Annotated[bool, typer.Option(
        "--no-analysis", metavar=" ", help="Skip the spectra and theory checks of the attack directions.")] = False,
    no_comparison: Annotated[bool, typer.Option(
        "--no-comparison", metavar=" ",
        help="Skip the comparison of SVD-UAP with the iterative UAP, class-mean and random directions "
             "(L2, L-infinity, cost).")] = False,
    no_linf_curves: Annotated[bool, typer.Option(
        "--no-linf-curves", metavar=" ",
        help="Skip the L-infinity curves of every perturbation's sign beside random sign vectors.")] = False,
    no_sample_spectra: Annotated[bool, typer.Option(
        "--no-sample-spectra", metavar=" ",
        help="Skip recording the top singular values of each sample the perturbations are built from.")] = False,
):
    """Run run-all's stages on your own model and data: attack directions, their spectrum and the theory
    checks, the SVD universal perturbation per attack and sample size with its sample's singular values, error
    and fooling rates against the L2 norm and of its sign against the L-infinity norm beside random directions,
    SVD-UAP against the iterative UAP and class-mean directions under L2
    and L-infinity, and a report. Cached and resumable like run-all."""
    _import_tensorflow_quietly()
    from keras_uap.pipelines.user_study import UserDataParams, UserStudyConfig, run_user_study

    options = {"split": split, "limit": limit, "clip_min": clip_min, "clip_max": clip_max,
               "sample_sizes": _number_list("--sample-sizes", sample_sizes, int),
               "eps": None if eps is None else _number_list("--eps", eps, float),
               "linf_eps": None if linf_eps is None else _number_list("--linf-eps", linf_eps, float),
               "no_linf_curves": () if no_linf_curves else None,
               "no_sample_spectra": 0 if no_sample_spectra else None}
    chosen = tuple(dict.fromkeys(a.strip() for a in attacks.split(",") if a.strip()))
    cfg = UserStudyConfig(UserDataParams(str(model_path), data), attacks=chosen, analysis_enabled=not no_analysis,
                          comparison_enabled=not no_comparison, strategy=strategy.value, seed=seed,
                          run_dir=str(run_dir), force=force, progress=_progress_bar())
    cfg = cfg.replace_params(**{_STUDY_FIELDS[name]: value for name, value in options.items() if value is not None})
    _echo_results(run_user_study(cfg, log=_log))
    typer.echo(f"metrics: {run_dir / 'metrics.json'}  report: {run_dir / 'user_report' / 'report.md'}")


def _import_tensorflow_quietly():
    """Imports TensorFlow and initialises its devices with stderr silenced.

    TF 2.21 writes oneDNN and CUDA notices (and, on a machine without a GPU, a
    "failed call to cuInit" error) from C++ before TF_CPP_MIN_LOG_LEVEL is
    read; they would open every command's output. What TF writes is shown
    after all if the import fails. Called by each command once its arguments
    are parsed, so that a usage error does not wait for TensorFlow.
    """
    import tempfile

    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (OSError, ValueError):  # no descriptor behind stderr (e.g. captured by a test runner)
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, fd)
            sink.seek(0)
            sys.stderr.buffer.write(sink.read())
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def main(argv=None):
    """Entry point of the `keras-uap` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not keras_uap._TF_LOG_LEVEL_FROM_USER:
        # TF 2.21 logs harmless C++ "errors" while training (a tf.data attribute its
        # kernels do not know, oneDNN's int32 fallback); real failures still raise.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        code = app(args=argv or ["--help"], prog_name="keras-uap", standalone_mode=False)
    except TyperException as exc:  # usage errors: unknown option, bad choice, out of range
        # Typer words a bad choice as pydantic does ("Value error, 'x' is not one of ...") and
        # lists the choices of a missing option one per line.
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        typer.echo(f"keras-uap: error: {message}", err=True)
        sys.exit(2)
    except UserError as exc:
        typer.echo(f"keras-uap: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # the environment, not the code: a full disk, a directory removed mid-run
        typer.echo(f"keras-uap: error: {exc}", err=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("keras-uap: interrupted; completed stages are kept, rerun to resume", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
