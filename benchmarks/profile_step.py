"""Where the time of one training step goes: TensorFlow ops by thread time (issue #4).

Trains our net (`build.build_model`, the `paper` preset) on random images for a few steps under
the TensorFlow profiler, then reads the trace (`*.xplane.pb`) and prints the kernel types that
took the most time, per step, summed over TensorFlow's compute threads. With two threads busy, the
sum is up to twice the wall time of the step.

    python -m benchmarks.profile_step --depth 20 [--bf16] [--steps 10] [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def op_times(logdir) -> collections.Counter:
    """Seconds per kernel type, over the compute threads of every `.xplane.pb` under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    totals = collections.Counter()
    for path in pathlib.Path(logdir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                if line.name.startswith("tf_Compute"):  # kernels, not the Python side
                    for event in line.events:
                        # "scope/op:KernelType" -> "KernelType"
                        kernel = names.get(event.metadata_id, "?").rsplit(":", 1)[-1]
                        totals[kernel] += event.duration_ps * 1e-12
    totals.pop("Process", None)  # ExecutorState::Process, the envelope around each kernel
    return totals


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="mixed_bfloat16 (also where the CPU emulates it)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)

    import numpy as np
    from cifar_resnet.run import build  # first: oneDNN's default (cpu.py)
    from cifar_resnet.spec import config as config_lib
    import tensorflow as tf

    config = config_lib.resolve(overrides=dict(depth=args.depth, version=args.version,
                                               batch_size=args.batch_size,
                                               precision="mixed_bfloat16" if args.bf16
                                               else "float32"))
    model = build.build_model(config)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, args.batch_size)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=3, verbose=0)  # tracing and oneDNN primitive caches
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(ds, steps_per_epoch=args.steps, verbose=0)
        tf.profiler.experimental.stop()
        totals = op_times(logdir)
    busy = sum(totals.values()) / args.steps
    # Wall time under the profiler is not the step's rate: `python -m benchmarks.bench` is.
    print(f"{model.name} {'bf16' if args.bf16 else 'fp32'}, batch {args.batch_size}: "
          f"{busy * 1e3:.0f} ms/step of kernel time over all compute threads")
    print(f"{'ms/step':>8} {'share':>6}  kernel")
    for name, seconds in totals.most_common(args.top):
        print(f"{seconds / args.steps * 1e3:8.1f} {seconds / args.steps / busy:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
