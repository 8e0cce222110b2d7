"""How much of a trained net's test error the shared copy's JPEG loss accounts for (issue #22).

The development copy of CIFAR-10 (`shared/data/README.md`) is a reconstruction: 55,000 of its
60,000 images carry JPEG loss (quality 75, 4:2:0 chroma), and only the first 1,000 test images
(and rows 0-3,999 of data_batch_1) are exact. A net trained on it is compared with He et al.
2015's numbers, which come from the exact images. This script evaluates a run's final model on

- the 1,000 exact test images as they are,
- the same 1,000 images put through JPEG (Pillow, quality 75, 4:2:0) as the others were, and
- the 9,000 other test images (JPEG in the file),

and prints the error of each, with the binomial standard error (`results.evaluate.head_error`;
the JSON holds fractions, as the project's evaluations do), and the mean absolute change
that the re-encoding made to a pixel (the data's README gives 5.8 grey levels for its own).
The first two differ only by the JPEG loss at test time; the loss the net saw in training stays.

    python -m benchmarks.jpeg_effect RUN_DIR [--weights FILE.weights.h5] [--json OUT.json]

`--weights` evaluates a checkpoint of an unfinished run (`backup/epochN.weights.h5`) instead of
its `final.keras`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXACT = 1000  # results.evaluate.EXACT_TEST_IMAGES, without importing TensorFlow before argparse


def jpeg(images, quality=75):
    """uint8 (N, 32, 32, 3) images, each encoded and decoded as a baseline JPEG with 4:2:0
    chroma subsampling (Pillow's `subsampling=2`)."""
    import numpy as np
    from PIL import Image
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=2)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--weights", help="a .weights.h5 checkpoint instead of final.keras")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from cifar_resnet.spec import datasets  # before TensorFlow: it sets oneDNN (spec/cpu.py)
    import keras
    import numpy as np
    from cifar_resnet.results import evaluate
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib, files, rundir

    run = rundir.RunDir(args.run_dir)
    config = config_lib.load(run.config)
    if config.dataset != "cifar10":
        print(f"error: {args.run_dir} was trained on {config.dataset}, not cifar10", file=sys.stderr)
        return 2
    if args.weights:
        model = build.build_net(config)
        model.load_weights(args.weights)
    else:
        model = keras.saving.load_model(run.checkpoint("final"), compile=False)
    splits = datasets.load_splits(config)
    images, labels = splits.test

    def probs(x):
        return evaluate.predict(model, x, mean=splits.mean, std=splits.std)

    def error(p, y):  # fractions, with the binomial standard error
        return evaluate.head_error(y, p, len(y))

    exact, rest = images[:EXACT], images[EXACT:]
    recoded = jpeg(exact)
    p_exact, p_recoded = probs(exact), probs(recoded)
    results = {
        "run_dir": str(args.run_dir), "weights": args.weights or str(run.checkpoint("final")),
        "exact": error(p_exact, labels[:EXACT]),
        "exact_through_jpeg": error(p_recoded, labels[:EXACT]),
        "others_jpeg_in_file": error(probs(rest), labels[EXACT:]),
        "recoding_mean_abs_change": float(np.abs(recoded.astype(int) - exact).mean()),
        # The paired view: the same images, with and without the loss.
        "predictions_changed": int((p_exact.argmax(1) != p_recoded.argmax(1)).sum()),
    }
    for key in ("exact", "exact_through_jpeg", "others_jpeg_in_file"):
        r = results[key]
        print(f"{key:22s} {r['num_images']:5d} images: error {100 * r['error']:.2f}% "
              f"(standard error {100 * r['std_error']:.2f})")
    print(f"re-encoding changed a pixel by {results['recoding_mean_abs_change']:.2f} grey levels "
          f"on average and {results['predictions_changed']} of the {EXACT} predictions")
    if args.json:
        files.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
