"""Checks of the directories a run reads and writes, made before any work starts,
and the name a model's outputs take per training seed.

A run that fails on its output directory after an hour of training has wasted
the hour; a bad path is the user's to fix, so it is a `UserError` (one line,
exit 2 from the CLI), not an `OSError` from deep inside a stage.
"""

import os

from keras_uap.errors import UserError

__all__ = ["check_input_dir", "check_output_dir", "model_tag"]


def model_tag(model, training_seed=None):
    """The name of `model`'s exports, stage outputs and report inputs: the
    model's own for the run's seed (None), `<model>-seed<s>` for another
    training seed."""
    return model if training_seed is None else f"{model}-seed{training_seed}"


def check_input_dir(path, what):
    """`path` if it is an existing directory; else a UserError naming `what`
    (e.g. "data directory" or "$KERAS_UAP_DATA_DIR")."""
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} not found")
    if not os.path.isdir(path):
        raise UserError(f"{path}: {what} is a file, not a directory")
    return path


def check_output_dir(path, option):
    """`path` if it is, or can be made, a writable directory; else a UserError
    naming the command-line `option` (e.g. "--run-dir"). Creates nothing."""
    absolute = os.path.abspath(path)
    existing = absolute
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == absolute else f"lies under the file {existing}"
        raise UserError(f"{option} {path}: {where}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        target = "" if existing == absolute else f" (nor create it in {existing})"
        raise UserError(f"{option} {path}: cannot write there{target}: permission denied")
    return path
