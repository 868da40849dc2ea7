"""Train stage: trains one model of Table 2 on the data artifact and exports it.

Artifacts: `saved_model/` (TF SavedModel), `model.keras`, `metrics.json`
(test and validation accuracy, per-epoch history).
"""

import json
import os

from keras_uap.models import MODELS, build_model
from keras_uap.pipelines.data_stage import load_split
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.exported_model import load_exported_model
from keras_uap.pipelines.runner import Stage
from keras_uap.training import evaluate_accuracy, export_model, set_determinism, train_model

__all__ = ["TRAIN_STAGE"]


def _train_stage(output_dir, data, model, epochs, batch_size, optimizer, learning_rate, momentum, rotation, seed,
                 tensorboard_dir, verbose):
    set_determinism(seed)
    train = load_split(data, "train")
    validation = load_split(data, "validation")
    test = load_split(data, "test")
    network = build_model(model)
    history = train_model(
        network, (train["x"], train["y"]), (validation["x"], validation["y"]),
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate, momentum=momentum,
        seed=seed, tensorboard_dir=tensorboard_dir, verbose=verbose, max_angle=rotation,
    )
    export_model(network, output_dir)
    # Measure on the reloaded export, the same object every later stage sees.
    reloaded = load_exported_model(output_dir)
    metrics = {
        "model": model,
        "rotation": rotation,
        "test_accuracy": evaluate_accuracy(reloaded.predict_on_batch, test["x"], test["y"]),
        "validation_accuracy": max(history.get("val_accuracy", [None])),
        "best_epoch": history["best_epoch"],
        "history": history,
        "train_size": int(len(train["y"])),
        "test_size": int(len(test["y"])),
    }
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return {k: metrics[k] for k in ("model", "test_accuracy", "validation_accuracy", "best_epoch")}


# This module imports every model and layer (to build and register them), but
# only the trained model's builder and what it reaches count: adding or
# editing one model must not retrain the others.
MODEL_PACKAGES = ("keras_uap.models", "keras_uap.layers")


def _train_version(params):
    builder = [MODELS[params["model"]].__module__] if params["model"] in MODELS else []
    return code_version("2", __name__, *builder, skip=MODEL_PACKAGES)


TRAIN_STAGE = Stage(
    name="train",
    fn=_train_stage,
    version=_train_version,
    inputs=("data",),
    params=("model", "epochs", "batch_size", "optimizer", "learning_rate", "momentum", "rotation", "seed"),
    settings=("tensorboard_dir", "verbose"),
)
