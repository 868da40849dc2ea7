"""Per-batch computations, data-parallel over a `tf.distribute.Strategy`'s replicas.

Each batch is cut into one contiguous slice per replica (`np.array_split`,
so slice sizes differ by at most one and a slice may be empty), every replica
runs the same per-example function on its slice, and the results are
concatenated in replica order: the rows come back in the order of the
inputs, as in a single-device run. Examples never interact, so the results
equal the single-device ones up to float32 rounding (kernels may sum in a
different order for a different batch size).

Two execution modes:
- compiled: the function is traced once into a `tf.function` that calls
  `strategy.run` on per-replica tensors built with
  `experimental_distribute_values_from_function`, so the replicas run in
  parallel inside one graph. For pure TensorFlow functions (predictions, the
  loss gradient, FGSM).
- eager: each replica's slice runs in its own Python thread under
  `tf.device(replica device)`. For functions that mix TensorFlow and NumPy,
  like the batched DeepFool, which cannot be traced into one graph.

The function may return a tuple of tensors (each with the batch first)
instead of one: each part is then sliced and concatenated as one result is.
`BatchRunner.run_batches` instead gives each local replica a whole batch of
its own, so that every input's result is bitwise its one-device result.

Several workers (`tf.distribute.MultiWorkerMirroredStrategy`, every worker
running the same program on the same arrays): each worker computes the
slices of its own replicas, and `strategy.gather` brings every row to every
worker. A batch shorter than the number of replicas is padded with copies of
its last row (dropped from the results), so that no replica is idle.
"""

import concurrent.futures
import functools

import numpy as np
import tensorflow as tf

from keras_uap.api._checks import check_choice, check_positive_int

__all__ = ["STRATEGIES", "make_strategy", "BatchRunner", "map_batches"]

STRATEGIES = ("none", "mirrored")


def make_strategy(name):
    """The strategy named on the command line, the same object for every call
    in a process (runners compiled for a strategy are kept per strategy).

    Args:
        name: "none" (no strategy: one device) or "mirrored"
            (`tf.distribute.MirroredStrategy()` over all local GPUs, or the
            CPU when there is none).

    Returns:
        A `tf.distribute.Strategy`, or None for "none". Without GPUs,
        `MirroredStrategy()` replicates over the local CPU devices: one,
        unless logical CPU devices were configured before TensorFlow started
        (`tf.config.set_logical_device_configuration`).

    Raises:
        ArgumentError: an unknown name (a `UserError`).
    """
    check_choice("strategy", name, STRATEGIES)
    return _mirrored() if name == "mirrored" else None


@functools.cache
def _mirrored():
    return tf.distribute.MirroredStrategy()


class BatchRunner:
    """Calls a per-example function on a batch, split over the replicas.

    Args:
        fn: a callable taking tensors (one per input array, first axis the
            batch) and returning one tensor whose first axis is the batch,
            or a tuple of them.
        strategy: a `tf.distribute.Strategy`, or None for one device.
        compiled: trace `fn` into a `tf.function` (it must be pure
            TensorFlow); else run it eagerly (it may use NumPy).

    Calling the runner with NumPy arrays of equal length returns the
    concatenated NumPy results, rows in input order (a tuple of them for a
    function returning a tuple).
    """

    def __init__(self, fn, strategy=None, compiled=True):
        self.fn = fn
        self.strategy = strategy
        self.compiled = compiled
        # reduce_retracing: a shorter last batch generalises the trace
        # instead of adding one per batch size.
        self._one_device = tf.function(fn, reduce_retracing=True) if compiled else fn
        if compiled and strategy is not None:
            self._step = tf.function(lambda *args: strategy.run(fn, args=args), reduce_retracing=True)

    @property
    def num_replicas(self):
        return 1 if self.strategy is None else self.strategy.num_replicas_in_sync

    @property
    def multi_worker(self):
        """Whether some replicas live on other workers."""
        return self.strategy is not None and self.num_replicas > len(self.strategy.extended.worker_devices)

    def __call__(self, *arrays):
        if self.strategy is None:
            return _to_numpy(self._one_device(*[tf.constant(a) for a in arrays]))
        n = len(arrays[0])
        # A replica must not get an empty slice: every worker must take part in
        # the collective ops, and TensorFlow's CPU gradient kernels fail on an
        # empty batch (ReluGrad shape mismatch seen with oneDNN on Intel CPUs).
        if 0 < n < self.num_replicas:
            arrays = [np.concatenate([a, np.repeat(a[-1:], self.num_replicas - n, axis=0)]) for a in arrays]
        slices = np.array_split(np.arange(len(arrays[0])), self.num_replicas)
        results = self._run_compiled(arrays, slices) if self.compiled else self._run_eager(arrays, slices)
        return tf.nest.map_structure(lambda r: r[:n], results)

    def run_batches(self, batches):
        """`fn` on whole batches at once, batch i on local replica i.

        Where `__call__` splits one batch, this keeps each batch whole, so
        every input meets the same batch as in a one-device run of the same
        batches and gets bitwise its results: kernels may round differently
        for a different batch size, and an attack whose batch shrinks as
        inputs finish (DeepFool) meets ever smaller ones.

        Args:
            batches: a list of at most `num_replicas` batches, each a tuple
                of NumPy arrays of equal length (the arguments of `fn`).

        Returns:
            The list of each batch's NumPy results, in order.

        Raises:
            ValueError: more batches than replicas, or replicas on other
                workers (`__call__` serves those).
        """
        if len(batches) > self.num_replicas or self.multi_worker:
            raise ValueError(f"`run_batches` takes at most one batch per local replica ({self.num_replicas}). "
                             f"Received: {len(batches)} batches, multi_worker={self.multi_worker}")
        if self.strategy is None:
            return [_to_numpy(self._one_device(*[tf.constant(a) for a in batch])) for batch in batches]
        jobs = [(self._device(i), slice(None), batch) for i, batch in enumerate(batches)]
        return self._on_devices(jobs)

    def _device(self, replica_id):
        """This worker's device of replica `replica_id` (ids run worker by worker)."""
        devices = self.strategy.extended.worker_devices
        return devices[replica_id % len(devices)]

    def _per_replica(self, values):
        """A per-replica value holding `values(replica id)` on each replica's device."""
        def value(context):
            i = context.replica_id_in_sync_group
            with tf.device(self._device(i)):
                return tf.nest.map_structure(tf.constant, values(i))

        return self.strategy.experimental_distribute_values_from_function(value)

    def _results(self, per_replica):
        """The rows of every replica, in replica order (per part of a tuple)."""
        if self.multi_worker:
            return tf.nest.map_structure(lambda v: np.asarray(self.strategy.gather(v, axis=0)), per_replica)
        return tf.nest.map_structure(
            lambda v: np.concatenate([np.asarray(r) for r in self.strategy.experimental_local_results(v)]),
            per_replica)

    def _run_compiled(self, arrays, slices):
        result = self._step(*[self._per_replica(lambda i, a=a: a[slices[i]]) for a in arrays])
        return self._results(result)

    def _run_eager(self, arrays, slices):
        if self.multi_worker:
            ids = [int(r) for r in self.strategy.experimental_local_results(
                self._per_replica(lambda i: np.int64(i)))]
        else:
            ids = [i for i in range(self.num_replicas) if slices[i].size]
        parts = self._on_devices([(self._device(i), slices[i], arrays) for i in ids])
        if self.multi_worker:
            results = dict(zip(ids, parts))
            return self._results(self._per_replica(lambda i: results[i]))
        return _concatenate(parts)

    def _on_devices(self, jobs):
        """`fn` of each job (device, rows, arrays), one thread per device."""
        if len(jobs) == 1:
            return [self._on_device(*jobs[0])]
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(lambda job: self._on_device(*job), jobs))

    def _on_device(self, device, idx, arrays):
        with tf.device(device):
            return _to_numpy(self._one_device(*[tf.constant(a[idx]) for a in arrays]))


def _to_numpy(result):
    """A tensor, or a tuple of tensors, as NumPy."""
    return tf.nest.map_structure(np.asarray, result)


def _concatenate(parts):
    """Results of consecutive rows (arrays, or tuples of arrays) joined row-wise."""
    return tf.nest.map_structure(lambda *rows: np.concatenate(rows), *parts)


def map_batches(runner, arrays, batch_size):
    """`runner` applied to consecutive batches of `arrays`, results concatenated.

    Memory holds one batch (and its results) at a time, plus the results.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    n = len(arrays[0])
    parts = [runner(*[a[start:start + batch_size] for a in arrays]) for start in range(0, n, batch_size)]
    return _concatenate(parts) if parts else np.zeros((0,))
