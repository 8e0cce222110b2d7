"""Training throughput, side by side: `python -m benchmarks.bench [--quick]` (issues #4, #13).

Times the full training step (input pipeline with He et al. 2015 sec 4.2 augmentation, forward,
backward, SGD update) in images per second, batch 128, for:
  keras          our default path: `pipeline.make_dataset` + `build.build_model(config)` + `Model.fit`,
                 float32
  keras-bf16     the same in mixed_bfloat16 (`precision="mixed_bfloat16"`, on any CPU or GPU)
  keras-example  the `keras-example` preset (its model and Adam), at batch 128
  torch          the PyTorch reference `benchmarks/torch_resnet.py`, fp32, channels_last, on
                 CUDA if PyTorch sees a GPU, else the CPU
  torch-bf16     the same under bfloat16 autocast
  pipeline       our input pipeline alone (`make_dataset`, iterated without a model)
A spec may add levers after colons, e.g. `keras:xla:spe=4:inter=1:onednn=0` (see `LEVERS`).

The PyTorch reference is timed as a PyTorch user tuning for speed would run it (issue #13): its
batches are augmented ahead of the timed loop, off the training thread (on 2 cores, DataLoader
workers would compete with the step for the same cores), while ours augment inside `tf.data` as
`python -m cifar_resnet train` does. The `noaug` lever takes augmentation out of both sides (in-
memory normalized batches), so that `keras:noaug` against `torch:noaug` compares the step alone.

Each implementation runs in its own process (so threading and oneDNN settings are its own, set
before TensorFlow or PyTorch start). After warm-up, the parent lets one process run one epoch of
`steps` steps at a time, in turn (A B C A B C ...), so drift in the machine's load hits all alike;
the load average and the share of CPU time the hypervisor stole (`cpu.steal_clock`) are recorded
next to every epoch: steal comes in bursts that slow one process and not the next. Results: a
JSON file and a Markdown table with min/median/max images/s and the ratio of each of ours to its
PyTorch reference.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import itertools
import platform
import re
import statistics
import sys
import tempfile
import time

from cifar_resnet.spec import cpu  # also sets TF_ENABLE_ONEDNN_OPTS=1 unless set (the default path)

BASES = ("keras", "keras-bf16", "keras-example", "torch", "torch-bf16", "pipeline")
# Lever -> meaning; values after "=" are ints.
LEVERS = {
    "xla": "jit_compile=True (XLA)",
    "spe": "steps_per_execution=N",
    "intra": "tf.config.threading intra-op threads (torch: torch.set_num_threads)",
    "inter": "tf.config.threading inter-op threads",
    "onednn": "TF_ENABLE_ONEDNN_OPTS=0|1",
    "omp": "OMP_NUM_THREADS=N",
    "passive": "OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning",
    "nchw": "torch: contiguous NCHW instead of channels_last",
    "kerasbn": "keras: Keras' own BatchNormalization (unfused) instead of layers.BatchNormalization",
    "noaug": "no augmentation, in-memory batches (keras: the first `steps` normalized batches "
             "cached in tf.data; torch: normalized ahead of the loop): the step alone",
}
DEFAULT_NETS = ("resnet20_v1", "resnet56_v1", "resnet110_v1", "resnet164_v2")
DEFAULT_IMPLS = ("keras", "keras-bf16", "keras-example", "torch", "torch-bf16")


def parse_impl(spec: str) -> tuple[str, dict]:
    """`keras:xla:spe=4` -> ("keras", {"xla": 1, "spe": 4}); ValueError naming what is wrong."""
    base, *levers = spec.split(":")
    if base not in BASES:
        raise ValueError(f"implementation {base!r} is not one of {', '.join(BASES)}")
    options = {}
    for lever in levers:
        name, _, value = lever.partition("=")
        if name not in LEVERS:
            raise ValueError(f"lever {name!r} in {spec!r} is not one of {', '.join(LEVERS)}")
        try:
            options[name] = int(value) if value else 1
        except ValueError:
            raise ValueError(f"lever {lever!r} in {spec!r}: value must be an integer") from None
    return base, options


def parse_net(name: str) -> tuple[int, int]:
    """`resnet56_v1` -> (depth 56, version 1); `resnet56` means v1."""
    m = re.fullmatch(r"resnet(\d+)(?:_v([12]))?", name)
    if not m:
        raise ValueError(f"net {name!r} is not like resnet20, resnet56_v1 or resnet164_v2")
    return int(m.group(1)), int(m.group(2) or 1)


def reference_of(spec: str) -> str | None:
    """The PyTorch implementation an implementation of ours is compared with (`noaug` with
    `noaug`)."""
    base, options = parse_impl(spec)
    if base.startswith("torch") or base == "pipeline":
        return None
    return ("torch-bf16" if base == "keras-bf16" else "torch") + (
        ":noaug" if options.get("noaug") else "")


# ------------------------------------------------------------------------------------------------
# Workers: one process per implementation. Protocol on the pipe: the worker sends "ready" after
# setup; then for every ("epoch", steps) it runs that many steps and sends (seconds, images, load).


def _set_environment(options: dict) -> None:
    # Before TensorFlow/PyTorch are imported: both read these once, at start-up.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "onednn" in options:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = str(options["onednn"])
    if "omp" in options:
        os.environ["OMP_NUM_THREADS"] = str(options["omp"])
    if options.get("passive"):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _keras_config(base, options, depth, version, batch_size):
    from cifar_resnet.spec import config as config_lib
    return config_lib.resolve(overrides=dict(
        depth=depth, version=version, batch_size=batch_size, dataset="synthetic",
        preset="keras-example" if base == "keras-example" else "paper",
        # Explicit, not "auto": the bench measures bfloat16 also where it is emulated.
        precision="mixed_bfloat16" if base == "keras-bf16" else "float32",
        jit_compile=bool(options.get("xla", 0)), augment=not options.get("noaug"),
        steps_per_execution=options.get("spe", 1)))


def _worker(spec, net, batch_size, arrays_path, conn):
    base, options = parse_impl(spec)
    _set_environment(options)
    arrays = dict(__import__("numpy").load(arrays_path))
    depth, version = parse_net(net)
    if base.startswith("torch"):
        _torch_worker(base, options, depth, version, batch_size, arrays, conn)
    else:
        from cifar_resnet.__main__ import _import_tensorflow_quietly
        _import_tensorflow_quietly()  # TensorFlow's start-up lines, once per worker otherwise
        _keras_worker(base, options, depth, version, batch_size, arrays, conn)


def _ready(conn, **info):
    """Tells the parent that setup is done, with what this worker runs on."""
    conn.send(("ready", info))


def _clock():
    """The start of a timed epoch: (perf_counter, steal clock), for `_report`."""
    return time.perf_counter(), cpu.steal_clock()


def _report(conn, started, images):
    """Sends the epoch begun at `started` (a `_clock()`): seconds, images, load average, and
    the share of CPU time stolen meanwhile."""
    conn.send((time.perf_counter() - started[0], images, os.getloadavg()[0],
               cpu.steal_fraction(started[1], cpu.steal_clock())))


def _keras_worker(base, options, depth, version, batch_size, arrays, conn):
    import keras
    import tensorflow as tf
    from cifar_resnet.data import pipeline
    from cifar_resnet.run import build

    if "intra" in options:
        tf.config.threading.set_intra_op_parallelism_threads(options["intra"])
    if "inter" in options:
        tf.config.threading.set_inter_op_parallelism_threads(options["inter"])
    if options.get("kerasbn"):  # this worker process only: the layer blocks.bn_act builds
        from cifar_resnet.nets import blocks
        blocks.BatchNormalization = keras.layers.BatchNormalization
    config = _keras_config(base, options, depth, version, batch_size)
    keras.utils.set_random_seed(config.seed)
    ds = pipeline.make_dataset(arrays["x"], arrays["y"], batch_size=batch_size, mean=arrays["mean"],
                           std=arrays["std"], training=True, augment=config.augment,
                           seed=config.seed, drop_remainder=not config.augment).repeat()
    info = dict(cpu.describe()["onednn"], precision=config.precision,
                augment=config.augment, device="gpu" if tf.config.list_physical_devices("GPU")
                else "cpu")
    if base == "pipeline":
        it = iter(ds)
        next(it)
        _ready(conn, **info)
        while (msg := conn.recv()) != "stop":
            started = _clock()
            for _ in range(msg[1]):
                next(it)
            _report(conn, started, msg[1] * batch_size)
        return

    class Gate(keras.callbacks.Callback):
        """Holds each epoch of `fit` until the parent says go, then reports its time."""

        def on_epoch_begin(self, epoch, logs=None):
            conn.recv()  # ("epoch", steps): the steps of fit's plan
            self.started = _clock()

        def on_epoch_end(self, epoch, logs=None):
            _report(conn, self.started, steps * batch_size)

    model = build.build_model(config)
    _ready(conn, **info)
    epochs, steps = conn.recv()
    if not config.augment:  # in memory: the warm-up epoch fills the cache, then reads only
        ds = ds.take(steps).cache().repeat()
    # The run_experiment path: Model.fit over make_dataset; its own callbacks (test evaluation,
    # checkpoints, logs) run between epochs and are not part of the training step.
    model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[Gate()],
              shuffle=False)
    conn.recv()  # "stop"


def _torch_worker(base, options, depth, version, batch_size, arrays, conn):
    import torch
    from benchmarks import torch_resnet

    if "intra" in options:
        torch.set_num_threads(options["intra"])
    torch.manual_seed(0)
    device = torch_resnet.default_device()
    channels_last = not options.get("nchw", 0)
    net = torch_resnet.CifarResNet(depth, version)
    step = torch_resnet.make_train_step(net, bf16=base == "torch-bf16", device=device,
                                        channels_last=channels_last)
    _ready(conn, device=device, precision="bfloat16" if base == "torch-bf16" else "float32",
           augment=not options.get("noaug"), threads=torch.get_num_threads())
    epochs, steps = conn.recv()
    # Every batch made before the timed loop (augmented unless noaug), as a PyTorch user tuning
    # for speed would feed the step; at most one pass of distinct batches, then again.
    count = min(epochs * steps, len(arrays["x"]) // batch_size)
    pool = torch_resnet.prepare_batches(
        arrays["x"], arrays["y"], batch_size, arrays["mean"], arrays["std"], count,
        augment=not options.get("noaug"), device=device, channels_last=channels_last)
    batches = itertools.cycle(pool)
    while (msg := conn.recv()) != "stop":
        started = _clock()
        for _ in range(msg[1]):
            loss = step(*next(batches))
        loss.item()  # waits for the device
        _report(conn, started, msg[1] * batch_size)


# ------------------------------------------------------------------------------------------------
# The parent: alternation, summary, output.


def _load_arrays(dataset, data_dir, synthetic_size, path):
    """Writes the training split (uint8), labels, mean and std to `path` (.npz) for the workers.

    `dataset` None means CIFAR-10 if a local copy is found, else synthetic data: throughput does
    not depend on the pixels, only on the number of images (the shuffle buffer holds them all).
    """
    import numpy as np
    from cifar_resnet.spec import datasets
    if dataset is None:
        try:
            datasets.find_cifar10(data_dir, download=False)
            dataset = "cifar10"
        except datasets.DataError:
            dataset = "synthetic"
    splits = datasets.load_dataset(dataset, data_dir=data_dir, val_fraction=0.0,
                               synthetic_size=(synthetic_size, 128))
    x, y = splits.train
    np.savez(path, x=x, y=y, mean=splits.mean, std=splits.std)
    return dataset, len(x)


def measure(nets, impls, *, steps=20, epochs=5, batch_size=128, dataset=None, data_dir=None,
            synthetic_size=8192, log=print) -> dict:
    """Runs every implementation on every net, one epoch at a time in turn.

    Args:
        nets: names like "resnet20_v1".
        impls: implementation specs like "keras", "torch-bf16", "keras:xla".
        steps: training steps per measured epoch.
        epochs: measured epochs per implementation.
        batch_size: images per step, the same for all.
        dataset: "cifar10", "synthetic", or None: CIFAR-10 if found locally, else synthetic.
        data_dir: CIFAR-10 location (see `datasets.find_cifar10`).
        synthetic_size: training images of synthetic data (before the 10% hold-out).
        log: progress printer.

    Returns:
        The result dict (see `summarize`), with per-epoch images/s and load averages.
    """
    for spec in impls:
        parse_impl(spec)
    for net in nets:
        parse_net(net)
    ctx = mp.get_context("spawn")
    results = {"nets": {}, "settings": dict(steps=steps, epochs=epochs, batch_size=batch_size),
               "impls": {}}
    with tempfile.TemporaryDirectory() as tmp:
        arrays_path = os.path.join(tmp, "arrays.npz")
        results["dataset"], results["train_images"] = _load_arrays(
            dataset, data_dir, synthetic_size, arrays_path)
        for net in nets:
            procs, conns = {}, {}
            try:
                for spec in impls:
                    conns[spec], child = ctx.Pipe()
                    procs[spec] = ctx.Process(target=_worker, daemon=True,
                                              args=(spec, net, batch_size, arrays_path, child))
                    procs[spec].start()
                for spec in impls:
                    msg = _receive(spec, conns[spec], procs[spec])
                    if not (isinstance(msg, tuple) and msg[0] == "ready"):
                        raise RuntimeError(f"{spec} failed to start")
                    results["impls"][spec] = msg[1]  # its device, precision, oneDNN state
                    if parse_impl(spec)[0] != "pipeline":
                        conns[spec].send((epochs + 1, steps))
                runs = {spec: [] for spec in impls}
                # One unmeasured epoch each, one at a time: tracing, oneDNN primitive caches.
                for spec in impls:
                    conns[spec].send(("epoch", steps))
                    _receive(spec, conns[spec], procs[spec])
                log(f"{net}: warm-up done; {epochs} rounds of {steps} steps")
                for r in range(epochs):
                    # Reverse every other round (A B C C B A ...): each impl's mean position
                    # in the round, and so its exposure to trends, is the same.
                    for spec in impls if r % 2 == 0 else impls[::-1]:
                        conns[spec].send(("epoch", steps))
                        seconds, images, load, steal = _receive(spec, conns[spec], procs[spec])
                        runs[spec].append(dict(images_per_sec=images / seconds, load=load,
                                               steal=steal))
                        log(f"  {net} {spec:>16}: {images / seconds:7.0f} img/s  load {load:.2f}"
                            + ("" if steal is None else f"  steal {steal:.0%}"))
                for spec in impls:
                    conns[spec].send("stop")
            finally:
                for spec, proc in procs.items():
                    proc.join(timeout=30)
                    if proc.is_alive():
                        proc.terminate()
            results["nets"][net] = runs
    results["machine"] = machine()
    return summarize(results)


def summarize(results: dict) -> dict:
    """Adds min/median/max per implementation and median ratios ours/reference per net."""
    for net, runs in results["nets"].items():
        for spec, epochs in list(runs.items()):
            rates = [e["images_per_sec"] for e in epochs]
            runs[spec] = dict(epochs=epochs, min=min(rates), median=statistics.median(rates),
                              max=max(rates))
        for spec in runs:
            ref = _find_reference(spec, runs)
            if ref is not None:
                ours, theirs = runs[spec]["epochs"], runs[ref]["epochs"]
                runs[spec]["reference"] = ref
                runs[spec]["ratio"] = runs[spec]["median"] / runs[ref]["median"]
                # Same round, adjacent in time: the ratio least affected by load changes.
                runs[spec]["paired_ratio"] = statistics.median(
                    a["images_per_sec"] / b["images_per_sec"] for a, b in zip(ours, theirs))
    return results


def _find_reference(spec: str, runs) -> str | None:
    """The run `spec` is compared with: its reference as given, else the first run of the
    reference's base with the same `noaug` and other levers (e.g. torch:passive)."""
    ref = reference_of(spec)
    if ref is None:
        return None
    if ref in runs:
        return ref
    base, options = parse_impl(ref)
    return next((r for r in runs if parse_impl(r)[0] == base
                 and bool(parse_impl(r)[1].get("noaug")) == bool(options.get("noaug"))), None)


ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _receive(spec: str, conn, proc):
    """The worker's next message; a worker that died is an error naming it, not a hang."""
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise RuntimeError(f"the {spec} worker exited with code {proc.exitcode} "
                               "(its traceback is above)")
    return conn.recv()


def machine() -> dict:
    """The machine: platform, CPU model and flags, TF_ENABLE_ONEDNN_OPTS, package versions."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
    described = cpu.describe()
    info["cpu"] = described["model"]
    info["avx512_bf16"] = bool(described["flags"] and described["flags"]["avx512_bf16"])
    info["cpu_flags"] = described["flags"]
    info["native_bf16"] = described["native_bf16"]
    info["onednn"] = described["onednn"]  # workers' own states: results["impls"]
    # Kernel-ISA caps (oneDNN's and PyTorch's own): set, they make this CPU act as a lesser one.
    info["isa_limits"] = {k: os.environ[k] for k in ISA_LIMITS if k in os.environ}
    from importlib import metadata
    for package in ("tensorflow", "keras", "torch", "numpy"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


def _machine_line(results: dict) -> str:
    m = results.get("machine", {})
    flags = [f for f, on in (m.get("cpu_flags") or {}).items() if on]
    onednn = {spec: info.get("enabled") for spec, info in results.get("impls", {}).items()
              if "enabled" in info}
    limits = ", ".join(f"{k}={v}" for k, v in m.get("isa_limits", {}).items())
    limits = limits and f"; kernels limited by {limits}"
    return (f"CPU: {m.get('cpu')}, {m.get('cpus')} CPUs, flags {' '.join(flags) or 'unknown'}"
            f"{limits}; oneDNN on: {', '.join(f'{k} {v}' for k, v in onednn.items()) or 'n/a'}.")


def markdown(results: dict) -> str:
    """The side-by-side table: images/s min/median/max, and ratios to the reference."""
    s = results["settings"]
    lines = [f"Images/s of the full training step, batch {s['batch_size']}, "
             f"{s['epochs']} epochs of {s['steps']} steps after a warm-up epoch, "
             f"implementations alternating; data: {results['dataset']}.", "",
             _machine_line(results), "",
             "| net | impl | min | median | max | load (median) | steal (max) | reference | "
             "ratio | paired ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for net, runs in results["nets"].items():
        for spec, r in runs.items():
            load = statistics.median(e["load"] for e in r["epochs"])
            steals = [e["steal"] for e in r["epochs"] if e.get("steal") is not None]
            steal = f"{max(steals):.0%}" if steals else ""
            ratio = (f"| {r['reference']} | {r['ratio']:.2f} | {r['paired_ratio']:.2f} |"
                     if "ratio" in r else "| | | |")
            lines.append(f"| {net} | {spec} | {r['min']:.0f} | {r['median']:.0f} | "
                         f"{r['max']:.0f} | {load:.2f} | {steal} " + ratio)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench",
                                description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="ResNet-20 only, 3 epochs of 10 steps (under 3 minutes)")
    p.add_argument("--nets", help=f"comma-separated (default {','.join(DEFAULT_NETS)})")
    p.add_argument("--impls", help=f"comma-separated specs (default {','.join(DEFAULT_IMPLS)}"
                   f"; also pipeline; levers: {', '.join(LEVERS)}, e.g. keras:xla:inter=1)")
    p.add_argument("--steps", type=int, help="steps per measured epoch (default 20; quick 10)")
    p.add_argument("--epochs", type=int, help="measured epochs (default 5; quick 3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dataset", choices=("cifar10", "synthetic"),
                   help="default: CIFAR-10 if found locally, else synthetic")
    p.add_argument("--data-dir", help="CIFAR-10 folder or archive")
    p.add_argument("--synthetic-size", type=int, default=8192, help="synthetic training images")
    p.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.md")
    args = p.parse_args(argv)

    nets = args.nets.split(",") if args.nets else ["resnet20_v1"] if args.quick else DEFAULT_NETS
    impls = args.impls.split(",") if args.impls else list(DEFAULT_IMPLS)
    if any(s.startswith("torch") for s in impls):
        try:
            import torch  # noqa: F401
        except ImportError:
            impls = [s for s in impls if not s.startswith("torch")]
            print("torch is not installed (pip install '.[bench]'): PyTorch reference skipped",
                  file=sys.stderr)
    quick = args.quick
    from cifar_resnet.spec.datasets import DataError
    try:
        results = measure(nets, impls, steps=args.steps or (10 if quick else 20),
                          epochs=args.epochs or (3 if quick else 5),
                          batch_size=args.batch_size, dataset=args.dataset,
                          data_dir=args.data_dir, synthetic_size=args.synthetic_size,
                          log=lambda m: print(m, file=sys.stderr))
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
