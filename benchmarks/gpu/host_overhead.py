"""Host overhead per training step on the GPU path, against a bare jitted step (issue #24).

Three timings of the same net, batch and compiled step, under Keras 3 on JAX:

- bare: `jax.jit(trainer.train_step)` called in a Python loop on one device-resident batch;
  the host waits only at the end (no data gathering, no callbacks, no per-step sync);
- fit, 1 step per execution: `fit` on `TrainBatches` (numpy gather and augmentation draws per
  batch) with the callbacks the runner adds that look at every batch (SignalStop,
  DivergenceStop reading the loss: a host sync every step);
- fit, K steps per execution: the same with `steps_per_execution=K` (callbacks, and so the
  sync, once every K steps), as benchmarks/gpu/gpu_run.py trains.

Host overhead per step = (fit - bare) / steps; `host_gather_only` times the host's own work per
batch (TrainBatches' numpy gather and draws) without the device. Alternates the three `--repeats` times and
reports medians (the machine may be shared). Usage:
    KERAS_BACKEND=jax python -m benchmarks.gpu.host_overhead --depth 8 --batch 32 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--spe", type=int, default=30, help="steps per execution of the third")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import jax
    import keras
    import numpy as np
    from cifar_resnet.data import device_input
    from cifar_resnet.run import build, reliability
    from cifar_resnet.spec import config as config_lib

    n = args.batch * args.steps
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    mean, std = x.mean(0) / 255, np.ones((1, 1, 3), np.float32)
    splits = type("S", (), {"mean": mean, "std": std})

    def trainer_for(spe):
        cfg = config_lib.resolve(overrides=dict(
            depth=args.depth, dataset="synthetic", batch_size=args.batch, iterations=args.steps,
            input_pipeline="device", precision="float32", steps_per_execution=spe))
        return build.device_trainer(build.build_model(cfg), splits, cfg)

    def batches():
        return device_input.TrainBatches(x, y, batch_size=args.batch, seed=0, start=0,
                                         stop=args.steps, drop_remainder=True)

    def fit_time(trainer):
        stop = reliability.SignalStop()
        cbs = [stop, reliability.DivergenceStop(args.steps)]
        with stop:
            t = time.perf_counter()
            trainer.fit(batches(), epochs=1, steps_per_epoch=args.steps, callbacks=cbs,
                        verbose=0, shuffle=False)
            jax.block_until_ready(trainer.trainable_variables[0].value)
        return time.perf_counter() - t

    fit1, fitk, bare = trainer_for(1), trainer_for(args.spe), trainer_for(1)
    for t in (fit1, fitk, bare):
        fit_time(t)  # compiles; builds the optimizer

    # The bare step owns its trainer's state (donated, as Keras donates it).
    step = jax.jit(bare.train_step, donate_argnums=0)
    state = bare._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                optimizer_variables=True, metrics_variables=True)
    data = batches()[0]
    data = jax.device_put(((data[0][0], data[0][1]), data[1]))
    logs, state = step(state, data)
    jax.block_until_ready(state)

    def bare_time():
        nonlocal state
        t = time.perf_counter()
        for _ in range(args.steps):
            logs, state = step(state, data)
        jax.block_until_ready(state)
        return time.perf_counter() - t

    def gather_time():  # the host's own work per batch: numpy gather and parameter draws
        b = batches()
        t = time.perf_counter()
        for i in range(args.steps):
            b[i]
        return time.perf_counter() - t

    times = {"bare": [], "fit_spe1": [], f"fit_spe{args.spe}": [], "host_gather_only": []}
    for _ in range(args.repeats):
        times["bare"].append(bare_time())
        times["fit_spe1"].append(fit_time(fit1))
        times[f"fit_spe{args.spe}"].append(fit_time(fitk))
        times["host_gather_only"].append(gather_time())
    ms = {k: 1000 * statistics.median(v) / args.steps for k, v in times.items()}
    out = {"depth": args.depth, "batch": args.batch, "steps": args.steps,
           "repeats": args.repeats, "backend": keras.backend.backend(),
           "device": str(jax.devices()[0]), "ms_per_step_median": {k: round(v, 2)
                                                                    for k, v in ms.items()},
           "host_overhead_ms_per_step": {k: round(v - ms["bare"], 2) for k, v in ms.items()
                                         if k.startswith("fit")},
           "all_s": {k: [round(t, 3) for t in v] for k, v in times.items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
