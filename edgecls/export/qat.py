"""Quantization-aware fine-tuning (QAT): a short fine-tune of the bundle's model with int8 rounding simulated in the
forward pass, so that its weights settle where int8 loses little; the three int8 files are then made from it
(`edgecls.export.qat_files`).

The mechanism is TensorFlow Model Optimization's (TF-MOT) default 8-bit QAT scheme, the one the TFLite converter is
written for: per-channel symmetric int8 weights, per-tensor activations with ranges learned as moving averages,
quantizers placed after Conv + BatchNorm + ReLU/ReLU6 (never between them: the converter folds them into one int8
op), after Add, pooling and Dense. TF-MOT works on Keras 2 (`tf_keras`) only, so the bundle's Keras 3 model is
rebuilt layer by layer as a `tf_keras` twin with the same weights (`twin`: the layers edgecls's architectures use;
any other is named and refused). Rescaling and Resizing, which TF-MOT has no rule for, get an output quantizer (the
converter would otherwise leave them in float with no range).

Two corrections to TF-MOT's defaults: depthwise kernels are quantized per channel (`per_channel_depthwise`:
TF-MOT's scheme gives them one range per kernel), and every range starts where post-training calibration would
(`calibrate_ranges`: TF-MOT starts activations at -6..6 and moves them by 0.1% a step).

The fine-tune distils the float model (the gate counts answers that differ from its answers) on fresh label-free
views of the training split each epoch (`views`), BatchNorm statistics frozen, and keeps the best of the calibrated
start and each epoch by agreement with the float model on the int8 selection set (half the validation images,
variants of them, half of --images; verify leaves them out); it is
bounded by a time limit. A loss that becomes NaN, or a validation accuracy shown below the float model's by more
than the gate, stops it with one line (`QatFailed`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np

from ..core.errors import EdgeclsError, require


class QatMode(str, Enum):
    """`--qat`: off; on (every int8 file from the QAT model); auto (only for int8 files that miss the gate after the
    accuracy-aware recipes)."""

    off = "off"
    on = "on"
    auto = "auto"


class QatFailed(EdgeclsError):
    """The QAT phase diverged: nothing of it is written."""

    exit_code = 1


class NotRebuildable(QatFailed):
    """The bundle's model has a layer the QAT twin cannot express (bad input)."""

    exit_code = 2


@dataclass
class QatSettings:
    """The fine-tune's settings (recorded in the manifest)."""

    max_epochs: int = 10
    patience: int = 2  # epochs without a better validation agreement before stopping
    lr_fraction: float = 0.005  # Adam's learning rate, as a fraction of the bundle's training --lr
    batch_size: int = 32
    views: bool = True  # each epoch on fresh label-free views of the training images (variants, mixup)
    temperature: float = 2.0  # of the distillation: softened teacher and student (1: plain probabilities)
    time_limit: float = 1800.0  # seconds of fine-tuning at most (--qat-time-limit)

    def validate(self) -> None:
        if not self.time_limit > 0:
            raise EdgeclsError(f"--qat-time-limit {self.time_limit:g}: must be more than 0 seconds")
        if not 1 <= self.max_epochs <= 200:
            raise EdgeclsError(f"--qat-epochs {self.max_epochs}: must be between 1 and 200")
        if not self.temperature > 0:
            raise EdgeclsError(f"QAT temperature {self.temperature:g}: must be more than 0")


#: Keras layer class -> what its twin needs (the layers edgecls's architectures are built from)
SUPPORTED = ("InputLayer", "Rescaling", "Resizing", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add",
             "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Dropout", "Dense", "Softmax")
ACTIVATIONS = ("linear", "relu", "relu6")  # what TF-MOT quantizes inside Conv2D/Dense
SPLIT_ACTIVATIONS = ("softmax",)  # rebuilt as the layer (linear) and a Softmax layer after it, as the converter runs it
OUTPUT_QUANTIZED = ("Rescaling", "Resizing")  # no TF-MOT rule: their output gets a quantizer
INPUT_RANGE = (0.0, 255.0)  # raw pixels: the uint8 input keeps scale 1.0, zero point 0


QAT_MODULES = ("tensorflow_model_optimization", "tf_keras")  # edgecls[qat]


def installed() -> bool:
    """Whether edgecls[qat] is installed (without importing it)."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in QAT_MODULES)


def _tfmot():
    tfmot = require(QAT_MODULES[0], "qat")
    require(QAT_MODULES[1], "qat")
    return tfmot


def _nested(layer) -> bool:
    """A functional or Sequential model used as a layer (how `edgecls import` wraps a user's model): the twin
    inlines it."""
    return type(layer).__name__ in ("Functional", "Model", "Sequential") and hasattr(layer, "get_config") and \
        "layers" in (layer.get_config() or {})


def check_rebuildable(model, where: str) -> None:
    """Raise QatFailed naming the first layer of `model` (nested models included) that cannot be rebuilt for QAT."""
    for layer in model.layers:
        kind = type(layer).__name__
        if _nested(layer):
            check_rebuildable(layer, where)
            continue
        if kind not in SUPPORTED:
            raise NotRebuildable(f"{where}: layer '{layer.name}' ({kind}) cannot be rebuilt for quantization-aware "
                            f"fine-tuning (supported: {', '.join(SUPPORTED[1:])})")
        act = layer.get_config().get("activation")
        if act is not None and act not in ACTIVATIONS + SPLIT_ACTIVATIONS and kind in ("Conv2D", "DepthwiseConv2D",
                                                                                       "Dense"):
            raise NotRebuildable(f"{where}: layer '{layer.name}' ({kind}) has activation '{act}', which quantization-"
                            f"aware fine-tuning does not simulate (supported: {', '.join(ACTIVATIONS)})")


def _twin_layer(tfk, layer, name: str):
    """A tf_keras layer of the same class and settings as the Keras 3 `layer`, named `name` (initializers and dtype
    policies dropped: the weights are copied)."""
    import inspect

    cls = getattr(tfk.layers, type(layer).__name__)
    accepted = inspect.signature(cls.__init__).parameters
    cfg = {key: v for key, v in layer.get_config().items()
           if key in accepted and key != "dtype" and not isinstance(v, dict)
           and not key.endswith(("initializer", "regularizer", "constraint"))}
    if type(layer).__name__ == "BatchNormalization":
        cfg["trainable"] = False  # statistics frozen (inference mode) during the fine-tune
    if cfg.get("activation") in SPLIT_ACTIVATIONS:
        cfg["activation"] = "linear"  # the twin adds the Softmax layer after it
    cfg["name"] = name
    return cls(**cfg)


def twin(model, where: str = "model.keras"):
    """The Keras 3 functional `model` rebuilt in `tf_keras` with the same weights (TF-MOT's Keras); a functional
    model used as a layer (an imported model inside edgecls's preprocessing and softmax) is inlined, its layers
    named `<model>/<layer>` where a name is taken.

    Raises:
        QatFailed: a layer (or activation) the twin cannot express, named.
    """
    check_rebuildable(model, where)
    _tfmot()
    import tf_keras as tfk

    first = model.layers[0]
    name = first.name if type(first).__name__ == "InputLayer" else "images"  # a Sequential model lists no input
    inp = tfk.Input(tuple(model.input_shape[1:]), name=name)
    names = {name}
    out = _rebuild(tfk, model, inp, where, names)
    return tfk.Model(inp, out, name=model.name)


def _rebuild(tfk, model, inp, where: str, names: set[str]):
    """`model`'s layers rebuilt in tf_keras on the tensor `inp` (its one input); returns its output tensor."""
    config = model.get_config()
    tensors = {}
    if type(model).__name__ == "Sequential":  # one layer after another: no graph in its config
        x = inp
        for layer in model.layers:
            x = _rebuild_one(tfk, model, layer, x, where, names)
        return x

    def resolve(arg):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            return tensors[arg["config"]["keras_history"][0]]
        if isinstance(arg, (list, tuple)):
            return [resolve(a) for a in arg]
        return arg

    for entry in config["layers"]:
        layer = model.get_layer(entry["name"])
        if type(layer).__name__ == "InputLayer":
            tensors[layer.name] = inp
            continue
        nodes = entry["inbound_nodes"]
        if len(nodes) != 1:
            raise NotRebuildable(f"{where}: layer '{layer.name}' is called {len(nodes)} times; quantization-aware "
                            "fine-tuning rebuilds layers called once")
        args = nodes[0]["args"]
        inputs = resolve(args[0]) if len(args) == 1 else resolve(args)
        tensors[layer.name] = _rebuild_one(tfk, model, layer, inputs, where, names)
    outputs = config["output_layers"]
    return tensors[outputs[0][0] if isinstance(outputs[0], list) else outputs[0]]


def _rebuild_one(tfk, model, layer, inputs, where: str, names: set[str]):
    """One layer of `model` rebuilt in tf_keras on `inputs` (a nested model inlined); its output tensor. A name
    already taken in the twin becomes `<model>/<name>`."""
    if _nested(layer):
        return _rebuild(tfk, layer, inputs, where, names)

    def fresh(name: str) -> str:
        name = name if name not in names else f"{model.name}/{name}"
        names.add(name)
        return name

    new = _twin_layer(tfk, layer, fresh(layer.name))
    out = new(inputs)
    new.set_weights(layer.get_weights())
    if layer.get_config().get("activation") in SPLIT_ACTIVATIONS:
        out = tfk.layers.Softmax(name=fresh(f"{layer.name}_softmax"))(out)
    return out


def quantized(twin_model):
    """TF-MOT's QAT model of the `tf_keras` twin (default 8-bit scheme; Rescaling/Resizing output-quantized)."""
    tfmot = _tfmot()
    import tf_keras as tfk
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    Default8BitOutputQuantizeConfig = configs.Default8BitOutputQuantizeConfig  # noqa: N806

    q = tfmot.quantization.keras

    def annotate(layer):
        kind = type(layer).__name__
        if kind == "InputLayer":
            return layer
        if kind in OUTPUT_QUANTIZED:
            return q.quantize_annotate_layer(layer, Default8BitOutputQuantizeConfig())
        return q.quantize_annotate_layer(layer)

    annotated = tfk.models.clone_model(twin_model, clone_function=annotate)
    annotated.set_weights(twin_model.get_weights())
    with q.quantize_scope({"Default8BitOutputQuantizeConfig": Default8BitOutputQuantizeConfig}):
        qmodel = q.quantize_apply(annotated)
    per_channel_depthwise(qmodel)
    return qmodel


def _depthwise_quantizer():
    """A per-channel symmetric int8 quantizer for a DepthwiseConv2D kernel (H, W, C, M): one range per output
    channel (C x M), as the TFLite converter quantizes a post-training depthwise kernel. TF-MOT's default scheme
    gives depthwise kernels its Conv2D weight quantizer, which takes the last axis (the depth multiplier, 1) as the
    channel axis: one range for the whole kernel, per tensor."""
    import tensorflow as tf
    import tf_keras as tfk
    from tensorflow_model_optimization.python.core.quantization.keras import quantizers as tq

    class DepthwisePerChannel(tq.LastValueQuantizer):
        def __init__(self):
            super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

        def build(self, tensor_shape, name, layer):
            channels = int(tensor_shape[2]) * int(tensor_shape[3])
            return {key: layer.add_weight(f"{name}_{key[:3]}", shape=(channels,), trainable=False,
                                          initializer=tfk.initializers.Constant(value))
                    for key, value in (("min_var", -6.0), ("max_var", 6.0))}

        def __call__(self, inputs, training, weights, **kwargs):
            shape = tf.shape(inputs)  # (H, W, C, M) -> (H, W, 1, C*M): the same element order, channels last
            flat = super().__call__(tf.reshape(inputs, (shape[0], shape[1], 1, -1)), training, weights, **kwargs)
            return tf.reshape(flat, shape)

    return DepthwisePerChannel()


def per_channel_depthwise(qmodel) -> int:
    """Give every DepthwiseConv2D of the QAT model a per-channel kernel quantizer (`_depthwise_quantizer`), its
    per-tensor one's range variables dropped. The converter honours it: the int8 depthwise kernels of the TFLite
    file carry one scale per channel, as a post-training file's do. Returns the number of layers changed."""
    changed = 0
    for layer in qmodel.layers:
        if type(getattr(layer, "layer", None)).__name__ != "DepthwiseConv2D":
            continue
        kept = []
        for weight, _, found in layer._weight_vars:
            dropped = {found["min_var"].ref(), found["max_var"].ref()}
            layer._non_trainable_weights = [w for w in layer._non_trainable_weights if w.ref() not in dropped]
            quantizer = _depthwise_quantizer()
            kept.append((weight, quantizer, quantizer.build(weight.shape, "depthwise_kernel", layer)))
        layer._weight_vars = kept
        changed += 1
    return changed


def pin_input_range(qmodel) -> None:
    """Set the input quantizer's range to raw pixels, 0-255 (uint8 input of scale 1.0, zero point 0, as MediaPipe
    and the web app feed it), whatever range the training images reached."""
    for layer in qmodel.layers:
        if layer.name == "quantize_layer":
            for var in layer.weights:
                if var.name.split("/")[-1].startswith(("quantize_layer_min", "min")):
                    var.assign(INPUT_RANGE[0])
                elif var.name.split("/")[-1].startswith(("quantize_layer_max", "max")):
                    var.assign(INPUT_RANGE[1])


def quantizer_ranges(qmodel) -> tuple[list, list]:
    """(activation quantizers, weight and input quantizers) of the QAT model, as (layer name, {"min_var", "max_var"})
    pairs, told apart by the quantizer's type: TF-MOT's MovingAverageQuantizer (a layer's activation or output,
    named by the wrapped layer) moves its min/max as a moving average; LastValue (weights) and AllValues (the
    input) assign them from the tensor they see."""
    from tensorflow_model_optimization.python.core.quantization.keras import quantizers as tq

    moving, direct = [], []

    def add(name, quantizer, found) -> None:
        if quantizer is not None and found:
            (moving if isinstance(quantizer, tq.MovingAverageQuantizer) else direct).append((name, found))

    for layer in qmodel.layers:
        name = getattr(getattr(layer, "layer", None), "name", layer.name)
        for _, quantizer, found in getattr(layer, "_weight_vars", ()):
            add(name, quantizer, found)
        for act in getattr(layer, "_quantize_activations", ()):
            add(name, act.quantizer, getattr(act, "_post_activation_vars", None))
            add(name, act.quantizer, getattr(act, "_pre_activation_vars", None))
        outputs = getattr(layer, "_output_quantizers", None)
        if outputs:
            add(name, outputs[0], getattr(layer, "_output_quantizer_vars", None))
        if type(layer).__name__ == "QuantizeLayer":
            add(name, getattr(layer, "quantizer", None), getattr(layer, "quantizer_vars", None))
    return moving, direct


def calibrate_ranges(qmodel, float_twin, x: np.ndarray, batch: int = 32) -> int:
    """Start every activation quantizer where post-training calibration starts the converter: the min/max (0
    included, as TFLite keeps it) that its layer's output reaches in the float model `float_twin` (the `tf_keras`
    twin `qmodel` was made from: the same layer names) over `x`. TF-MOT starts these moving averages at -6..6 and
    moves them by 0.1% a step, so a short fine-tune barely moves them: a residual Add whose sums reach -60..40
    would stay clipped to -6..6, a model the fine-tune cannot recover. The weight quantizers are given their
    weights' own ranges (one training-mode step on a few images, every other variable put back), so the model
    simulates int8 from the first step. Returns the number of activation ranges set."""
    import tf_keras as tfk

    moving, direct = quantizer_ranges(qmodel)
    if not len(x) or not moving:
        return 0
    names = list(dict.fromkeys(name for name, _ in moving))
    probe = tfk.Model(float_twin.input, [float_twin.get_layer(n).output for n in names])
    low, high = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for first in range(0, len(x), batch):
        outs = probe(x[first:first + batch].astype(np.float32), training=False)
        for n, out in zip(names, outs if len(names) > 1 else [outs]):
            out = np.asarray(out)
            low[n], high[n] = min(low[n], float(out.min())), max(high[n], float(out.max()))
    weights = qmodel.weights
    saved = [w.numpy() for w in weights]
    dropouts = [inner for layer in qmodel.layers for inner in (layer, getattr(layer, "layer", None))
                if type(inner).__name__ == "Dropout"]
    rates = [d.rate for d in dropouts]
    for d in dropouts:
        d.rate = 0.0
    qmodel(x[:4].astype(np.float32), training=True)  # assigns the weight quantizers' ranges (and moves the rest)
    for d, rate in zip(dropouts, rates):
        d.rate = rate
    keep = {v.ref() for _, found in direct for v in (found["min_var"], found["max_var"])}
    for w, value in zip(weights, saved):
        if w.ref() not in keep:
            w.assign(value)
    for name, found in moving:
        found["min_var"].assign(np.full(found["min_var"].shape, low[name], np.float32))
        found["max_var"].assign(np.full(found["max_var"].shape, high[name], np.float32))
    return len(moving)


def _predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i:i + batch].astype(np.float32), training=False))
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, 0))


@dataclass
class FineTune:
    """What the QAT phase did (the manifest's `qat` record)."""

    settings: dict
    epochs: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    stopped: str = ""
    train_images: int = 0
    val_images: int = 0
    lr: float = 0.0
    history: list = field(default_factory=list)
    val_agreement_before: float | None = None  # the QAT model before any step (int8 simulated on the float weights)
    val_agreement: float | None = None
    val_accuracy: float | None = None
    float_val_accuracy: float | None = None
    selection_images: dict = field(default_factory=dict)  # what val_agreement is measured on

    def to_dict(self) -> dict:
        return asdict(self)


def views(images: np.ndarray, seed: int, mix: float = 0.5) -> np.ndarray:
    """A fresh label-free view of the training images for one epoch of the distillation: each image under a
    random variant (flip, crop, brightness, contrast) or as it is, and a `mix` share blended with another one
    (mixup, weight ~ Beta(0.4, 0.4)). The float model labels them, so they need no labels; a fine-tuned model has
    memorised its training images (its answers there are nearly one-hot and int8 rarely changes them), while on
    views like these its answers are softer and int8 changes more of them: where the fine-tune has to learn."""
    from ..core.inputs import perturbed

    rng = np.random.default_rng(seed)
    out = perturbed(images, seed=seed).astype(np.float32)
    blend = np.flatnonzero(rng.random(len(out)) < mix)
    weight = rng.beta(0.4, 0.4, (len(blend), 1, 1, 1)).astype(np.float32)
    out[blend] = weight * out[blend] + (1 - weight) * out[rng.permutation(len(out))[:len(blend)]]
    return np.round(out)


def _soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at `temperature` (softmax of log p / T)."""
    z = np.log(np.clip(probs.astype(np.float64), 1e-7, 1.0)) / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


def _distillation_loss(temperature: float):
    """Cross-entropy of the student's probabilities at `temperature` against the (already softened) teacher's,
    scaled by T^2 (Hinton et al.: the gradients keep their size whatever T)."""
    import tensorflow as tf

    def loss(teacher, student):
        z = tf.math.log(tf.clip_by_value(student, 1e-7, 1.0)) / temperature
        return -tf.reduce_mean(tf.reduce_sum(teacher * tf.nn.log_softmax(z), axis=-1)) * temperature ** 2

    return loss


#: label-free variants (flips, crops, brightness, contrast) of each validation image added to the images that pick
#: the epoch: agreement with the float model needs no labels, and 80 validation images alone move 1.25 points a flip
SELECTION_VARIANTS = 4


def fine_tune(qmodel, float_model, train_x, val_x, val_y, settings: QatSettings, base_lr: float,
              max_drop: float, unlabelled: np.ndarray | None = None) -> FineTune:
    """Fine-tune the QAT model `qmodel` (ranges calibrated: `calibrate_ranges`) on `train_x` against
    `float_model`'s probabilities, early-stopped on the top-1 agreement with the float model over the validation
    images, label-free variants of them (`SELECTION_VARIANTS` each) and the `unlabelled` images (--images). The
    state before any step (post-training int8, simulated) is a candidate too: the best of it and the epochs is
    kept, so the phase never leaves int8 further from the float model than it found it, as far as those images
    show.

    Raises:
        QatFailed: the loss became NaN or infinite, or the validation accuracy is shown below the float model's
            by more than `max_drop` points (the int8 gate's accuracy check).
    """
    import tf_keras as tfk

    from ..core.gates import gates, judge
    from ..core.inputs import variants
    from ..core.names import Precision
    from ..core.stats import Outcome

    lr = base_lr * settings.lr_fraction
    record = FineTune(asdict(settings), train_images=len(train_x), val_images=len(val_x), lr=lr)
    # fixed targets when every epoch sees the training images as they are; fresh ones per epoch with views
    fixed = None if settings.views else _soften(_predict(float_model, train_x), settings.temperature)
    float_val = _predict(float_model, val_x).astype(np.float64)
    float_answers = float_val.argmax(1) if len(val_x) else np.zeros(0, int)
    record.float_val_accuracy = float((float_answers == val_y).mean()) if len(val_x) else None
    extra, _ = variants(val_x, SELECTION_VARIANTS * len(val_x), seed=1)
    more = unlabelled if unlabelled is not None and len(val_x) else extra[:0]
    pool = np.concatenate([val_x, extra, more]) if len(val_x) else val_x
    pool_answers = np.concatenate([float_answers, *(_predict(float_model, a).argmax(1) for a in (extra, more)
                                                    if len(a))])
    record.selection_images = {"validation": int(len(val_x)), "variants": int(len(extra)), "images": int(len(more))}

    def agreement(check: bool = True) -> float | None:
        """Top-1 agreement of the QAT model with the float model on the selection pool; raises QatFailed when
        its accuracy on the validation images is shown below the float model's by more than the gate (a
        collapse)."""
        if not len(val_x):
            return None
        probs = _predict(qmodel, pool).astype(np.float64)
        if not np.isfinite(probs).all():
            raise QatFailed(f"quantization-aware fine-tuning diverged at epoch {record.epochs}: the model's outputs "
                            "are NaN; the float model and the bundle are untouched")
        on_val = probs[:len(val_x)]
        record.val_agreement = float((probs.argmax(1) == pool_answers).mean())
        record.val_accuracy = float((on_val.argmax(1) == val_y).mean())
        ev = judge(gates(max_drop)[Precision.int8], on_val, float_val, val_y)
        drop = next(c for c in ev.checks if c.name == "accuracy drop")
        if check and drop.outcome == Outcome.failed:
            raise QatFailed(f"quantization-aware fine-tuning collapsed at epoch {record.epochs}: validation accuracy "
                            f"{record.val_accuracy:.1%} vs the float model's {record.float_val_accuracy:.1%} (shown "
                            f"beyond --max-drop {max_drop:g} points); the float model and the bundle are untouched")
        return record.val_agreement

    pin_input_range(qmodel)
    qmodel.compile(tfk.optimizers.Adam(lr), loss=_distillation_loss(settings.temperature))
    # before any step: the calibrated ranges on the float weights (post-training int8, simulated), a candidate
    best = record.val_agreement_before = agreement(check=False)
    best_weights = qmodel.get_weights()
    deadline = time.monotonic() + settings.time_limit
    t0 = time.monotonic()

    class Limit(tfk.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > deadline:
                self.model.stop_training = True

    waited = 0
    rng = np.random.default_rng(0)
    for epoch in range(1, settings.max_epochs + 1):
        order = rng.permutation(len(train_x))
        if settings.views:
            x = views(train_x, seed=epoch)
            target = _soften(_predict(float_model, x), settings.temperature)
        else:
            x, target = train_x, fixed
        hist = qmodel.fit(x[order].astype(np.float32), target[order], batch_size=settings.batch_size, epochs=1,
                          verbose=0, callbacks=[Limit()])
        loss = float(hist.history["loss"][-1])
        record.epochs = epoch
        if not np.isfinite(loss):
            raise QatFailed(f"quantization-aware fine-tuning diverged at epoch {epoch}: the loss is {loss}; the "
                            "float model and the bundle are untouched")
        score = agreement()
        record.history.append({"epoch": epoch, "loss": round(loss, 5), "val_agreement": score,
                               "seconds": round(time.monotonic() - t0, 1)})
        if score is None or best is None or score > best:
            best, best_weights, record.best_epoch, waited = score, qmodel.get_weights(), epoch, 0
        else:
            waited += 1
        if time.monotonic() > deadline:
            record.stopped = f"time limit ({settings.time_limit:g} s)"
            break
        if waited >= settings.patience:
            record.stopped = f"early stopping (no better validation agreement for {settings.patience} epochs)"
            break
    else:
        record.stopped = f"max epochs ({settings.max_epochs})"
    qmodel.set_weights(best_weights)
    pin_input_range(qmodel)
    record.seconds = round(time.monotonic() - t0, 2)
    agreement()  # the kept epoch's figures (and checks)
    if record.best_epoch == 0:
        record.stopped += "; no epoch agreed better than the calibrated start, which is kept"
    return record


def converter(qmodel, uint8_io: bool):
    """TensorFlow's TFLiteConverter of the QAT model: int8 from the learned ranges (no calibration data);
    uint8 input and output (`uint8_io`), else float32 input and output around the same int8 graph."""
    from ..core._tf import tensorflow

    tf = tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(qmodel)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if uint8_io:
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    return conv


def versions() -> dict:
    import tf_keras

    tfmot = _tfmot()
    return {"tensorflow_model_optimization": tfmot.__version__, "tf_keras": tf_keras.__version__}


__all__ = ["FineTune", "NotRebuildable", "QatFailed", "QatMode", "QatSettings", "calibrate_ranges", "check_rebuildable",
           "converter", "fine_tune", "per_channel_depthwise", "pin_input_range", "quantized", "quantizer_ranges",
           "twin", "versions"]
