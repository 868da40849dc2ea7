"""The list of ops without a deterministic GPU kernel, and the ops the models
and attacks actually run (from traced graphs; nothing here needs a GPU)."""

import io

import keras
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config
from tensorflow.python.framework import op_def_registry

from keras_uap.gpu_determinism import (GPU_NONDETERMINISTIC_OPS, graph_op_uses, listed_ops,
                                       model_gpu_determinism_gaps, warn_nondeterministic_gpu_ops)
from keras_uap.models import MODELS, build_model


@pytest.fixture
def op_determinism():
    """Op determinism on, as the runner switches it on, and the previous state back after."""
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on:
        tf_config.disable_op_determinism()


def _ops(entries):
    return sorted({entry.op for entry in entries})


def test_every_listed_op_is_a_registered_op_with_its_attributes():
    assert len(GPU_NONDETERMINISTIC_OPS) >= 20
    for entry in GPU_NONDETERMINISTIC_OPS:
        op_def = op_def_registry.get(entry.op)
        assert op_def is not None, entry.op
        assert {name for name, _ in entry.attrs} <= {attr.name for attr in op_def.attr}, entry
        assert entry.doc and entry.api


def test_finds_listed_ops_inside_nested_functions_and_loop_bodies():
    @tf.function
    def counts(labels):
        # A while loop whose body calls tf.math.bincount (no deterministic GPU kernel).
        return tf.while_loop(lambda i, c: i < 3, lambda i, c: (i + 1, c + tf.math.bincount(labels, minlength=4)),
                             (tf.constant(0), tf.zeros(4, tf.int32)))[1]

    @tf.function
    def step(image, labels):
        with tf.GradientTape() as tape:
            tape.watch(image)
            total = tf.reduce_sum(tf.image.resize(image, (8, 8), method="nearest"))
        return tape.gradient(total, image), counts(labels)

    traced = step.get_concrete_function(tf.TensorSpec((1, 4, 4, 1)), tf.TensorSpec((5,), tf.int32))
    found = _ops(listed_ops(traced))
    assert "ResizeNearestNeighborGrad" in found
    assert {"Bincount", "DenseBincount"} & set(found)
    # The bincount is only in the library (the loop body), not among the top-level nodes.
    top_level = {node.op for node in traced.graph.as_graph_def().node}
    assert not {"Bincount", "DenseBincount"} & top_level
    # A graph without them reports nothing.
    plain = tf.function(lambda x: tf.reduce_sum(tf.square(x))).get_concrete_function(tf.TensorSpec((3,)))
    assert listed_ops(plain) == ()


def _max_pool_gradient(image):
    with tf.GradientTape() as tape:
        tape.watch(image)
        total = tf.reduce_sum(tf.nn.max_pool2d(image, 2, 2, "VALID"))
    return tape.gradient(total, image)


def test_max_pool_gradient_is_listed_only_inside_xla(op_determinism):
    spec = tf.TensorSpec((1, 4, 4, 1))
    plain = tf.function(_max_pool_gradient).get_concrete_function(spec)
    assert "MaxPoolGrad" in {node.op for node, _ in graph_op_uses(plain)}
    assert listed_ops(plain) == ()

    compiled = tf.function(_max_pool_gradient, jit_compile=True)

    @tf.function
    def outer(image):  # the XLA function is nested: its nodes are in the library
        return compiled(image)

    uses = graph_op_uses(outer.get_concrete_function(spec))
    assert ("MaxPoolGrad", True) in {(node.op, xla) for node, xla in uses}
    assert _ops(listed_ops(outer.get_concrete_function(spec))) == ["MaxPoolGrad"]
    # And it does raise under determinism, as XLA compiles it (here on the CPU).
    with pytest.raises(tf.errors.UnimplementedError, match="deterministic XLA implementation"):
        compiled(tf.ones((1, 4, 4, 1)))


@pytest.mark.parametrize("is_training, expected", [(False, ["FusedBatchNormGradV3"]), (True, [])])
def test_fused_batch_norm_gradient_is_listed_only_in_inference_mode(is_training, expected):
    channels = 2

    @tf.function
    def gradient(x, scale, offset):
        with tf.GradientTape() as tape:
            tape.watch(offset)
            mean = None if is_training else tf.zeros(channels)
            variance = None if is_training else tf.ones(channels)
            total = tf.reduce_sum(tf.compat.v1.nn.fused_batch_norm(x, scale, offset, mean=mean, variance=variance,
                                                                   is_training=is_training)[0])
        return tape.gradient(total, offset)

    traced = gradient.get_concrete_function(tf.TensorSpec((1, 3, 3, channels)), tf.TensorSpec((channels,)),
                                            tf.TensorSpec((channels,)))
    assert _ops(listed_ops(traced)) == expected


# What each model's training step, loss gradient and DeepFool step run, traced
# with op determinism on: none of the listed ops. A model that starts using one
# (a nearest-neighbour resize, a bincount, a max-pool gradient under XLA, ...)
# fails here; update the pin only after deciding how a GPU run handles it.
PINNED = {name: {"train": [], "loss_gradient": [], "deepfool": []} for name in MODELS}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_and_attacks_use_no_listed_op_under_determinism(op_determinism, name):
    gaps = model_gpu_determinism_gaps(build_model(name))
    assert {step: _ops(entries) for step, entries in gaps.items()} == PINNED[name]


def test_without_determinism_the_loss_traces_the_fused_kernel_that_raises():
    # Why the runner must switch determinism on before anything is traced: the
    # cross-entropy API builds its fused op, which raises under determinism on a GPU.
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        gaps = model_gpu_determinism_gaps(build_model("stdcnn"))
    finally:
        if was_on:
            tf.config.experimental.enable_op_determinism()
    assert _ops(gaps["train"]) == _ops(gaps["loss_gradient"]) == ["SparseSoftmaxCrossEntropyWithLogits"]
    assert gaps["deepfool"] == ()


def test_warning_says_nothing_without_a_gpu(op_determinism):
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible")
    stream = io.StringIO()
    assert warn_nondeterministic_gpu_ops(MODELS, stream=stream) == {}
    assert stream.getvalue() == ""


def _upsampling_model():
    # A nearest-neighbour resize: its gradient has no deterministic GPU kernel.
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Resizing(8, 8, interpolation="nearest"),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def test_warning_is_one_line_naming_each_model_and_its_ops(op_determinism, monkeypatch):
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["/GPU:0"] if kind == "GPU" else [])
    stream = io.StringIO()
    found = warn_nondeterministic_gpu_ops({"stdcnn": MODELS["stdcnn"], "upsampling": _upsampling_model},
                                          stream=stream)
    assert found == {"upsampling": ["ResizeNearestNeighborGrad"]}
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "(upsampling: ResizeNearestNeighborGrad)" in lines[0] and "stdcnn" not in lines[0]
