"""The `keras-uap` command line: one command per stage, plus `run-all`.

Every command is a thin layer over `keras_uap.pipelines.study`; user mistakes
end with a one-line error on stderr and exit code 2.
"""

import enum
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

from keras_uap.errors import UserError

app = typer.Typer(
    help="Universal adversarial perturbations of equivariant networks (StdCNN, GCNN) on rotated MNIST.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ModelName(str, enum.Enum):
    stdcnn = "stdcnn"
    gcnn = "gcnn"


class AttackName(str, enum.Enum):
    gradient = "gradient"
    fgsm = "fgsm"
    fgsm_clipped = "fgsm_clipped"
    deepfool = "deepfool"
    all = "all"


class DatasetName(str, enum.Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"


DatasetOpt = Annotated[DatasetName, typer.Option(help="Dataset to use.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(help="Directory holding the four MNIST IDX files (.gz or plain); default: "
                      "$KERAS_UAP_DATA_DIR, then tensorflow-datasets."),
]
SeedOpt = Annotated[int, typer.Option(help="Seed for rotations, initialisation and shuffling.")]
RunDirOpt = Annotated[Optional[Path], typer.Option(help="Where stage artifacts and TensorBoard logs go "
                                                        "(default: runs/default; runs/quick with --quick).")]
ExportDirOpt = Annotated[Optional[Path], typer.Option(help="Where models are exported as <dataset>-<model>/ "
                                                           "(default: saved_models).")]
EpochsOpt = Annotated[Optional[int], typer.Option(min=1, help="Training epochs (default: 10; 1 with --quick).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Smoke run: small data subsets and one epoch.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo stages even when their cached result is valid.")]


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


def _config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force):
    from keras_uap.pipelines.study import StudyConfig, quick_config

    overrides = dict(run_dir=run_dir and str(run_dir), export_dir=export_dir and str(export_dir),
                     dataset=dataset.value, data_dir=data_dir and str(data_dir), seed=seed,
                     epochs=epochs, force=force, verbose=1 if sys.stderr.isatty() else 2,
                     progress=_progress_bar())
    if quick:
        return quick_config(**overrides).validate()
    return StudyConfig(**{k: v for k, v in overrides.items() if v is not None}).validate()


@app.command()
def data(
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Load MNIST, split 55,000/5,000/10,000 and rotate validation and test once (saved as npz)."""
    from keras_uap.pipelines.study import prepare_data

    cfg = _config(quick, run_dir, None, dataset, data_dir, seed, None, force)
    result = prepare_data(cfg, _log)
    typer.echo(f"{result.output_dir}  {result.summary}")


@app.command()
def train(
    model: Annotated[ModelName, typer.Option(help="Which Table 2 model to train.")],
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    export_dir: ExportDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Train StdCNN or GCNN with random rotations and export a SavedModel and a .keras file."""
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
):
    """Collect per-input attack directions (loss gradient, FGSM unclipped and clipped, DeepFool) of an
    exported model on the rotated test set; saved as npz with labels, success and norms."""
    from keras_uap.pipelines.study import ATTACKS, collect_directions, prepare_data

    cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, None, force)
    data_result = None
    for name in ATTACKS if attack is AttackName.all else (attack.value,):
        data_result = data_result or prepare_data(cfg, _log)
        result = collect_directions(cfg, model.value, name, _log, data=data_result)
        summary = result.summary
        typer.echo(f"{model.value}-{name}: n={summary['n']} success={summary['success_rate']:.3f} "
                   f"median L2={summary['median_l2']:.3f}  {result.output_dir}")


@app.command("run-all")
def run_all(
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    export_dir: ExportDirOpt = None,
    quick: QuickOpt = False,
    force: ForceOpt = False,
):
    """Run the whole study: data; train and export StdCNN and GCNN; attack directions; spectra and
    invariant directions; universal-attack curves; report, metrics.json and TensorBoard. Stages whose
    inputs and parameters are unchanged are reused; an interrupted run resumes where it stopped."""
    from keras_uap.pipelines.study import run_all as run_study

    cfg = _config(quick, run_dir, export_dir, dataset, data_dir, seed, epochs, force)
    results = run_study(cfg, log=_log)
    for name, result in results.items():
        state = "cached" if result.cached else f"{result.duration_s:.1f} s"
        typer.echo(f"{name:32s} {state:>10s}  {result.output_dir}")


def main(argv=None):
    """Entry point of the `keras-uap` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=argv or ["--help"], prog_name="keras-uap", standalone_mode=False)
    except TyperException as exc:  # usage errors: unknown option, bad choice, out of range
        typer.echo(f"keras-uap: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except UserError as exc:
        typer.echo(f"keras-uap: error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("keras-uap: interrupted; completed stages are kept, rerun to resume", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
