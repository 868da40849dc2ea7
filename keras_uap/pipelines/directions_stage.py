"""Directions stage: per-input attack directions of one model (an export, or the user's).

For each test input of the data artifact and one attack of the registry
(`keras_uap.method.ATTACKS`), the attacks clipping to the artifact's
`clip_min`/`clip_max`, the stage stores (in `directions.npz`, no
pickle):

- `directions` (N, d) float32: the raw direction (gradient, or `x_adv - x`);
- `index` (N,): which test inputs (the first `limit`, or for DeepFool and
  PGD a seeded random `deepfool_subset`/`pgd_subset` of them, sorted), `label` (N,) true labels,
  `clean_prediction` (N,), `success` (N,) bool: the attack changed the
  model's prediction (for `gradient`: a step of L2 norm `attack_params.gradient_step`
  along the unit gradient did), `l2` and `linf` (N,) norms of the direction,
  `iterations` (N,) DeepFool's iteration counts (0 for the other attacks).

`pgd` is CleverHans' projected gradient descent (L-infinity ball of radius
`attack_params.pgd_eps`, `pgd_nb_iter` steps of `pgd_eps_iter`, clipped to
the data's range); its
direction is `x_adv - x`, like DeepFool's.

Work and memory scale with the batch: directions go batch by batch into a
memory-mapped scratch file, which `np.savez` then copies in chunks. With a
`strategy` (a setting, outside the cache key) its replicas attack
consecutive batches at once, each batch whole on one replica
(`keras_uap.api.BatchRunner.run_batches`): every input meets the batch it
meets on one device, so the arrays are bitwise those of one device (split
batches would not be: on the test machine's CPU a StdCNN's input gradients
differ in the last bits between batches of under 16 inputs and larger
ones, and DeepFool's batch shrinks as inputs finish).
"""

import os

import numpy as np
import tensorflow as tf

from keras_uap.api.distribute import BatchRunner
from keras_uap.method import AttackParams, draw_sample, get_attack
from keras_uap.pipelines.code_versions import code_version
from keras_uap.pipelines.data_stage import value_range
from keras_uap.pipelines.runner import Stage

__all__ = ["DIRECTIONS_STAGE", "attack_batch", "attacked_indices", "load_directions"]


def _predict(model_fn, x):
    return tf.argmax(model_fn(x), axis=1, output_type=tf.int32).numpy()


def attack_batch(attack, model_fn, x, y, clean, params):
    """Directions (N, d), success flags and iteration counts for one batch of
    the registered `attack` with `AttackParams` `params`."""
    found = get_attack(attack)
    out = found.run(model_fn, x, y, params)
    direction = np.asarray(out.direction)
    if out.success is None:
        success = _predict(model_fn, tf.constant(found.adversarial(x, direction, params))) != clean
        iterations = np.zeros(len(x), np.int32)
    else:
        success, iterations = out.success, out.iterations
    return direction.reshape(len(x), -1).astype(np.float32), np.asarray(success, bool), iterations


def _attacked(attack, model_fn, params):
    """The work on one batch, (x, y) -> (directions, clean predictions,
    success, iterations)."""

    def run(x, y):
        x, y = np.asarray(x), np.asarray(y)
        clean = _predict(model_fn, tf.constant(x))
        directions, success, iterations = attack_batch(attack, model_fn, x, y, clean, params)
        return directions, clean, success, iterations

    return run


def attacked_indices(n_test, limit=None, subset=None, seed=0):
    """Which test inputs an attack runs on: the first `limit` (all when None),
    then, when `subset` is smaller, `draw_sample` of `subset` of those. MNIST's
    test file is ordered by writer group, so a prefix would not be a fair sample."""
    n = n_test if limit is None else min(int(limit), n_test)
    return draw_sample(n, n if subset is None else int(subset), seed)


def _directions_stage(output_dir, model, test_data, attack, limit, deepfool_subset, pgd_subset, seed, batch_size,
                      attack_params, strategy=None, progress=None):
    """`attack_params`: `AttackParams`'s fields (a dict, as in the cache key); the clip range is the data's."""
    from keras_uap.pipelines.stage_model import load_stage_model

    model_fn = load_stage_model(model).logits
    with np.load(test_data, allow_pickle=False) as f:
        x_all, y_all = f["x"], f["y"]
        clip_min, clip_max = value_range(f)
    subset = {"deepfool": deepfool_subset, "pgd": pgd_subset}.get(attack)
    index = attacked_indices(len(x_all), limit, subset, seed)
    n = len(index)
    params = AttackParams(**{**attack_params, "clip_min": clip_min, "clip_max": clip_max})
    scratch = os.path.join(output_dir, "directions.scratch.npy")
    directions = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=(n, x_all[0].size))
    meta = {k: np.zeros(n, dtype) for k, dtype in
            [("clean_prediction", np.int64), ("success", bool), ("iterations", np.int32)]}
    runner = BatchRunner(_attacked(attack, model_fn, params), strategy, compiled=False)
    starts = range(0, n, batch_size)
    # As many batches at once as there are replicas, each whole on one of them.
    for group in [starts[i:i + runner.num_replicas] for i in range(0, len(starts), runner.num_replicas)]:
        batches = [(x_all[index[start:start + batch_size]], y_all[index[start:start + batch_size]])
                   for start in group]
        for start, (d, clean, success, iterations) in zip(group, runner.run_batches(batches)):
            stop = start + len(d)
            directions[start:stop] = d
            meta["clean_prediction"][start:stop] = clean
            meta["success"][start:stop] = success
            meta["iterations"][start:stop] = iterations
        if progress:
            progress(stop, n)
    directions.flush()
    l2 = np.concatenate([np.linalg.norm(directions[i:i + batch_size], axis=1) for i in range(0, n, batch_size)])
    linf = np.concatenate([np.abs(directions[i:i + batch_size]).max(axis=1) for i in range(0, n, batch_size)])
    np.savez(os.path.join(output_dir, "directions.npz"), directions=directions, index=index,
             label=y_all[index], l2=l2.astype(np.float32), linf=linf.astype(np.float32), **meta)
    del directions
    os.remove(scratch)
    accuracy = float(np.mean(meta["clean_prediction"] == y_all[index]))
    return {"attack": attack, "n": n, "n_test": int(len(x_all)), "clean_accuracy": accuracy, "success_rate": float(meta["success"].mean()),
            "median_l2": float(np.median(l2)), "mean_iterations": float(meta["iterations"].mean())}


DIRECTIONS_STAGE = Stage(
    name="directions",
    fn=_directions_stage,
    version=code_version("1", __name__),
    inputs=("model", "test_data"),
    params=("attack", "limit", "deepfool_subset", "pgd_subset", "seed", "batch_size", "attack_params"),
    settings=("strategy", "progress"),
)


def load_directions(stage_dir):
    """The arrays of a directions artifact, as a dict."""
    with np.load(os.path.join(stage_dir, "directions.npz"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
