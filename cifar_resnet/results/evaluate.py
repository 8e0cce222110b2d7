"""Inspect a trained run: test error, per-class accuracy, confusion matrix, confident mistakes.

Beyond the papers: He et al. 2015 (sec. 4.2) report one number per net, the test error of the
model trained with the CIFAR-10 recipe. `evaluate` rebuilds the evaluated split exactly as the
run saw it (`config.json` -> `datasets.load_splits`, the training split's mean/std) and writes, into
RUN_DIR/eval/ (or `out`), for `{split}-{checkpoint}[-flip]`:

    .json            error, per-class accuracy, confusion matrix, most confidently wrong images
                     (and, with `head`, the error on the split's first images alone)
    -confusion.png   the confusion matrix (rows: true class, columns: predicted)
    -wrong.png       a grid of the most confidently wrong images

Flip test-time augmentation averages the class probabilities of each image and its horizontal
mirror (the training augmentation's flip); the JSON reports the error with and without it.
"""

from __future__ import annotations

import pathlib
from typing import Optional

import keras
import numpy as np
from matplotlib.figure import Figure

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.data import device_input
from cifar_resnet.spec import config as config_lib, datasets, files, rundir
from cifar_resnet.nets import blocks  # noqa: F401  (registers the custom layers load_model needs)
from cifar_resnet.results import rundata
from cifar_resnet.results import paired
from cifar_resnet.spec.config import EVAL_CHECKPOINTS as CHECKPOINTS
from cifar_resnet.spec.config import EVAL_SPLITS as SPLITS
from cifar_resnet.spec.config import EVAL_TTAS as TTAS


# test_batch rows 0-999: exact in the shared copy of CIFAR-10 (data/README.md).
EXACT_TEST_IMAGES = 1000


class EvaluationError(config_lib.ConfigError):
    """The run cannot be evaluated as asked; the message is one line saying why and what to do."""


def _choice(name, value, allowed):
    check_choice(name, value, allowed, EvaluationError)


def predict(model, images, *, mean, std, batch_size=256, tta=None) -> np.ndarray:
    """Class probabilities of uint8 `images`, normalized like training; `tta="flip"` averages
    the probabilities of each image and its horizontal mirror."""
    _choice("tta", tta, TTAS)
    probs = _probs(model, images, mean=mean, std=std, batch_size=batch_size, flip=False)
    if tta == "flip":
        probs = (probs + _probs(model, images, mean=mean, std=std, batch_size=batch_size,
                                flip=True)) / 2
    return probs


def _probs(model, images, *, mean, std, batch_size, flip: bool) -> np.ndarray:
    """The model's probabilities of the normalized images, each mirrored when `flip`."""
    if keras.backend.backend() != "tensorflow":  # no TensorFlow needed: normalize with numpy
        return model.predict(device_input.NormalizedImages(
            images, mean=mean, std=std, batch_size=batch_size, flip=flip), verbose=0)
    import tensorflow as tf
    from cifar_resnet.data import pipeline
    ds = pipeline.make_dataset(images, np.zeros(len(images), np.int64), batch_size=batch_size,
                               mean=mean, std=std, training=False).map(lambda x, _: x)
    return model.predict(ds.map(lambda x: tf.reverse(x, axis=[2])) if flip else ds, verbose=0)


def classification_summary(labels, probs, class_names, *, top_wrong=16) -> dict:
    """Error, per-class accuracy, confusion matrix and the most confidently wrong images."""
    k = len(class_names)
    preds = probs.argmax(axis=1)
    confusion = np.bincount(np.asarray(labels) * k + preds, minlength=k * k).reshape(k, k)
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    confidence = probs[np.arange(len(preds)), preds]
    wrong = np.flatnonzero(preds != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:top_wrong]
    return {
        "num_images": int(len(labels)),
        "error": float(np.mean(preds != labels)),
        "class_names": list(class_names),
        "per_class_accuracy": {n: float(a) for n, a in zip(class_names, per_class)},
        "confusion_matrix": confusion.tolist(),
        "most_confident_wrong": [
            {"index": int(i), "label": class_names[labels[i]],
             "predicted": class_names[preds[i]], "confidence": float(confidence[i])}
            for i in wrong],
    }


def _title(summary) -> str:
    """What an evaluation's figure shows: the run, its net, the checkpoint, split and TTA."""
    what = [summary.get("run_dir"), summary.get("net"),
            f"{summary['checkpoint']} checkpoint" if summary.get("checkpoint") else None]
    split = f"{summary.get('split', 'test')} error {100 * summary['error']:.2f}%"
    if summary.get("tta"):
        split += f" with {summary['tta']} TTA"
    return " · ".join(w for w in what if w) + "\n" + split


def plot_confusion(summary, path) -> None:
    """Saves the confusion matrix as a PNG, counts written in the cells, titled with the run,
    its net and checkpoint (`_title`)."""
    matrix, names = np.asarray(summary["confusion_matrix"]), summary["class_names"]
    k = len(names)
    # Up to 20 classes (CIFAR-10, CIFAR-100 coarse) the counts fit in the cells; with 100 the
    # figure grows with k, the cells are colour only and the labels small, so all stay legible.
    size = max(7.0, 0.16 * k)
    fig = Figure(figsize=(size, size * 6 / 7), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted",
           ylabel="true", title="confusion matrix: " + _title(summary))
    fontsize = 8 if k <= 20 else 5
    ax.set_xticklabels(names, rotation=45 if k <= 20 else 90, ha="right" if k <= 20 else "center",
                       fontsize=fontsize)
    ax.set_yticklabels(names, fontsize=fontsize)
    if k <= 20:
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > matrix.max() / 2 else "black")
    files.save_figure(fig, path, dpi=120)


def plot_wrong(summary, images, path, columns=8) -> None:
    """Saves a grid of the most confidently wrong images, titled true -> predicted (p)."""
    wrong = summary["most_confident_wrong"]
    rows = max(1, -(-len(wrong) // columns))
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows), layout="constrained")
    for n, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.axis("off")
        if n < len(wrong):
            w = wrong[n]
            ax.imshow(images[w["index"]])
            ax.set_title(f"{w['label']}\n-> {w['predicted']} ({w['confidence']:.2f})",
                         fontsize=7)
    fig.suptitle(("most confidently wrong" if wrong else "no wrong predictions") + ": "
                 + _title(summary))
    files.save_figure(fig, path, dpi=120)


def format_per_class(summary, *, most: int = 20) -> str:
    """A compact per-class table of an evaluation: each class's accuracy, its images and the
    class it is most often mistaken for (with how often). With more than `most` classes
    (CIFAR-100) only the `most // 2` worst and best classes are listed."""
    names, matrix = summary["class_names"], summary["confusion_matrix"]
    rows = []
    for i, name in enumerate(names):
        wrong = [(n, j) for j, n in enumerate(matrix[i]) if j != i and n]
        n, j = max(wrong) if wrong else (0, None)
        rows.append((summary["per_class_accuracy"][name], name, sum(matrix[i]),
                     f"{names[j]} ({n})" if j is not None else "-"))
    shown = rows
    if len(rows) > most:
        ranked = sorted(rows)
        shown = ranked[:most // 2] + [None] + ranked[-(most // 2):]
    width = max(len("class"), *(len(name) for name in names))
    lines = [f"  {'class':<{width}}  accuracy  images  most often taken for"]
    for row in shown:
        if row is None:
            lines.append(f"  ... {len(rows) - 2 * (most // 2)} classes between ...")
            continue
        accuracy, name, count, confused = row
        lines.append(f"  {name:<{width}}  {100 * accuracy:7.2f}%  {count:6d}  {confused}")
    return "\n".join(lines)


def head_error(labels, probs, n) -> dict:
    """Error on the first `n` images and its binomial standard error, sqrt(e (1 - e) / n).

    The project's shared copy of CIFAR-10 is exact only in test_batch rows 0-999 (the rest
    carries JPEG loss), so the error there is the one comparable with the official files; at
    n = 1,000 and e near 0.1 its standard error is about 0.9 points.
    """
    if not 0 < n <= len(labels):
        raise EvaluationError(f"head {n!r} is more than the split's {len(labels)} images")
    error = float(np.mean(probs[:n].argmax(axis=1) != np.asarray(labels)[:n]))
    return {"num_images": int(n), "error": error,
            "std_error": float(np.sqrt(error * (1 - error) / n))}


def evaluate(run_dir, *, checkpoint="auto", tta=None, split="test", out=None,
             top_wrong=16, head=None, data_dir=None) -> dict:
    """Evaluates a run's checkpoint on a split and writes the JSON and PNG reports.

    Args:
        run_dir: A run directory of `train.train_and_evaluate` (config.json and a checkpoint).
        checkpoint: "best" (best validation accuracy), "final", or "auto": "best" when the
            run held out a validation split (val_fraction > 0), else "final" (the paper's
            protocol, the only model a run on all 50k images has). The report's
            "checkpoint" names the one used, "checkpoint_rule" why.
        tta: None, or "flip" for flip test-time augmentation.
        split: "test" or "val" (the held-out part of the training set).
        out: Output folder; default RUN_DIR/eval.
        top_wrong: How many confidently wrong images to list and plot.
        head: Also report the error on the split's first `head` images ("head": count,
            error, std_error; see `head_error`), e.g. 1000 for the shared copy's exact ones.
        data_dir: The data to evaluate on; default the data the run's data.json names
            (`rundata.load_splits`: its content must be the run's).

    Returns:
        The report, also written to `{out}/{split}-{checkpoint}[-flip].json`; its "files" maps
        each output to its path. With tta, "error_without_tta" and "tta_effect" (error with
        minus without, as a fraction) say what the augmentation changed.

    Raises:
        EvaluationError: A bad option, or the run lacks config.json, the checkpoint or the split;
            the checkpoint is damaged or holds another net than config.json describes.
        ConfigError, DataError: config.json or the dataset cannot be read, or the data is not
            the run's.
    """
    _choice("checkpoint", checkpoint, CHECKPOINTS)
    _choice("split", split, SPLITS)
    _choice("tta", tta, TTAS)
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 1):
        raise EvaluationError(f"head {head!r} is not a positive number of images")
    run_dir, run = pathlib.Path(run_dir), rundir.RunDir(run_dir)
    if not run.config.is_file():
        raise EvaluationError(f"{run_dir} is not a run directory (no {rundir.CONFIG})")
    config = config_lib.load(run.config)
    rule = "as asked"
    if checkpoint == "auto":
        has_val = config.val_fraction > 0
        checkpoint = "best" if has_val else "final"
        rule = ("auto: the run has a validation split" if has_val
                else "auto: no validation split, so no best checkpoint")
    model_path = run.checkpoint(checkpoint)
    if not model_path.is_file():
        other = "final" if checkpoint == "best" else "best"
        raise EvaluationError(f"{model_path} not found (training unfinished, or no validation "
                              f"split for 'best'); try --checkpoint {other}")
    model = rundata.load_checkpoint(model_path, config, EvaluationError)
    splits = rundata.load_splits(run_dir, config, data_dir)
    chosen = splits.test if split == "test" else splits.val
    if chosen is None:
        raise EvaluationError(f"{run_dir} was trained with val_fraction=0: no 'val' split")
    images, labels = chosen
    names = datasets.DATASETS[config.dataset].class_names[config.label_mode]

    kw = dict(mean=splits.mean, std=splits.std, batch_size=256)
    probs = _probs(model, images, **kw, flip=False)
    report = {"run_dir": str(run_dir), "net": config.net_name, "checkpoint": checkpoint,
              "checkpoint_rule": rule, "split": split, "tta": tta}
    if tta:  # the flip's own pass only: its mean with the plain one is predict(tta="flip")
        plain_error = float(np.mean(probs.argmax(axis=1) != labels))
        probs = (probs + _probs(model, images, **kw, flip=True)) / 2
    report.update(classification_summary(labels, probs, names, top_wrong=top_wrong))
    report["correct"] = paired.encode(probs.argmax(axis=1) == labels)  # for paired comparisons
    if head is not None:
        report["head"] = head_error(labels, probs, head)
    if tta:
        report.update(error_without_tta=plain_error, tta_effect=report["error"] - plain_error)

    report["files"] = {kind: str(run.evaluation(split, checkpoint, tta, suffix, out))
                       for kind, suffix in (("json", ".json"), ("confusion", "-confusion.png"),
                                            ("wrong", "-wrong.png"))}
    pathlib.Path(report["files"]["json"]).parent.mkdir(parents=True, exist_ok=True)
    plot_confusion(report, report["files"]["confusion"])
    plot_wrong(report, images, report["files"]["wrong"])
    files.write_json(report["files"]["json"], report)
    return report


def exact_head(config: config_lib.Config) -> Optional[int]:
    """`evaluate`'s `head` for the exact test images: EXACT_TEST_IMAGES, or None for a
    synthetic test split smaller than that (CIFAR's have 10,000 images)."""
    small = config.dataset == "synthetic" and config.synthetic_test < EXACT_TEST_IMAGES
    return None if small else EXACT_TEST_IMAGES


def evaluate_final(run_dir, which: str, data_dir=None) -> dict:
    """`evaluate` of the final model on the test set with the exact images' head: `which` is a
    key of rundir.FINAL_EVALUATIONS ("plain" or "flip"), the reports a report copies and its
    results.csv reads."""
    split, checkpoint, tta = rundir.FINAL_EVALUATIONS[which]
    config = config_lib.load(rundir.RunDir(run_dir).config)
    return evaluate(run_dir, checkpoint=checkpoint, split=split, tta=tta,
                    head=exact_head(config), data_dir=data_dir)
