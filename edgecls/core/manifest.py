"""The manifest's typed model: a JSON Schema, validated whenever a manifest is read or written.

Every field is described here once; `docs/bundle.md` carries the table `describe()` makes from
these descriptions (a test keeps the two identical). Sections are added by the stage that
computes them (`train` the core, `export` artifacts, `verify`, `bench`), so only the core is
required; every section present must match its schema. Fields inside sections may grow
(``additionalProperties`` is allowed there), and a new required field or a changed meaning
bumps `SCHEMA`; a manifest of another version is refused.
"""

from __future__ import annotations

from .errors import EdgeclsError

SCHEMA = 4
# 3: a large split's ids may live in a hashed file (dataset.split.ids_file) instead of inline;
# 4: bundle_id, verify and bench rows bound to the artifact's sha256 and merged per artifact
READS = (2, 3, 4)
MAX_SIDE = 1024  # the largest input side a bundle may declare (as --image-size): bounds every allocation by it
INLINE_IDS = 2000  # split ids kept in the manifest up to this many (digits: 1,797); more go to split.json


def _obj(description: str, properties: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    return {"type": "object", "description": description, "properties": properties,
            "required": required if required is not None else list(properties), "additionalProperties": extra}


def _f(kind, description: str, **more) -> dict:
    return {"type": kind, "description": description, **more}


_FILE = _obj("a file of the bundle", {
    "file": _f("string", "path relative to the bundle folder, '/'-separated"),
    "bytes": _f("integer", "size in bytes"),
    "sha256": _f("string", "SHA-256 of the content, hex", pattern="^[0-9a-f]{64}$"),
})

SCHEMA_DOC = _obj("manifest.json: what the bundle holds and everything measured on it", {
    "schema": _f("integer", "manifest schema version (this edgecls writes 4 and reads 2, 3 and 4)"),
    "edgecls_version": _f("string", "edgecls version that created the bundle"),
    "created_at": _f("string", "UTC time of training, ISO 8601"),
    "bundle_id": _f("string", "random id written by train: results are bound to it (schema 4)"),
    "updated_at": _f("string", "UTC time of the last change by any command"),
    "name": _f("string", "bundle name (the folder's name)"),
    "dataset": _obj("the data the model was trained and evaluated on", {
        "name": _f("string", "digits, fashion-mnist, synthetic or folder"),
        "source": _obj("how to open the data again; a folder's root is relative to the bundle folder "
                       "(no absolute path of the training machine is stored)", {
                           "name": _f("string", "source kind (as dataset.name)"),
                           "image_size": _f("integer", "side of the square input, pixels"),
                       }),
        "classes": _f("array", "class names, in label order", items={"type": "string"}),
        "counts": _obj("images per class in each split part", {
            part: _f("object", "class -> images", additionalProperties={"type": "integer", "minimum": 0})
            for part in ("train", "val", "test")}),
        "skipped": _f("array", "unreadable files skipped with --skip-bad (path: reason)", items={"type": "string"}),
        "split": _obj("the stratified, seeded split", {
            "seed": _f("integer", "--seed"),
            "official_test": _f("boolean", "the source's own test split was used (Fashion-MNIST)"),
            "test_fraction": _f("number", "--test-split"),
            "val_fraction": _f("number", "--val-split"),
            "limit": _f(["integer", "null"], "--limit (stratified subset), or null"),
            "train": _f("array", "ids of the training images (indices, or paths relative to the folder); "
                                 "absent when ids_file holds them"),
            "val": _f("array", "ids of the validation images (early stopping); absent when ids_file holds them"),
            "test": _f("array", "ids of the held-out images (reported, verified, benchmarked); absent when "
                                "ids_file holds them"),
            "ids_file": _f("string", f"over {INLINE_IDS:,} ids: the bundle file ({{train, val, test}} as JSON, "
                                     "recorded in files with its sha256) that holds them instead"),
        }, required=["seed", "official_test", "test_fraction", "val_fraction", "limit"]),
    }),
    "input": _obj("the model's input contract", {
        "name": _f("string", "input tensor name (images)"),
        "shape": _f("array", "[null, H, W, C]: H and W 1 to 1024 pixels, C 1 or 3 (the model's own input)",
                    prefixItems=[{"type": "null"}, {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                                 {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}, {"enum": [1, 3]}],
                    minItems=4, maxItems=4),
        "dtype": _f("string", "float32 (int8 TFLite: uint8)"),
        "layout": _f("string", "NHWC"),
        "range": _f("array", "raw pixel range fed to the model: [0, 255]"),
        "color": _f("string", "rgb or grayscale"),
        "resize": _f("string", "how images are resized to HxW"),
        "preprocessing": _f("string", "what happens outside the model (nothing: rescaling is its first layer)"),
    }),
    "labels": _f("array", "class names, in output order", items={"type": "string"}),
    "architecture": _obj("the network", {
        "name": _f("string", "tiny, small, mobile, or a pretrained backbone: efficientnet-lite0, -lite1, -lite2"),
        "width": _f("number", "--width multiplier"),
        "params": _f("integer", "parameter count"),
        "why": _f("string", "why this architecture: given with --arch, or the default's reason"),
        "pretrained": _f("boolean", "backbones: trained from ImageNet weights (false: --no-pretrained)"),
        "backbone_size": _f("integer", "backbones: pixels a side the model resizes its input to inside itself"),
        "weights": _f(["object", "null"], "backbones: the ImageNet weights (package, version, file, sha256)"),
        "macs_per_image": _f("integer", "multiply-accumulates per image, from the ONNX graph (after export)"),
    }, required=["name", "width", "params"]),
    "training": _obj("how training ran", {
        "config": _f("object", "the options of edgecls train (paths relative to the bundle folder)"),
        "plan": _obj("what training derived from the data's size (edgecls.train.plan)", {
            "batch_size": _f("integer", "batch size"),
            "steps_per_epoch": _f("integer", "optimiser steps per epoch"),
            "epochs": _f("integer", "epochs planned"),
            "total_steps": _f("integer", "optimiser steps planned (the schedule's length)"),
            "warmup_steps": _f("integer", "linear warm-up steps before cosine decay"),
            "early_stopping": _f("boolean", "whether early stopping was on (200+ validation images)"),
            "patience": _f("integer", "early-stopping patience, epochs"),
            "start_from_epoch": _f("integer", "no early stopping before this epoch"),
            "augment": _f("string", "none, standard or strong"),
            "auto": _f("array", "which of batch_size and epochs were derived rather than given"),
            "kind": _f("string", "scratch, or transfer (a pretrained backbone: phases)"),
            "phases": _f("array", "transfer learning: each phase's name (head, fine-tune), what trains, blocks "
                                  "unfrozen, epochs, steps, warm-up, peak learning rate"),
        }, required=["batch_size", "steps_per_epoch", "epochs", "total_steps", "warmup_steps", "early_stopping",
                     "patience", "start_from_epoch", "augment", "auto"]),
        "epochs_run": _f("integer", "epochs actually run"),
        "best_epoch": _f("integer", "the epoch whose weights were kept"),
        "interrupted": _f("boolean", "Ctrl-C ended training (weights so far kept)"),
        "seconds": _f("number", "wall time of fitting"),
        "train_images_per_second": _f(["number", "null"], "training throughput"),
        "batchnorm_recalibrated_on": _f("integer", "training images batch-norm statistics were re-estimated on"),
        "warnings": _f("array", "plain-language warnings (at chance, below the pixel baseline)",
                       items={"type": "string"}),
        "versions": _f("object", "tensorflow and keras versions"),
        "notes": _f("array", "how the images reach the network (grey to an RGB backbone, resizing inside)",
                    items={"type": "string"}),
        "distribute": _obj("how the work was spread (edgecls.train.distribute; absent in older bundles)", {
            "strategy": _f("string", "default, mirrored or multiworker"),
            "replicas": _f("integer", "replicas that trained in step (all workers together)"),
            "workers": _f("integer", "machines (processes) that trained together"),
            "task": _f("string", "the task that wrote the bundle: local, or chief/0 or worker/0"),
            "global_batch_size": _f("integer", "images per optimiser step over all replicas (the plan's batch)"),
            "per_replica_batch_size": _f("integer", "images per step on each replica"),
            "learning_rate": _f("number", "the peak learning rate used (--lr)"),
            "lr_scale": _f("number", "factor applied to --lr for the replicas (1: the global batch is the plan's)"),
        }),
    }, required=["config", "plan", "epochs_run", "best_epoch", "interrupted", "seconds", "train_images_per_second",
                 "batchnorm_recalibrated_on", "warnings", "versions"]),
    "imported": _obj("edgecls import: a model made elsewhere (absent for a trained bundle, which has training)", {
        "source": _obj("the file imported", {
            "file": _f("string", "its name"),
            "format": _f("string", "keras, h5 or savedmodel"),
            "sha256": _f("string", "hash of the file (a SavedModel folder: of its files' names and hashes)"),
        }),
        "config": _f("object", "the options of edgecls import (paths relative to the bundle folder)"),
        "preprocessing": _f("object", "how: inside the model (its normalising layers), declared (--scale, --offset, "
                                      "--mean, --std, --channels-order: baked into model.keras as its first layer, "
                                      "with multiply and add per channel) or raw pixels (--raw-pixels)"),
        "output": _f("object", "kind: probabilities or logits (a Softmax layer appended), and how it was told"),
        "input_from_model": _f("array", "[H, W, C] as the model declares it (null: any size)"),
        "seconds": _f("number", "time to import"),
        "versions": _f("object", "tensorflow and keras versions"),
        "warnings": _f("array", "plain-language warnings (at chance, below the pixel baseline)",
                       items={"type": "string"}),
        "notes": _f("array", "what the user should know (class order, held-out meaning, softmax appended)",
                    items={"type": "string"}),
    }, required=["source", "config", "preprocessing", "output", "warnings", "notes"]),
    "metrics": _obj("the Keras model on the held-out images", {
        "test": _obj("held-out metrics", {
            "images": _f("integer", "held-out images"),
            "accuracy": _f("number", "top-1 accuracy"),
            "loss": _f("number", "cross-entropy"),
            "per_class": _f("array", "precision, recall, f1, support per class"),
            "confusion": _f("array", "confusion matrix, rows true, columns predicted"),
        }),
    }),
    "baseline": _obj("the pixel baseline on the same split (edgecls.train.baseline)", {
        "method": _f("string", "what was fitted"),
        "accuracy": _f("number", "held-out accuracy"),
        "chance": _f("number", "held-out share of the commonest class"),
        "train_images": _f("integer", "images it was fitted on"),
        "test_images": _f("integer", "images it was scored on"),
        "seconds": _f("number", "time to fit and score"),
        "iterations": _f("integer", "solver iterations (lbfgs) it took"),
        "converged": _f("boolean", "the solver converged within its iteration limit"),
    }, required=["method", "accuracy", "chance", "train_images", "test_images", "seconds"]),
    "artifacts": _f("array", "model files: keras, and each exported format x precision", items=_obj(
        "one model file", {
            **_FILE["properties"],
            "format": _f("string", "keras, onnx, tflite, openvino, or another registered format"),
            "runtime": _f("string", "the runtime that runs the file (its format module's RUNTIME); absent in "
                                    "older bundles: the runtime of the format's name"),
            "precision": _f("string", "fp32, fp16 or int8: what the file holds"),
            "parts": _f("array", "sidecar files (OpenVINO's .bin), each with bytes and sha256", items=_FILE),
            "total_bytes": _f("integer", "bytes with the parts"),
            "versions": _f("object", "converter and runtime versions"),
            "calibration": _f("object", "int8: calibration images (count, from which split)"),
            "int8": _obj("int8: the gate at export and the recipe that met it (edgecls/export/accuracy.py)", {
                "recipe": _f("string", "default, or the format's accuracy-aware recipe that was kept"),
                "passed": _f(["boolean", "null"], "the kept file is shown to meet verify's int8 gate on the judging "
                                                  "set (null: no images to judge on)"),
                "outcome": _f(["string", "null"], "pass, inconclusive or fail on the judging set"),
                "max_drop": _f("number", "--max-drop, accuracy points"),
                "float_layers": _f("array", "layers left in float (node, tensor or op names of the format)"),
                "selected_on": _f("object", "selection set: half the validation split and up to half of --images; "
                                            "they choose the recipe and verify never judges the file on them; "
                                            "count, kinds, the validation ids, the --images pixel digests (16 hex), "
                                            "hash of them"),
                "judged_on": _f("object", "judging set: the other half of the validation split (never held-out, "
                                          "never the selection set); count, hash of the ids"),
                "attempts": _f("array", "every recipe tried on the selection set, in order: float layers, outcome, "
                                        "accuracy, drop with lost/gained and 95% interval, changed answers, checks"),
                "selection_evidence": _f("object", "the kept file on the selection set (as in attempts)"),
                "evidence": _f(["object", "null"], "the kept file on the judging set (as in attempts)"),
                "cost": _f("object", "bytes vs the default int8 file (bytes_ratio), latency_ratio: median "
                                     "predict() on a batch of 32, kept vs default"),
            }, required=["recipe", "passed", "attempts"]),
            "export_seconds": _f("number", "time to write and check it"),
            "check": _f("object", "the self-check run right after writing"),
            "size_ratio_vs_fp32": _f("number", "total bytes / the fp32 file's"),
        }, required=["file", "bytes", "sha256", "format", "precision"])),
    "files": _f("array", "other files (history.json, labels.txt, report.md, figures)", items=_FILE),
    "verify": _obj("parity results of edgecls verify, merged per artifact x runtime x device", {
        "at": _f("string", "UTC time of the last verify"),
        "gates": _f("object", "the gate per precision (edgecls.core.gates) of the last verify"),
        "rows": _f("array", "one per artifact x runtime x device: sha256 and bundle_id of what it judged, "
                            "at, outcome (pass, inconclusive, fail), each check with its 95% interval, accuracy, "
                            "lost/gained, changed answers, |Δp| (99th percentile and max), judged_on (which images: "
                            "count per kind, a hash of their ids, the --images folder's record), edge_cases (the "
                            "gross-fault check); rows whose sha256 no longer matches the artifact are stale and "
                            "ignored", items={"type": "object"}),
    }, required=["rows"]),
    "platform_verify": _obj("parity results of edgecls verify --platform (an emulated instruction set), merged "
                            "per artifact x runtime x platform x CPU model x requested precision", {
        "at": _f("string", "UTC time of the last emulated verify"),
        "rows": _f("array", "as verify's rows, plus platform (arm64), cpu (the emulated CPU model), emulator "
                            "(qemu-user version), vs_native (changed answers and max |Δp| against this machine's "
                            "outputs on the same images) and verdict (the outcome when the CPU models agree; "
                            "'emulator disagreement' when they differ; '(one CPU model)' when not cross-checked)"),
    }, required=["rows"]),
    "bench": _obj("the last edgecls bench", {
        "at": _f("string", "UTC time"),
        "environment": _f("object", "CPU, cores, threads, library versions"),
        "config": _f("object", "the options of edgecls bench"),
        "notes": _f("array", "what was skipped and why"),
        "rows": _f("array", "one per artifact x runtime x device x batch: sha256 and bundle_id of what it "
                            "measured, latency statistics, throughput, sizes; merged per row",
                    items={"type": "object"}),
    }, required=["rows"]),
    "reference": _obj("reference data for device-side verify and bench (edgecls.export.reference)", {
        "file": _f("string", "reference.npz: images (uint8 NHWC), labels, keras_probabilities; float_images, "
                             "float_kinds, float_keras_probabilities, edge_keras_probabilities"),
        "images": _f("integer", "how many held-out images it holds"),
        "ids": _f("array", "which held-out images"),
        "sha256": _f("string", "hash of the file (also under files)"),
        "selection": _f("string", "how they were chosen"),
        "keras_accuracy": _f("number", "the Keras model's accuracy on them"),
        "float_inputs": _f("object", "float_images in the file (float parity on a device): count, kinds (training, "
                                     "validation, variant), hash of their ids, how chosen; at most 512 and 16 MiB"),
        "edge_cases": _f("integer", "edge-case tensors whose Keras probabilities the file holds "
                                    "(edge_keras_probabilities)"),
    }, required=["file", "images", "ids", "sha256", "selection", "keras_accuracy"]),
    "decision": _obj("the recommendation of the last bench (edgecls.bench.decide)", {
        "constraints": _f("object", "for_batch, max_latency_ms, percentile, max_size_kb, max_drop, runtimes"),
        "found": _f("boolean", "an artifact qualified"),
        "chosen": _f(["object", "null"], "the artifact to ship: runtime, precision, file, p50/tail ms, size, "
                                         "accuracy, delta; sha256 and bundle_id of what was chosen (predict, "
                                         "Classifier and app follow it while current: edgecls.core.recommended)"),
        "others": _f("array", "every other artifact with the reason it was not chosen"),
        "ruled_out_by": _f(["string", "null"], "when nothing qualified: the constraint that ruled the last out"),
    }),
}, required=["schema", "edgecls_version", "created_at", "name", "dataset", "input", "labels", "architecture",
             "artifacts", "files"])


def validate(manifest: dict, where: str) -> None:
    """Raise EdgeclsError naming `where` and the first field that does not match the schema."""
    import jsonschema

    if not isinstance(manifest, dict):
        raise EdgeclsError(f"{where}: corrupt manifest (not a JSON object)")
    if manifest.get("schema") not in READS:
        raise EdgeclsError(f"{where}: unsupported manifest schema {manifest.get('schema')!r} "
                           f"(this edgecls reads schemas {', '.join(map(str, READS))}; re-create the bundle "
                           "with 'edgecls train')")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA_DOC).iter_errors(manifest))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise EdgeclsError(f"{where}: invalid manifest at {field}: {error.message}")
    split = manifest["dataset"]["split"]
    if "ids_file" not in split and not {"train", "val", "test"} <= set(split):
        raise EdgeclsError(f"{where}: invalid manifest at dataset/split: needs train, val and test ids, or ids_file")


def describe() -> str:
    """The field-by-field table of docs/bundle.md, made from the schema's descriptions."""
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]

    def walk(node: dict, prefix: str, required: bool) -> None:
        kind = node.get("type", "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if prefix:
            rows.append(f"| `{prefix}` | {kind} | {'yes' if required else ''} | {node.get('description', '')} |")
        for name, child in node.get("properties", {}).items():
            walk(child, f"{prefix}.{name}" if prefix else name, name in node.get("required", []))
        items = node.get("items", {})
        for name, child in items.get("properties", {}).items():
            walk(child, f"{prefix}[].{name}", name in items.get("required", []))

    walk(SCHEMA_DOC, "", True)
    return "\n".join(rows) + "\n"
