"""The parameters of each stage of the study, one frozen dataclass per stage.

`StudyConfig` nests one of each; a stage's cache key is its dataclass's
fields (`cache_params`; a nested dataclass, such as the directions'
`AttackParams`, as the dict of its fields) plus what it shares with the
stages before it (the run's seed, the universal stage's evaluation set),
under the same names.
Fields marked `SETTING` change how a stage runs, not what it computes
(batch sizes of forward passes), and stay out of the key (`settings_of`).
Per-model overrides (`keras_uap.pipelines.study.DEFAULT_MODEL_SETTINGS`)
are `dataclasses.replace` on these.
"""

import dataclasses

from keras_uap.method import L2_GRID, AttackParams
from keras_uap.pipelines.comparison_stage import DEFAULT_LINF_GRID
from keras_uap.pipelines.data_stage import TEST_SIZE, TRAIN_SIZE, VALIDATION_SIZE
from keras_uap.pipelines.transfer_stage import TRANSFER_METHODS

__all__ = ["DataParams", "TrainParams", "DirectionsParams", "AnalysisParams", "UniversalParams",
           "ComparisonParams", "TransferParams", "cache_params", "settings_of", "replace_stage_fields"]

_SETTING = {"setting": True}


def _setting(default):
    return dataclasses.field(default=default, metadata=_SETTING)


def _json_value(value):
    """A nested parameter dataclass as the dict of its fields (JSON in the key and the lineage)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def cache_params(params):
    """The fields of a stage dataclass that go into its cache key, as a dict."""
    return {f.name: _json_value(getattr(params, f.name)) for f in dataclasses.fields(params)
            if not f.metadata.get("setting")}


def settings_of(params):
    """The fields of a stage dataclass that only change how the stage runs."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.metadata.get("setting")}


def replace_stage_fields(config, stages, changes, example):
    """`config` (a frozen dataclass nesting one parameter dataclass per name
    in `stages`) with `changes` {"stage.field": value} applied, each stage a
    `dataclasses.replace` of its parameters; `example` names such a field in
    the error for a name that is not one."""
    by_stage = {}
    for name, value in changes.items():
        stage, _, field = name.partition(".")
        if stage not in stages or not field:
            raise ValueError(f"`changes` must name stage fields like {example!r}. Received: {name!r}")
        by_stage.setdefault(stage, {})[field] = value
    return dataclasses.replace(config, **{stage: dataclasses.replace(getattr(config, stage), **fields)
                                          for stage, fields in by_stage.items()})


@dataclasses.dataclass(frozen=True)
class DataParams:
    """The data stage: which dataset and the sizes of its three splits."""

    dataset: str = "mnist"
    train_size: int = TRAIN_SIZE
    validation_size: int = VALIDATION_SIZE
    test_size: int = TEST_SIZE


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """The training stage: epochs, batch size, the optimiser, and the range
    of the training rotations: each epoch rotates every training image by an
    angle uniform in [-rotation, rotation] degrees (the paper's 180; the
    sweep varies it)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.5
    rotation: float = 180.0


@dataclasses.dataclass(frozen=True)
class DirectionsParams:
    """The directions stage.

    Attributes:
        limit: attack the first `limit` test inputs; None: all of them.
        deepfool_subset, pgd_subset: those attacks run on a seeded random
            subset of this many of the attacked inputs; None: all.
        batch_size: inputs per attack batch.
        attack_params: the attacks' own settings (`keras_uap.method.AttackParams`);
            the stage replaces its clip range by the data's.
    """

    limit: int | None = None
    deepfool_subset: int | None = None
    # PGD costs pgd_nb_iter gradients per input: a seeded random 2,000.
    pgd_subset: int | None = 2000
    batch_size: int = 500
    # The attacks' own defaults (PGD: Madry et al.'s MNIST radius 0.3, but 20
    # steps of 0.03 instead of 40 of 0.01).
    attack_params: AttackParams = AttackParams()


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """The analysis stage: the paper's small sample and the invariant rotation."""

    sample_size: int = 500  # the paper's small sample for Figures 2-4
    invariant_angle: float = 2.0


@dataclasses.dataclass(frozen=True)
class UniversalParams:
    """The universal stage; its evaluation set (`eval_subset`), grid and
    saturation are also the comparison's and the transfer's.

    Attributes:
        sample_sizes: the m of the curves (the comparison's are added).
        seeds: the samples drawn per m below the full set (the run's seed first).
        random_seeds: the random unit directions of the baseline.
        eps_grid, saturation: the L2 norms of the curves (also those over
            which each singular vector's sign is chosen on its sample), and
            the error rate past which a curve stops.
        full_set_only: attacks whose curves use the full set only.
        eval_subset: curves on a seeded random subset of this many test
            inputs; None: all.
        linf_grid: L-infinity budgets over which each published vector's
            sign and the random directions' are also measured; () for none
            (run-all's: its L-infinity curves are the comparison's).
        spectrum_top: how many singular values of each published vector's
            sample the curves record; 0 for none (run-all's: its spectra
            are the analysis stage's).
        batch_size: inputs per forward pass.
    """

    sample_sizes: tuple = (100, 500, 10_000)
    seeds: tuple = (0, 1, 2)
    random_seeds: tuple = (0, 1, 2)
    eps_grid: tuple = L2_GRID
    saturation: float = 0.99
    # Clipped FGSM is the report's side comparison, not a paper figure: its curve
    # never flattens, so sampling it at every m would cost a fifth of the stage.
    full_set_only: tuple = ("fgsm_clipped", "pgd")
    eval_subset: int | None = None
    linf_grid: tuple = ()
    spectrum_top: int = 0
    batch_size: int = _setting(5000)


@dataclasses.dataclass(frozen=True)
class ComparisonParams:
    """The comparison stage (SVD-UAP against the iterative UAP, class-mean
    and random directions, beyond the paper).

    Attributes:
        sample_sizes: the m each method is built from.
        build_eps: the iterative UAP's L2 radius.
        linf_grid, linf_build_budget: the L-infinity curves' budgets and the
            iterative UAP's L-infinity radius.
        max_passes, delta: the iterative UAP's passes and target fooling
            rate 1 - delta.
        batch_size: inputs per forward pass.
    """

    sample_sizes: tuple = (100, 500)
    build_eps: float = 6.0  # near the SVD-UAP's eps80
    linf_grid: tuple = DEFAULT_LINF_GRID
    linf_build_budget: float = 0.2
    max_passes: int = 5
    delta: float = 0.2
    batch_size: int = _setting(5000)


@dataclasses.dataclass(frozen=True)
class TransferParams:
    """The transfer stage: each model's perturbations on every model.

    Attributes:
        norm: the L2 norm of the perturbations.
        sample_size: the preferred m (the largest comparison sample size
            every model shares up to it).
        methods: the comparison's methods transferred.
        batch_size: inputs per forward pass.
    """

    norm: float = 6.0
    sample_size: int = 100  # the paper's headline m: about 1% of the test set
    methods: tuple = TRANSFER_METHODS
    batch_size: int = _setting(5000)
