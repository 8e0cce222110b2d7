"""How far the first pass of SGD inflates each kernel of a run's net (issue #22, plain-56).

He et al. 2015, sec 4.1, argue that the plain nets' degradation is "unlikely to be caused by
vanishing gradients", since batch normalization keeps the forward and backward signals in a
healthy range. Yang et al., "A Mean Field Theory of Batch Normalization" (ICLR 2019), find the
opposite failure: without skip connections, gradients *grow* exponentially with depth at
initialization, and the first steps of optimization absorb them. Behind batch normalization a
kernel's length does not change the net's output, so large steps leave the kernel much longer,
and every later step turns it by an angle as many times smaller as its squared norm grew: the
layer learns with its learning rate divided by that growth, until weight decay shrinks the kernel
back (by about 2 * lr * decay / (1 - momentum) = 0.02% a step at lr 0.1).

This script replays the first pass of a run (its own config.json, in a scratch directory; the
run is not touched) and records the squared L2 norm of every convolution and dense kernel at
initialization, after iterations 1, 2, 5, 10, 20, 50, 100 and 200 (and as many after a warm-up's
end) and at the end of each pass. It prints the growth (squared norm over its initial value) of
the first, the largest and the median layer, and each pass's training loss beside the run's own
history.csv rows: with `deterministic=true` they are equal, so the replay is the run's start, bit
for bit.

    python -m benchmarks.weight_growth RUN_DIR [RUN_DIR ...] [--passes N] [--set KEY=VALUE]
                                       [--json OUT.json] [--plot OUT.png]

`--plot OUT.png` draws each kernel's growth by its place in the net and the first kernel's
growth over the iterations; a RUN_DIR ending in `.json` is the `--json` of an earlier call, read
instead of replayed (`python -m benchmarks.weight_growth a.json b.json --plot growth.png`).

`--set` changes the replay's config (e.g. `--set precision=float32`, or the paper's warm-up of
ResNet-110, `--set warmup_iterations=400`; the comparison with history.csv then says that they
differ).

    python -m benchmarks.weight_growth --follow RUN_DIR --json OUT.jsonl

follows a run as it trains instead (read-only, beside it): the squared norms in the checkpoint of
each pass (`backup/epoch<k>.weights.h5`, which the runner keeps only until the next), one JSON
line per pass appended to OUT.jsonl, until the run's metrics.json appears. Rerun, it goes on
after the passes OUT.jsonl already holds.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MARKS = (1, 2, 5, 10, 20, 50, 100, 200)  # and the last iteration of the pass


def kernel_norms(model) -> dict[str, float]:
    """Squared L2 norm of each convolution and dense kernel, in the net's order, by layer name."""
    import numpy as np
    return {v.path.rsplit("/", 2)[-2]: float(np.sum(np.square(np.asarray(v.numpy(), np.float64))))
            for v in model.trainable_weights if len(v.shape) in (2, 4)}


def recorder(steps_per_period: int, passes: int = 1, warmup: int = 0):
    """A Keras callback that records kernel_norms at iteration 0, at MARKS (and MARKS after a
    warm-up's end) and at the end of each logging period (a pass unless the run sets
    `log_every`), and stops training after `passes` of them."""
    import keras
    from cifar_resnet.run import reliability

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            marks = {m + start for m in MARKS for start in {0, warmup}}
            marks |= {warmup} - {0} | {k * steps_per_period for k in range(1, passes + 1)}
            self.marks = sorted(m for m in marks if m <= passes * steps_per_period)
            self.norms: dict[int, dict[str, float]] = {}
            self.losses: list[float] = []
            self.cross_entropies: list[float] = []

        def on_train_begin(self, logs=None):
            self.norms[int(self.model.optimizer.iterations.numpy())] = kernel_norms(self.model)

        def on_train_batch_end(self, batch, logs=None):
            iteration = int(self.model.optimizer.iterations.numpy())
            if self.marks and iteration >= self.marks[0]:
                self.norms[iteration] = kernel_norms(self.model)
                self.marks = [m for m in self.marks if m > iteration]

        def on_epoch_end(self, epoch, logs=None):
            self.losses.append(float(logs["loss"]))
            self.cross_entropies.append(float(logs.get(reliability.DATA_LOSS, "nan")))
            self.model.stop_training = len(self.losses) == passes

    return Record()


def replay(run_dir: str, overrides: dict, passes: int = 1) -> dict:
    """Trains the first `passes` passes of `run_dir`'s config (with `overrides`) in a scratch
    directory."""
    from cifar_resnet.spec import datasets  # before TensorFlow: it sets oneDNN (spec/cpu.py)
    from cifar_resnet.run import train
    from cifar_resnet.spec import config as config_lib, rundir
    config = config_lib.resolve(rundir.RunDir(run_dir).config, overrides)
    splits = datasets.load_splits(config)
    steps_per_period, _, _ = config.plan(len(splits.train[0]))  # a pass, or `log_every`
    record = recorder(steps_per_period, passes, config.resolved_warmup)
    stopped = None
    with tempfile.TemporaryDirectory() as scratch:
        try:
            train.train_and_evaluate(config, scratch, splits=splits, callbacks=[record],
                                     verbose=0)
        except train.TrainingError as e:  # the runner's verdict; the norms up to it stand
            stopped = str(e).replace(scratch, "<scratch>")
    history = rundir.read_history(rundir.RunDir(run_dir).history)
    init = record.norms[0]
    return {
        "run_dir": str(run_dir), "overrides": {k: str(v) for k, v in overrides.items()},
        "precision": config.precision, "warmup_iterations": config.resolved_warmup,
        "layers": list(init),
        "sum_sq": {str(i): list(n.values()) for i, n in sorted(record.norms.items())},
        "losses": record.losses, "run_losses": [row["loss"] for row in history[:passes]],
        "cross_entropies": record.cross_entropies,  # the losses without weight decay
        "stopped": stopped,
    }


def follow(run_dir: str, out: str, poll_seconds: float = 30) -> None:
    """Appends one JSON line per pass checkpoint of the run in `run_dir` to `out`
    ({"pass", "iteration", "sum_sq": {layer: squared norm}}) until the run finishes."""
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib, rundir
    run = rundir.RunDir(run_dir)
    config = config_lib.load(run.config)
    per_period, _, _ = config.plan(config.registry_num_train())  # epoch<k>: k periods
    net = build.build_net(config)
    out = pathlib.Path(out)
    done = {json.loads(line)["pass"] for line in out.read_text().splitlines()
            if line.strip()} if out.exists() else set()

    def append(k: int, model) -> None:
        record = {"pass": k, "iteration": k * per_period, "sum_sq": kernel_norms(model)}
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        done.add(k)

    while True:
        for path in sorted(run.backup.glob("epoch*.weights.h5")):
            match = re.fullmatch(r"epoch(\d+)\.weights\.h5", path.name)  # not mid-pass ones
            if not match or int(match[1]) in done:
                continue
            try:
                net.load_weights(path)
            except (OSError, ValueError):  # replaced by the next pass's meanwhile
                continue
            append(int(match[1]), net)
        if run.metrics.exists():
            # The runner deletes backup/ when it finishes, often before the last pass's
            # checkpoint was read: that pass's weights are final.keras's.
            metrics = rundir.finished_metrics(run.path)
            if metrics and metrics["epochs"] not in done and run.final.exists():
                net.load_weights(run.final)
                append(metrics["epochs"], net)
            return
        time.sleep(poll_seconds)


def growth_lines(result: dict) -> list[str]:
    """One line per recorded iteration: the growth of the first, the largest and the median
    kernel, and how many grew more than tenfold."""
    import numpy as np
    init = np.array(result["sum_sq"]["0"])
    lines = []
    for iteration, norms in result["sum_sq"].items():
        ratio = np.array(norms) / init
        top = int(ratio.argmax())
        lines.append(f"  iteration {int(iteration):4d}: first {ratio[0]:9.1f}x  largest "
                     f"{ratio[top]:9.1f}x ({result['layers'][top]})  median "
                     f"{np.median(ratio):5.2f}x  over 10x: {int((ratio > 10).sum())} of "
                     f"{len(ratio)}")
    return lines


def label(result: dict) -> str:
    """The net's run directory name (".../plain56/seed0" -> "plain56") and the overrides."""
    parts = pathlib.PurePath(result["run_dir"]).parts
    name = parts[-2] if parts[-1].startswith("seed") and len(parts) > 1 else parts[-1]
    return " ".join([name, *(f"{k}={v}" for k, v in result["overrides"].items())])


def plot(results: list[dict], path: str) -> None:
    """Two panels: each kernel's growth at the last recorded iteration by its place in the net,
    and the first kernel's growth over the iterations. Saved as `path` (PNG or PDF)."""
    import numpy as np
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4), layout="constrained")
    by_layer, over_time = fig.subplots(1, 2)
    for result in results:
        norms = {int(i): np.array(v) for i, v in result["sum_sq"].items()}
        last = max(norms)
        growth = norms[last] / norms[0]
        by_layer.plot(np.arange(1, len(growth) + 1), growth, marker=".",
                      label=f"{label(result)} (iteration {last})")
        steps = sorted(i for i in norms if i > 0)
        over_time.plot(steps, [norms[i][0] / norms[0][0] for i in steps], marker=".")
    by_layer.set(yscale="log", xlabel="kernel, from the input (1: the first convolution) to "
                 "the classifier", ylabel="squared norm / its initial value")
    over_time.set(xscale="log", yscale="log", xlabel="iteration (colours as on the left)",
                  ylabel="first convolution: squared norm / initial")
    by_layer.legend(fontsize="small")
    for ax in (by_layer, over_time):
        ax.axhline(1, color="grey", lw=0.5)
        ax.grid(True, which="major", alpha=0.3)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a run directory, or the --json of an earlier call to plot again")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the replay, e.g. precision=float32")
    parser.add_argument("--passes", type=int, default=1,
                        help="passes to replay (default 1; logging periods where the run sets "
                        "log_every)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--plot", help="draw the growth by layer and over the iterations here "
                        "(.png or .pdf)")
    parser.add_argument("--follow", action="store_true",
                        help="record each pass's checkpoint of one training run into --json")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error(f"--passes must be 1 or more; got {args.passes}")
    if args.follow:
        if len(args.run_dirs) != 1 or not args.json or args.set or args.passes != 1:
            parser.error("--follow takes one RUN_DIR and --json OUT.jsonl, and no --set or "
                         "--passes")
        follow(args.run_dirs[0], args.json)
        return 0

    from cifar_resnet.spec import config as config_lib, files
    results = []
    for run_dir in args.run_dirs:
        if run_dir.endswith(".json"):  # results of an earlier call, to plot with these
            try:
                earlier = json.loads(pathlib.Path(run_dir).read_text())
            except (OSError, ValueError) as e:
                print(f"error: cannot read {run_dir}: {e}", file=sys.stderr)
                return 2
            for result in earlier:
                print(f"{label(result)} ({result['precision']}), from {run_dir}:")
                print("\n".join(growth_lines(result)))
            results += earlier
            continue
        try:
            result = replay(run_dir, dict(config_lib.parse_override(s) for s in args.set),
                            args.passes)
        except config_lib.ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        ours, theirs = result["losses"], result["run_losses"]
        verdict = ("" if not (ours and theirs) else
                   " (identical)" if ours == theirs[:len(ours)] else " (different)")
        print(f"{run_dir} ({result['precision']}): training loss of each period "
              f"{', '.join(f'{x:.6f}' for x in ours) or '(none finished)'}; the run's "
              f"{', '.join(f'{x:.6f}' for x in theirs) or '(no history row yet)'}{verdict}"
              + "".join(f"; cross-entropy {x:.4f}" for x in result["cross_entropies"]))
        if result["stopped"]:
            print(f"  stopped: {result['stopped']}")
        print("\n".join(growth_lines(result)))
        results.append(result)
    if args.json:
        files.write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
