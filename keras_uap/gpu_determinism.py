"""Ops that have no deterministic GPU kernel, and which of them a traced graph runs.

Every stage runs with `tf.config.experimental.enable_op_determinism()`. On a
GPU, TensorFlow then raises `UnimplementedError` (at the op's first run,
possibly hours into a run) for the ops that have no deterministic GPU
implementation. `GPU_NONDETERMINISTIC_OPS` lists them as raw op types;
`listed_ops` finds them in a traced `tf.function`, nested function bodies
included, so that a run can say so in one line at its start
(`warn_nondeterministic_gpu_ops`) instead of failing on a GPU later.

Sources (TensorFlow 2.21 is installed; its docstring is the page's text):
- https://www.tensorflow.org/api_docs/python/tf/config/experimental/enable_op_determinism
  states the rule ("Certain ops will raise an `UnimplementedError` because
  they do not yet have a deterministic implementation") but names only
  `tf.nn.softmax_cross_entropy_with_logits`, as an example: it has no list;
- the list is that of NVIDIA's status page of GPU determinism in TensorFlow
  (https://github.com/NVIDIA/framework-reproducibility/blob/master/doc/d9m/tensorflow_status.md),
  of the determinism RFC (tensorflow/community, rfcs/20210119-determinism.md)
  and of TF 2.8's release notes ("Deterministic Op Functionality"), checked
  against the kernels of TensorFlow's sources that raise under
  `OpDeterminismRequired()`;
- each `doc` below quotes the kernel's error message (or the status page's
  wording where the message is generic).
Ops that these sources once listed and that have had a deterministic GPU
kernel since TF 2.7/2.8 are not listed: the segment and unsorted-segment
reductions, `tf.gather`'s gradient, bias-add and convolution backprop,
cuDNN max-pooling backprop outside XLA, bilinear resize backprop, CTC loss.
Scatter ops (`ScatterNd`, `TensorScatter*`) do not raise: under determinism
TensorFlow runs them on the CPU (slower, same numbers).
"""

import dataclasses
import sys

import tensorflow as tf

# DeepFool's compiled step itself, so that the trace is what the attack runs.
from keras_uap.attacks.deepfool import _step as deepfool_step
from keras_uap.attacks.loss_gradient import loss_gradient
from keras_uap.training import compile_for_training

__all__ = ["NondeterministicOp", "GPU_NONDETERMINISTIC_OPS", "graph_op_uses", "listed_ops",
           "traced_model_steps", "model_gpu_determinism_gaps", "warn_nondeterministic_gpu_ops"]


@dataclasses.dataclass(frozen=True)
class NondeterministicOp:
    """One raw op type that raises under op determinism on a GPU.

    Attributes:
        op: the raw op type, as in a GraphDef (`NodeDef.op`).
        api: the public API that emits it.
        xla: False when TensorFlow's own GPU kernel raises (the op runs
            outside XLA); True when it raises only as XLA compiles it (the op
            is inside a `jit_compile=True` function), on any device.
        doc: the documentation's or the kernel's wording.
        attrs: attribute values the op must have to raise (empty: always).
    """

    op: str
    api: str
    xla: bool
    doc: str
    attrs: tuple = ()


def _entry(ops, api, doc, xla=False, attrs=()):
    return tuple(NondeterministicOp(op, api, xla, doc, tuple(attrs)) for op in ops)


GPU_NONDETERMINISTIC_OPS = (
    # The fused kernels raise; under determinism the Python APIs build a
    # non-fused, deterministic path instead, so the raw ops appear only when
    # called directly (or traced before determinism was switched on).
    *_entry(("SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"),
            "tf.nn.(sparse_)softmax_cross_entropy_with_logits (raw op)",
            "The GPU implementation of SoftmaxCrossEntropyWithLogits that would have been executed is not "
            "deterministic. Note that the Python API uses an alternative, deterministic, GPU-accelerated path "
            "when determinism is enabled."),
    *_entry(("FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3"),
            "tf.compat.v1.nn.fused_batch_norm backprop (keras BatchNormalization fine-tuned in inference mode)",
            "introduces truly random noise in the backprop to `offset` when `is_training=False`, when running "
            "on a GPU",
            attrs=(("is_training", False),)),
    *_entry(("ResizeNearestNeighborGrad",), "tf.image.resize(method=NEAREST) backprop, UpSampling2D('nearest')",
            "A deterministic GPU implementation of ResizeNearestNeighborGrad is not currently available."),
    *_entry(("CropAndResizeGradImage",), "tf.image.crop_and_resize backprop to `image`",
            "Deterministic GPU implementation of CropAndResizeBackpropImage not available."),
    *_entry(("CropAndResizeGradBoxes",), "tf.image.crop_and_resize backprop to `boxes`",
            "Deterministic GPU implementation of CropAndResizeBackpropBoxes not available."),
    *_entry(("AdjustContrastv2",), "tf.image.adjust_contrast",
            "A deterministic GPU implementation of AdjustContrastv2 is not currently available."),
    *_entry(("Bincount", "DenseBincount"), "tf.math.bincount",
            "Determinism is not yet supported in GPU implementation of Bincount."),
    *_entry(("SparseTensorDenseMatMul",), "tf.sparse.sparse_dense_matmul",
            "A deterministic GPU implementation of SparseTensorDenseMatmulOp is not currently available."),
    *_entry(("Dilation2DBackpropInput",), "tf.nn.dilation2d backprop to the input",
            "Determinism is not yet supported for Dilation2DBackpropInput."),
    *_entry(("Dilation2DBackpropFilter",), "tf.nn.dilation2d backprop to the filter",
            "Determinism is not yet supported for Dilation2DBackpropFilter."),
    *_entry(("MaxPoolGradWithArgmax",), "tf.nn.max_pool_with_argmax backprop",
            "Determinism is not yet supported for MaxPoolGradWithArgmax."),
    *_entry(("DepthwiseConv2dNativeBackpropFilter",), "tf.nn.depthwise_conv2d backprop to `filter`",
            "In TensorFlow version 2.10 and later, this exception will only be thrown if the backprop to "
            "`filter` of `tf.nn.depthwise_conv2d` is used on GPU with the expectation of determinism with a "
            "version of cuDNN earlier than 7.6."),
    *_entry(("FakeQuantWithMinMaxVarsGradient", "FakeQuantWithMinMaxVarsPerChannelGradient"),
            "tf.quantization.fake_quant_with_min_max_vars(_per_channel) backprop",
            "Determinism is not yet supported in GPU implementation of FakeQuantWithMinMaxVarsGradient."),
    *_entry(("DebugNumericSummaryV2",), "tf.debugging.experimental.enable_dump_debug_info (health modes)",
            "Determinism is not yet supported for DebugNumericSummaryV2 when tensor_debug_mode is "
            "CONCISE_HEALTH (or FULL_HEALTH)."),
    *_entry(("Svd",), "tf.linalg.svd of a matrix with one column",
            "Determinism is not yet supported for SVD of matrices with 1 column."),
    # XLA lowers max-pooling gradients to SelectAndScatter, which has no
    # deterministic GPU implementation; tf2xla raises before emitting it, on
    # every device in fact (the CPU too, despite the message: see the tests).
    *_entry(("MaxPoolGrad", "MaxPoolGradV2", "MaxPool3DGrad"),
            "max-pooling backprop inside a jit_compile=True function (keras MaxPooling2D trained with XLA)",
            "GPU MaxPool gradient ops do not yet have a deterministic XLA implementation.", xla=True),
)


def _called_functions(node):
    """Names of the functions a node calls: `f` of a call, `body`/`cond` of a
    while loop, the branches of an if or case."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        elif value.HasField("list"):
            names.extend(f.name for f in value.list.func)
    return names


def _must_compile(attrs):
    return "_XlaMustCompile" in attrs and attrs["_XlaMustCompile"].b


def graph_op_uses(graph):
    """Every node `graph` runs, with whether XLA compiles it.

    Args:
        graph: a `tf.Graph`, a `GraphDef` or a concrete function.

    Returns:
        A list of `(NodeDef, xla)` pairs over the top-level nodes and every
        function of the graph's library that they reach (nested calls,
        while-loop bodies, branches, gradient functions). `xla` is True for
        nodes inside a `jit_compile=True` function or one it calls.
    """
    if hasattr(graph, "graph"):  # a ConcreteFunction
        graph = graph.graph
    graph_def = graph.as_graph_def() if hasattr(graph, "as_graph_def") else graph
    functions = {f.signature.name: f for f in graph_def.library.function}
    uses, seen = [], set()
    pending = [(node, _must_compile(node.attr)) for node in graph_def.node]
    while pending:
        node, xla = pending.pop()
        uses.append((node, xla))
        for name in _called_functions(node):
            function = functions.get(name)
            if function is None:
                continue
            inner_xla = xla or _must_compile(function.attr) or _must_compile(node.attr)
            if (name, inner_xla) in seen:
                continue
            seen.add((name, inner_xla))
            pending.extend((inner, inner_xla) for inner in function.node_def)
    return uses


def _attr_value(attr):
    kind = attr.WhichOneof("value")
    return getattr(attr, kind) if kind else None


def _matches(entry, node, xla):
    if entry.op != node.op or entry.xla != xla:
        return False
    return all(name in node.attr and _attr_value(node.attr[name]) == value for name, value in entry.attrs)


def listed_ops(graph):
    """The entries of `GPU_NONDETERMINISTIC_OPS` that `graph` runs.

    Args:
        graph: a `tf.Graph`, a `GraphDef` or a concrete function.

    Returns:
        A tuple of `NondeterministicOp`, in the list's order, each once.
    """
    uses = graph_op_uses(graph)
    return tuple(entry for entry in GPU_NONDETERMINISTIC_OPS
                 if any(_matches(entry, node, xla) for node, xla in uses))


def traced_model_steps(model, batch_size=2, nb_candidate=3):
    """Concrete functions of what the stages run on `model` (not executed).

    Traces (a) a training step as `keras_uap.training` compiles it and `fit`
    runs it (sparse cross-entropy on logits, gradient, optimiser update,
    accuracy; XLA-compiled if the model's `jit_compile` says so), (b) the
    loss gradient with respect to the input (FGSM, PGD, the gradient
    directions, the comparison) and (c) one DeepFool step (the per-candidate
    Jacobian rows). Trace with op determinism already on, as the runner
    does: some APIs build other ops under determinism.

    Args:
        model: a built Keras model returning logits; it is compiled for
            training here if it is not compiled yet.
        batch_size: the traced batch size.
        nb_candidate: DeepFool's number of candidate classes.

    Returns:
        A dict `{"train": ..., "loss_gradient": ..., "deepfool": ...}` of
        concrete functions.
    """
    if not model.compiled:
        compile_for_training(model)
    model.optimizer.build(model.trainable_variables)
    x = tf.TensorSpec((batch_size, *model.input_shape[1:]), tf.float32)
    y = tf.TensorSpec((batch_size,), tf.int64)
    scalar = tf.TensorSpec((), tf.float32)
    candidates = tf.TensorSpec((batch_size, nb_candidate), tf.int32)
    return {
        # Compiled by XLA exactly when `fit` would compile it (Keras turns XLA
        # off when op determinism is on at `compile` time).
        "train": tf.function(model.train_step, jit_compile=bool(model.jit_compile)).get_concrete_function((x, y)),
        "loss_gradient": tf.function(lambda x, y: loss_gradient(model, x, y)).get_concrete_function(x, y),
        "deepfool": deepfool_step.get_concrete_function(model, nb_candidate, scalar, scalar, scalar,
                                                        x, x, x, candidates),
    }


def model_gpu_determinism_gaps(model):
    """`{step name: listed ops}` for the steps of `traced_model_steps(model)`."""
    return {name: listed_ops(function) for name, function in traced_model_steps(model).items()}


def warn_nondeterministic_gpu_ops(builders, stream=None):
    """Says in one line which listed ops the models would run, when a GPU is visible.

    Call it at run start, after switching op determinism on. Builds each
    model afresh, traces its steps (`traced_model_steps`) and writes one line
    to `stream` (default stderr) if any step uses an op of
    `GPU_NONDETERMINISTIC_OPS`. Without a visible GPU it does nothing (and
    builds nothing): the listed kernels raise on GPUs only (XLA's max-pool
    gradient raises on the CPU as well, so the CPU tests already catch it).

    Args:
        builders: `{model name: builder}`, e.g. `{name: MODELS[name] for
            name in names}`; each builder returns a new built Keras model.
        stream: where to write the line.

    Returns:
        `{model name: sorted raw op types}` of the models that use listed
        ops (empty without a GPU, or when none does).
    """
    if not tf.config.list_logical_devices("GPU"):
        return {}
    found = {}
    for name, builder in builders.items():
        gaps = model_gpu_determinism_gaps(builder())
        ops = sorted({entry.op for entries in gaps.values() for entry in entries})
        if ops:
            found[name] = ops
    if found:
        listed = "; ".join(f"{name}: {', '.join(ops)}" for name, ops in found.items())
        print(f"warning: these ops have no deterministic GPU kernel and will raise UnimplementedError on this "
              f"GPU under op determinism ({listed}); run on the CPU (CUDA_VISIBLE_DEVICES=) instead",
              file=stream or sys.stderr)
    return found
