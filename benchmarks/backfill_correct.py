"""Adds per-image results to the final evaluations of a run whose final.keras is gone, from the
float32 weights exported from it (cifar_resnet/nets/weights), for the paired comparisons of
results/paired.py (issue #37).

    python -m benchmarks.backfill_correct RUN_DIR WEIGHTS.weights.h5

Evaluations written before "correct" was recorded (the first four 64k runs of docs/full-repro)
lack it. A mixed-precision run keeps float32 variables, so its exported weights are its final
model's; computed in the run's own policy (config.json's `precision`), they give its
predictions. This checks that: each evaluation's error and exact-1,000 error must come out as
recorded, to the image, or nothing is written (exit 1). Only the "correct" field is added.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("weights", help="the run's exported .weights.h5")
    parser.add_argument("--data-dir", help="CIFAR-10 (default: as the run's config, else the "
                                           "usual search)")
    args = parser.parse_args(argv)

    from cifar_resnet.spec import datasets  # before TensorFlow: it sets oneDNN (spec/cpu.py)
    import keras
    import numpy as np
    from cifar_resnet.results import evaluate, paired
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib, files, rundir

    run = rundir.RunDir(args.run_dir)
    config = config_lib.load(run.config)
    if args.data_dir:
        config.data_dir = args.data_dir
    keras.mixed_precision.set_global_policy(config.precision)
    model = build.build_net(config)
    model.load_weights(args.weights)
    splits = datasets.load_splits(config)
    images, labels = splits.test
    updates = {}
    for which, (split, checkpoint, tta) in rundir.FINAL_EVALUATIONS.items():
        path = run.evaluation(split, checkpoint, tta)
        recorded = files.read_json(path)
        probs = evaluate.predict(model, images, mean=splits.mean, std=splits.std, tta=tta)
        correct = probs.argmax(axis=1) == labels
        error, head = float(np.mean(~correct)), recorded.get("head") or {}
        head_error = float(np.mean(~correct[:head["num_images"]])) if head else None
        if error != recorded["error"] or (head and head_error != head["error"]):
            print(f"error: {path} records error {recorded['error']} (first "
                  f"{head.get('num_images')}: {head.get('error')}); these weights in "
                  f"{config.precision} give {error} ({head_error}); nothing written",
                  file=sys.stderr)
            return 1
        updates[path] = dict(recorded, correct=paired.encode(correct))
        print(f"{path}: error {100 * error:.2f}% as recorded ({which})")
    for path, report in updates.items():
        files.write_json(path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
