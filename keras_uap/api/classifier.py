"""Any Keras image classifier, or TF SavedModel, as a differentiable logits function.

`load_classifier` accepts a `keras.Model`, a `.keras` (or legacy `.h5`) file or a
TF SavedModel directory, finds its single image input and single output, and
says whether that output is logits or probabilities. Probabilities `p` are
turned into `log(clip(p, 1e-12, 1))`: the same arg-max and the same softmax
cross-entropy (log-softmax of log-probabilities is the log-probabilities),
with the caveat that classes whose probability underflows below 1e-12 get a
zero gradient.
"""

import dataclasses
import os
import zipfile
from typing import Any, Callable

import numpy as np
import tensorflow as tf

import keras

from keras_uap.api._checks import ArgumentError, check_choice
from keras_uap.errors import UserError

__all__ = ["Classifier", "load_classifier", "OUTPUT_KINDS"]

OUTPUT_KINDS = ("auto", "logits", "probabilities")
_PROB_FLOOR = 1e-12
# How close to 1 a row of outputs must sum, on the probe batch, to count as probabilities.
_SUM_TOL = 1e-4
_PROBE_BATCH = 4
# Stand-in for unknown spatial sizes when probing a fully convolutional model.
_PROBE_SIZE = 32


@dataclasses.dataclass(frozen=True, eq=False)
class Classifier:
    """An image classifier seen as a differentiable logits function.

    Attributes:
        logits_fn: a callable taking a float32 batch (N, *input_shape) and
            returning float32 logits (N, num_classes); differentiable with
            `tf.GradientTape`. The same object for the classifier's lifetime,
            so compiled attack steps cached per callable are reused.
        input_shape: the shape of one input, e.g. (H, W, C); a dimension the
            model leaves open is None.
        num_classes: the number of classes.
        output: what the model returns, "logits" or "probabilities".
        source: where the model came from (a path, or "keras.Model").
        model: the underlying Keras model or loaded SavedModel (kept alive
            here, since `logits_fn` uses its variables).
        runners: compiled per-batch functions built on `logits_fn`, cached by
            purpose and strategy so that repeated calls do not retrace them.
    """

    logits_fn: Callable[[tf.Tensor], tf.Tensor]
    input_shape: tuple
    num_classes: int
    output: str
    source: str
    model: Any = dataclasses.field(repr=False, default=None)
    runners: dict = dataclasses.field(init=False, repr=False, default_factory=dict)

    def predict_labels(self, x):
        """The arg-max class of each input of the batch `x`, an int64 tensor (N,)."""
        return tf.argmax(self.logits_fn(x), axis=1)


def load_classifier(model, output="auto"):
    """Wraps an image classifier for the attacks and the SVD of `keras_uap.api`.

    Args:
        model: a `keras.Model` (single input, single (N, num_classes) output),
            a path to a `.keras` / `.h5` file, a path to a TF SavedModel
            directory (called through its `serving_default` signature, which
            must have a single input and a single output), or a `Classifier`
            (returned unchanged).
        output: "logits", "probabilities" or "auto". With "auto", the output is
            taken for probabilities when the model's final layer (or its
            activation) is a softmax, or when the outputs on a probe batch of
            uniform random inputs in [0, 1] are non-negative with rows summing
            to 1 within 1e-4; else for logits.

    Returns:
        A `Classifier`.

    Raises:
        UserError: a path that does not exist or is neither a Keras file nor
            a SavedModel directory, a file that cannot be loaded, or a model
            without exactly one input and one (N, num_classes) output.
        ArgumentError: an unknown `output`, or a `model` of another type.
    """
    check_choice("output kind", output, OUTPUT_KINDS)
    if isinstance(model, Classifier):
        return model
    if isinstance(model, keras.Model):
        return _from_keras(model, output, "keras.Model")
    if isinstance(model, (str, os.PathLike)):
        return _from_path(os.fspath(model), output)
    raise ArgumentError(f"`model` must be a keras.Model, a .keras file or a SavedModel directory. "
                        f"Received: {type(model).__name__}")


def _one_line(exc):
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _from_path(path, output):
    if not os.path.exists(path):
        raise UserError(f"{path}: model not found")
    if os.path.isdir(path):
        if not (os.path.isfile(os.path.join(path, "saved_model.pb"))
                or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))):
            raise UserError(f"{path}: not a TF SavedModel directory (no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as exc:  # TF raises many kinds for a damaged SavedModel.
            raise UserError(f"{path}: cannot load the SavedModel ({_one_line(exc)})") from None
        return _from_saved_model(loaded, output, path)
    if not path.endswith((".keras", ".h5", ".hdf5")):
        raise UserError(f"{path}: unknown model format; expected a .keras file or a TF SavedModel directory")
    # Keras reports any .keras file that is not a zip archive as "File not found".
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras file (a .keras file is a zip archive, as model.save writes)")
    import keras_uap.layers  # noqa: F401  (registers this project's layers for deserialisation)

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many kinds for a bad or foreign file.
        raise UserError(f"{path}: cannot load the Keras model ({_one_line(exc)})") from None
    return _from_keras(model, output, path)


def _single(name, values, what, source):
    if len(values) != 1:
        raise UserError(f"{source}: the model has {len(values)} {what}s; keras-uap needs exactly one ({name})")
    return values[0]


def _from_keras(model, output, source):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise UserError(f"{source}: the model's input shape is unknown (a subclassed model?); wrap it as "
                        "keras.Sequential([keras.Input(shape), model])")
    image = _single("the image batch", list(inputs), "input", source)
    out = _single("the class scores", list(outputs), "output", source)
    if len(out.shape) != 2 or out.shape[-1] is None:
        raise UserError(f"{source}: the model's output has shape {tuple(out.shape)}; expected (N, num_classes)")

    def logits(x):
        y = model(x, training=False)
        if isinstance(y, dict):
            y = next(iter(y.values()))
        elif isinstance(y, (list, tuple)):
            y = y[0]
        return tf.cast(y, tf.float32)

    input_shape = tuple(image.shape[1:])
    kind = output
    if kind == "auto":
        softmax = _ends_in_softmax(model) or _looks_like_probabilities(logits, input_shape)
        kind = "probabilities" if softmax else "logits"
    return _make(logits, input_shape, int(out.shape[-1]), kind, source, model)


def _ends_in_softmax(model):
    """Whether the layer that produces the model's output is, or ends in, a softmax."""
    try:
        layer = model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        layer = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(layer, keras.Model) and layer is not model:
        return _ends_in_softmax(layer)
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", None) == "softmax"


def _from_saved_model(loaded, output, source):
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise UserError(f"{source}: the SavedModel has no serving_default signature")
    signature = signatures["serving_default"]
    args, kwargs = signature.structured_input_signature
    specs = list(args) + list(kwargs.items())
    spec = _single("the image batch", specs, "input", source)
    in_name, in_spec = spec if isinstance(spec, tuple) else (None, spec)
    out_name, out_spec = _single("the class scores", list(signature.structured_outputs.items()), "output", source)
    if not in_spec.dtype.is_floating:
        raise UserError(f"{source}: the signature's input is {in_spec.dtype.name}; "
                        "gradients need a float input")
    if out_spec.shape.rank not in (None, 2):
        raise UserError(f"{source}: the signature's output has shape {tuple(out_spec.shape)}; "
                        "expected (N, num_classes)")
    if in_spec.shape.rank is None or in_spec.shape.rank < 2:
        raise UserError(f"{source}: the signature's input has shape {in_spec.shape}; expected a batch (N, ...)")

    def logits(x):
        x = tf.cast(x, in_spec.dtype)
        result = signature(**{in_name: x}) if in_name is not None else signature(x)
        return tf.cast(result[out_name], tf.float32)

    input_shape = tuple(in_spec.shape[1:])
    num_classes = out_spec.shape[-1] if out_spec.shape.rank == 2 else None
    probe = None
    if output == "auto" or num_classes is None:
        probe = logits(_probe_batch(input_shape)).numpy()
        if probe.ndim != 2:
            raise UserError(f"{source}: the signature returns shape {probe.shape}; expected (N, num_classes)")
        num_classes = probe.shape[1]
    kind = output if output != "auto" else ("probabilities" if _probabilities(probe) else "logits")
    return _make(logits, input_shape, int(num_classes), kind, source, loaded)


def _probe_batch(input_shape):
    shape = [_PROBE_BATCH] + [_PROBE_SIZE if d is None else d for d in input_shape]
    return tf.constant(np.random.default_rng(0).uniform(size=shape).astype(np.float32))


def _probabilities(values):
    values = np.asarray(values, dtype=np.float64)
    return bool(values.size and np.all(values >= 0) and np.all(np.abs(values.sum(axis=1) - 1.0) <= _SUM_TOL))


def _looks_like_probabilities(logits, input_shape):
    return _probabilities(logits(_probe_batch(input_shape)).numpy())


def _make(logits, input_shape, num_classes, kind, source, model):
    if num_classes < 2:
        raise UserError(f"{source}: the model has {num_classes} output; a classifier needs at least 2 classes")
    if kind == "probabilities":
        def logits_fn(x):
            return tf.math.log(tf.clip_by_value(logits(x), _PROB_FLOOR, 1.0))
    else:
        logits_fn = logits
    return Classifier(logits_fn=logits_fn, input_shape=input_shape, num_classes=num_classes, output=kind,
                      source=source, model=model)
