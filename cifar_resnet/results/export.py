"""A finished run's final weights as a float32 `.weights.h5` file: the form `weights=` loads
(`resnet_v1(depth=20, weights="path/to/file.weights.h5")`) and `nets/pretrained.CIFAR10` ships.

He et al. 2015 (sec. 4.2) report the test error of the model at the end of training; that model
(final.keras) is the one exported. Its variables are float32 whatever the run's precision policy
(mixed precision keeps float32 master weights), so the file loads into a net built in float32.
`export_weights` also returns the `pretrained.CIFAR10` entry for the file: its SHA-256, the
settings the net was built with, and the test errors the file gives in that float32 net, the one
`weights=` builds. For a run trained in mixed precision these can differ by a few images from
the run's own evaluations (eval/, the report's results.csv), made in the run's precision.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib

import numpy as np

from cifar_resnet.nets import models
from cifar_resnet.spec import architecture, config as config_lib, files, rundir
from cifar_resnet.results import evaluate as evaluate_lib
from cifar_resnet.results import rundata
from cifar_resnet.run import build, reliability


class ExportError(config_lib.ConfigError):
    """The run cannot be exported; the message is one line saying why and what to do."""


def _save_weights(model, path: pathlib.Path) -> None:
    """`model.save_weights(path)` all or nothing, as a run's checkpoints are written
    (`reliability.atomic_save`: in memory, free space checked, temporary file, rename).

    Raises:
        WriteError: the file could not be written (read-only, disk full), in one line.
    """
    try:
        reliability.atomic_save(model, path, weights_only=True)
    except reliability.CheckpointWriteError as e:  # its words are a checkpoint's
        raise files.write_error(path, e.__cause__) from None


def export_weights(run_dir, out=None, data_dir=None) -> dict:
    """Writes a complete run's final weights to a `.weights.h5` file and describes it.

    The file is checked before it is described: a net built afresh from the run's config in
    float32 loads it and must then hold exactly the trained model's variables. That net is
    then evaluated on the run's test split, as `evaluate` does, to give the entry's errors.

    Args:
        run_dir: a run directory whose training is complete (metrics.json, final.keras).
        out: a `.weights.h5` path, or a folder for `<net>_<dataset>.weights.h5` (the shipped
            files' names); default the run directory.
        data_dir: the test data to measure the errors on; default the data the run's data.json
            names (`rundata.load_splits`: its content must be the run's).

    Returns:
        {"net": the model's name, "path": the file written, "entry": its `pretrained.CIFAR10`
        entry}. The entry holds file (the name), sha256, shortcut, preset, num_classes,
        input_shape, normalization, trained (iterations, precision, code), and the file's
        test_error, exact1000_error (the first 1,000 test images) and tta_error (flip) in %,
        measured in float32 (exact1000_error None for a synthetic test split under 1,000
        images).

    Raises:
        ExportError: the run is not complete, lacks final.keras, its final.keras is damaged or
            holds another net than its config.json, or `out` is not a `.weights.h5` path or a
            folder. Nothing is written then.
        DataError: the run's data is not found, or is not the data it trained on.
        WriteError: the file cannot be written.
    """
    run = rundir.RunDir(run_dir)
    if not run.config.is_file():
        raise ExportError(f"{run.path} is not a run directory (no {rundir.CONFIG})")
    try:
        metrics = rundir.finished_metrics(run.path)
    except rundir.MetricsUnreadable as e:
        raise ExportError(f"{e}; rerun its train command to rewrite it") from None
    if metrics is None or not run.final.is_file():
        raise ExportError(f"{run.path} has not finished training (no complete {rundir.METRICS} "
                          f"and {rundir.FINAL}); rerun its train command to finish it")
    config = config_lib.load(run.config)
    trained = rundata.load_checkpoint(run.final, config, ExportError)
    splits = rundata.load_splits(run.path, config, data_dir)  # before anything is written
    path = pathlib.Path(out) if out is not None else run.path
    if not path.name.endswith(".weights.h5"):
        if path.exists() and not path.is_dir():
            raise ExportError(f"--out {path}: expected a .weights.h5 path or a folder")
        path = path / f"{trained.name}_{config.dataset}.weights.h5"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.write_error(path, e) from None
    _save_weights(trained, path)

    fresh = build.build_net(dataclasses.replace(config, precision="float32"))
    fresh.load_weights(path)
    mismatched = [a.path for a, b in zip(trained.weights, fresh.weights)
                  if a.path != b.path or not np.array_equal(a.numpy(), b.numpy())]
    if mismatched or len(trained.weights) != len(fresh.weights):
        path.unlink()
        raise ExportError(f"{path}: a net built from {run.config} does not load it unchanged "
                          f"({', '.join(mismatched[:3]) or 'a different number of weights'})")

    images, labels = splits.test
    probs = {tta: evaluate_lib.predict(fresh, images, mean=splits.mean, std=splits.std, tta=tta)
             for tta in (None, "flip")}
    error = {tta: 100 * float(np.mean(p.argmax(axis=1) != labels)) for tta, p in probs.items()}
    head = evaluate_lib.exact_head(config)
    # The shortcut as the constructor resolves it (a plain net's too: `pretrained.load` compares).
    shortcut, _ = architecture.resolve_cifar(config.version, config.depth, config.resolved_block,
                                             config.shortcut,
                                             architecture.model_options(config.preset))
    commit = (metrics.get("code") or {}).get("commit")
    return {"net": trained.name, "path": path, "config": config, "entry": {
        "file": path.name, "sha256": files.sha256(path),
        "shortcut": shortcut, "preset": config.preset, "num_classes": config.num_classes,
        "input_shape": tuple(trained.input_shape[1:]), "normalization": config.normalization,
        "trained": (f"{metrics['iterations']:,} iterations at batch {config.batch_size}, "
                    f"{metrics.get('precision', config.precision)}"
                    + (f", code {commit[:7]}" if commit else "")),
        "test_error": round(error[None], 2),
        "exact1000_error": (round(100 * evaluate_lib.head_error(labels, probs[None], head)["error"],
                                  2) if head else None),
        "tta_error": round(error["flip"], 2),
    }}


def format_usage(exported: dict) -> str:
    """What a user needs to load an exported file: the call that builds its net and loads it,
    and the input the net expects."""
    config, entry = exported["config"], exported["entry"]
    function = models.CONSTRUCTORS[config.version]
    constructor = function.__name__
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()}
    net = config.net.constructor_kwargs()
    args = [f"input_shape={entry['input_shape']}", f"depth={net.pop('depth')}",
            f"num_classes={config.num_classes}"]
    # The arguments the call needs: those that are not the constructor's defaults.
    args += [f"{k}={v!r}" for k, v in net.items() if v != defaults.get(k)]
    args.append(f"weights={str(exported['path'])!r}")
    inputs = {
        "pixel_mean": "x / 255 minus the per-pixel mean image of the training images",
        "channel_std": "x / 255, minus each channel's mean and divided by its std over the "
                       "training images",
        "none": "x / 255",
    }.get(entry["normalization"], f"normalized as {entry['normalization']!r}")
    lines = [f"from cifar_resnet import {constructor}",
             f"model = {constructor}({', '.join(args)})",
             f"# inputs: float32 (N, 32, 32, 3) images, {inputs} "
             f"(cifar_resnet.spec.datasets.compute_normalization(x_train, "
             f"{entry['normalization']!r})); outputs: softmax probabilities"]
    return "\n".join(lines)


def format_entry(exported: dict) -> str:
    """An `export_weights` result as the Python source of its `pretrained.CIFAR10` item."""
    fields = "".join(f"        {k}={v!r},\n" for k, v in exported["entry"].items())
    return f"    {exported['net']!r}: dict(\n{fields}    ),"
