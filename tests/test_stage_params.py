import dataclasses
import re

import pytest

from keras_uap.errors import UserError
from keras_uap.method import L2_GRID
from keras_uap.pipelines.analysis_stage import ANALYSIS_STAGE
from keras_uap.pipelines.comparison_stage import COMPARISON_STAGE
from keras_uap.pipelines.data_stage import DATA_STAGE
from keras_uap.pipelines.directions_stage import DIRECTIONS_STAGE
from keras_uap.pipelines.stage_params import (
    AnalysisParams,
    ComparisonParams,
    DataParams,
    DirectionsParams,
    TrainParams,
    TransferParams,
    UniversalParams,
    cache_params,
    settings_of,
)
from keras_uap.pipelines.study import (DEFAULT_MODEL_SETTINGS, QUICK_L2_GRID, QUICK_MODEL_SETTINGS, StudyConfig,
                                       quick_config)
from keras_uap.pipelines.train_stage import TRAIN_STAGE
from keras_uap.pipelines.transfer_stage import TRANSFER_STAGE
from keras_uap.pipelines.universal_stage import UNIVERSAL_STAGE


@pytest.mark.parametrize("params, stage", [
    (DataParams(), DATA_STAGE), (TrainParams(), TRAIN_STAGE), (DirectionsParams(), DIRECTIONS_STAGE),
    (AnalysisParams(), ANALYSIS_STAGE), (UniversalParams(), UNIVERSAL_STAGE), (ComparisonParams(), COMPARISON_STAGE),
])
def test_every_field_reaches_its_stage_under_its_own_name(params, stage):
    assert set(cache_params(params)) <= set(stage.params)
    assert set(settings_of(params)) <= set(stage.settings)


def test_batch_sizes_of_forward_passes_stay_out_of_the_cache_key():
    universal = UniversalParams(batch_size=7)
    assert "batch_size" not in cache_params(universal) and settings_of(universal) == {"batch_size": 7}
    assert settings_of(TransferParams()) == {"batch_size": 5000}
    # The directions stage's batch size changes the DeepFool batches it records: in the key.
    assert cache_params(DirectionsParams(batch_size=7))["batch_size"] == 7


def test_the_strategy_is_a_setting_of_the_stages_that_attack_or_evaluate():
    # Outside every cache key: a mirrored run reuses single-device results and vice versa.
    for stage in (DIRECTIONS_STAGE, UNIVERSAL_STAGE, COMPARISON_STAGE, TRANSFER_STAGE):
        assert "strategy" in stage.settings and "strategy" not in stage.params, stage.name
    with pytest.raises(UserError, match="unknown strategy 'tpu'; choose from: none, mirrored"):
        StudyConfig(strategy="tpu").validate()


def test_stage_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainParams().epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        StudyConfig().seed = 1


def test_model_settings_replace_fields_of_their_stage_only():
    cfg = StudyConfig()
    roteqnet = cfg.for_model("roteqnet")
    for stage, fields in DEFAULT_MODEL_SETTINGS["roteqnet"].items():
        assert getattr(roteqnet, stage) == dataclasses.replace(getattr(cfg, stage), **fields)
    assert roteqnet.analysis == cfg.analysis and roteqnet.data == cfg.data
    assert cfg.for_model("stdcnn") == cfg
    # A field the user chose keeps the user's value.
    chosen = dataclasses.replace(cfg, user_set=("train.epochs",)).replace_params(**{"train.epochs": 4})
    assert chosen.for_model("roteqnet").train == dataclasses.replace(roteqnet.train, epochs=4)


def test_quick_profile_is_the_default_with_its_smaller_stages():
    quick = quick_config()
    assert quick.data == DataParams(train_size=5_000, validation_size=500, test_size=1_000)
    assert (quick.directions.limit, quick.directions.pgd_subset) == (256, 100)
    assert quick.comparison.sample_sizes == (50,) and quick.transfer.sample_size == 50
    assert quick.universal.sample_sizes == (50, 10_000) and quick.universal.eval_subset == 256
    assert quick.universal.eps_grid == QUICK_L2_GRID and set(QUICK_L2_GRID) < set(L2_GRID)
    assert quick.model_settings == QUICK_MODEL_SETTINGS and quick.export_dir == "runs/quick/saved_models"
    assert quick_config({"directions.limit": 50, "train.epochs": None}).directions.limit == 50


def test_quick_roteqnet_computes_no_padding():
    """RotConv computes a batch as one of its compiled sizes (`padded_batch`): the quick
    profile's attacked and evaluated RotEqNet inputs are such sizes, so no pass computes filler."""
    import tensorflow as tf

    from keras_uap.layers.rot_conv_tensorflow import padded_batch

    roteqnet = quick_config().for_model("roteqnet")
    for size in (roteqnet.directions.limit, roteqnet.universal.eval_subset, roteqnet.directions.batch_size):
        assert int(padded_batch(tf.constant(size))) == size


@pytest.mark.parametrize("name", ["epochs", "training.epochs", "train."])
def test_replace_params_names_stage_fields(name):
    message = f"`changes` must name stage fields like 'train.epochs'. Received: {name!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        StudyConfig().replace_params(**{name: 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        StudyConfig().replace_params(**{"train.epoch": 1})



def test_the_directions_nest_the_attack_params_and_key_them_by_their_own_names():
    from keras_uap.method import AttackParams

    attack_fields = {f.name for f in dataclasses.fields(AttackParams)}
    # Not one of AttackParams' fields is repeated beside it.
    assert not attack_fields & {f.name for f in dataclasses.fields(DirectionsParams)}
    key = cache_params(DirectionsParams(attack_params=AttackParams(pgd_eps=0.1)))["attack_params"]
    assert set(key) == attack_fields and key["pgd_eps"] == 0.1
    assert key == dataclasses.asdict(AttackParams(pgd_eps=0.1))
    cfg = StudyConfig().replace_params(**{"directions.attack_params": AttackParams(fgsm_eps=0.2)})
    assert cfg.directions.attack_params.fgsm_eps == 0.2 and cfg.directions.limit is None
