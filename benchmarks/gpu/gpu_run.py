"""The one-command GPU run (benchmarks/gpu/run.sh): setup, throughput, the paper's training, pack.

Stages, cheapest first, so a run cut short still returns what it has (each writes its results
into OUTDIR as soon as it ends):

1. setup: installs the bundle's wheels (.gpu-bundle/wheels) into a temporary folder (no
   network), prints versions and the GPU, decodes the compact CIFAR-10 into the official layout
   and checks its SHA-256 against the bundle's manifest;
2. throughput: images/s of a full training step (batch 128, augmentation included) of ResNet-20
   under Keras 3 on JAX, float32 and mixed bfloat16, and of the PyTorch reference of
   benchmarks/torch_resnet.py on the same GPU (float32 and bf16 autocast, channels_last), then
   ResNet-56/110 if the stage's time allows;
3. training: ResNet-20 with the paper's recipe (He 2015 sec 4.2: 64k iterations, batch 128,
   lr 0.1 divided by 10 at 32k and 48k, all 50k training images), and beside it plain-20,
   plain-56 and ResNet-56, as concurrent processes on the one GPU (JAX preallocation off).
   Every run has a wall-clock deadline: SIGTERM, it stops after the current batch and stays
   resumable (`--resume` continues on a still-warm machine);
4. pack: each run's history.csv and metrics.json, the test error of its final model on the
   whole test set and on the 1,000 exact test images (test_batch rows 0-999), and a summary,
   as at most 8 files in OUTDIR.

`--smoke` runs the same path on a CPU at toy size (depth 8, a few iterations, a synthetic bundle
it makes itself; the PyTorch part is skipped when torch is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import tarfile
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETS = {  # name: (depth, plain) -- Figure 6 at 20 and 56 layers
    "resnet20": (20, False), "plain20": (20, True), "plain56": (56, True),
    "resnet56": (56, False)}
SMOKE_NETS = {"resnet8": (8, False), "plain8": (8, True)}


class Deadline(Exception):
    """SIGTERM to this process: the command's time is up; stop the runs and pack."""


def _deadline(signum, frame):
    raise Deadline()


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def write_json(path, obj):
    pathlib.Path(path).write_text(json.dumps(obj, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# Stage 1: setup.


def setup(bundle: pathlib.Path, work: pathlib.Path, smoke: bool) -> dict:
    """Installs the wheels, decodes the data; returns facts for the summary."""
    facts = {"python": platform.python_version(), "smoke": smoke}
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    site = work / "site"
    if wheels and not (site / ".done").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, wheels)], check=True)
        (site / ".done").touch()
    facts["wheels"] = [w.name for w in wheels]
    data_dir = work / "cifar"
    manifest = json.loads((bundle / "manifest.json").read_text())
    if not (data_dir / "ok").exists():
        from benchmarks.gpu import compact_cifar
        train, test, report = compact_cifar.decode(bundle / "cifar10.npz")
        digest = compact_cifar.digest(train, test)
        compact_cifar.write_batches(train, test, data_dir)
        (data_dir / "ok").write_text(json.dumps({"sha256_ok": digest == report["decoded_sha256"]}))
    facts["data"] = {**manifest["data"], **json.loads((data_dir / "ok").read_text())}
    return facts


def probe_versions(env) -> dict:
    code = ("import json, platform, keras, jax; d = jax.devices(); "
            "print(json.dumps({'keras': keras.__version__, 'jax': jax.__version__, "
            "'backend': keras.backend.backend(), 'devices': [str(x) for x in d], "
            "'device_kind': d[0].device_kind}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
        "error": out.stderr[-2000:]}
    try:
        import torch
        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        facts["torch"] = None
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True) \
        if _which("nvidia-smi") else None
    facts["nvidia_smi"] = gpu.stdout.strip() if gpu and gpu.returncode == 0 else None
    return facts


def _which(name):
    return any((pathlib.Path(p) / name).exists() for p in os.environ.get("PATH", "").split(":"))


# ---------------------------------------------------------------------------------------------
# Stage 2: throughput.


def keras_throughput(depth: int, precision: str, steps: int, warmup: int) -> float:
    """Images/s of the full Keras step (device augmentation included), batch 128, under the
    current backend; run in a child process (the backend is chosen per process)."""
    import keras
    import numpy as np
    from cifar_resnet.run import config as config_lib, train
    from cifar_resnet.data import device_input

    cfg = config_lib.resolve(overrides=dict(depth=depth, dataset="synthetic", epochs=1,
                                            input_pipeline="device", precision=precision))
    net = train.build_model(cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128 * 8, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, len(x))
    mean, std = x.mean(0) / 255, np.ones((1, 1, 3), np.float32)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == warmup - 1:
                float(logs["loss"])  # waits for the device
                self.start = time.perf_counter()

    trainer = train._device_trainer(net, types.SimpleNamespace(mean=mean, std=std), cfg)
    clock = Clock()
    trainer.fit(device_input.TrainBatches(x, y, batch_size=128, seed=0, start=0,
                                          stop=warmup + steps),
                epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], verbose=0,
                shuffle=False)
    float(keras.ops.convert_to_numpy(trainer.net.trainable_weights[0]).sum())  # sync
    return 128 * steps / (time.perf_counter() - clock.start)


def torch_throughput(depth, precision, steps, env) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.torch_resnet", "--depth", str(depth),
           "--precision", precision, "--steps", str(steps), "--epochs", "3", "--device", "auto"]
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        return {"error": "not finished in 240 s"}
    rates = [float(m) for m in re.findall(r"epoch \d+: (\d+) img/s", out.stdout)]
    if out.returncode or not rates:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return {"img_per_s": sorted(rates)[len(rates) // 2], "device_line": out.stdout.strip()
            .splitlines()[-1]}


def throughput(out_dir, env, smoke, budget_s) -> list[dict]:
    started, rows = time.time(), []
    depths = [8] if smoke else [20, 56, 110]
    steps, warmup = (3, 2) if smoke else (100, 10)
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for depth in depths:
        if time.time() - started > budget_s and rows:
            log(f"throughput: time's up before depth {depth}")
            break
        for impl, precision in (("keras-jax", "float32"), ("keras-jax", "mixed_bfloat16"),
                                ("torch", "float32"), ("torch", "bfloat16")):
            if smoke and precision != "float32":
                continue
            if impl == "torch" and not have_torch:
                rows.append({"net": f"resnet{depth}", "impl": impl, "precision": precision,
                             "skipped": "torch not installed"})
                continue
            t0 = time.time()
            if impl == "torch":
                row = torch_throughput(depth, precision, steps * 2, env)
            else:
                code = (f"from benchmarks.gpu.gpu_run import keras_throughput; "
                        f"print(keras_throughput({depth}, {precision!r}, {steps}, {warmup}))")
                try:
                    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=900)
                    row = ({"img_per_s": float(p.stdout.strip().splitlines()[-1])}
                           if p.returncode == 0 else {"error": p.stderr[-1500:]})
                except subprocess.TimeoutExpired:
                    row = {"error": "not finished in 900 s"}
            row.update(net=f"resnet{depth}", impl=impl, precision=precision,
                       seconds=round(time.time() - t0, 1))
            log("throughput", row)
            rows.append(row)
            write_json(out_dir / "throughput.json", rows)
    return rows


# ---------------------------------------------------------------------------------------------
# Stage 3: training, concurrent runs with a deadline.


def train_all(runs_dir, data_dir, env, nets, deadline_s, smoke) -> dict:
    env = {**env, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # four processes share the GPU
    procs = {}
    for name, (depth, plain) in nets.items():
        cmd = [sys.executable, "-m", "cifar_resnet", "train", "--depth", str(depth),
               "--data-dir", str(data_dir), "--workdir", str(runs_dir / name),
               "--set", "input_pipeline=device", "--set", "val_fraction=0",
               "--set", f"log_every={8 if smoke else 1000}"]
        cmd += ["--plain"] if plain else []
        cmd += ["--iterations", "16"] if smoke else []
        (runs_dir / name).mkdir(parents=True, exist_ok=True)
        logf = open(runs_dir / f"{name}.log", "a")
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=logf), logf)
        log("started", name, " ".join(cmd[3:]))
    end = time.time() + deadline_s
    status = {}
    while procs:
        try:
            for name, (proc, logf) in list(procs.items()):
                if proc.poll() is not None:
                    # 143: the CLI stopped after a batch; -15: killed before its first batch.
                    status[name] = ("complete" if proc.returncode == 0 else
                                    "stopped at the deadline (resumable)"
                                    if proc.returncode in (143, -15)
                                    else f"exit {proc.returncode}")
                    logf.close()
                    del procs[name]
                    log(name, status[name])
            if time.time() > end:
                for proc, _ in procs.values():
                    proc.send_signal(signal.SIGTERM)  # stops after the current batch
                end = float("inf")
            time.sleep(1)
        except Deadline:  # the whole command's deadline: stop the runs, then pack
            end = time.time()
    return status


# ---------------------------------------------------------------------------------------------
# Stage 4: pack.


def exact_test_errors(runs_dir, data_dir, env, timeout) -> dict:
    """Final test error on all test images and on the 1,000 exact ones (rows 0-999)."""
    code = """
import json, pathlib, sys
import keras, numpy as np
from cifar_resnet.run import config as config_lib, train
from cifar_resnet.data import device_input
from cifar_resnet.nets import models
out = {}
for run in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    if not (run / "final.keras").exists():
        continue
    cfg = config_lib.load(run / "config.json")
    splits = train.load_splits(cfg, sys.argv[2])
    x, y = splits.test
    net = keras.saving.load_model(run / "final.keras")
    pred = net.predict(device_input.NormalizedImages(x, mean=splits.mean, std=splits.std,
                                                     batch_size=500), verbose=0).argmax(1)
    out[run.name] = {"test_error": float((pred != y).mean()),
                     "exact_1000_test_error": float((pred[:1000] != y[:1000]).mean())}
print(json.dumps(out))
"""
    try:
        p = subprocess.run([sys.executable, "-c", code, str(runs_dir), str(data_dir)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished in {timeout} s"}
    return (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
            else {"error": p.stderr[-1500:]})


def pack(out_dir, runs_dir, summary) -> None:
    with tarfile.open(out_dir / "runs.tar.gz", "w:gz") as tar:
        for run in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            for name in ("history.csv", "metrics.json", "config.json"):
                if (run / name).exists():
                    tar.add(run / name, arcname=f"{run.name}/{name}")
        for logf in sorted(runs_dir.glob("*.log")):
            tar.add(logf, arcname=f"logs/{logf.name}")
    write_json(out_dir / "summary.json", summary)


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=pathlib.Path, help="OUTDIR: at most 8 files land here")
    p.add_argument("--smoke", action="store_true", help="toy size on a CPU")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs of an earlier call (same --work)")
    p.add_argument("--bundle", type=pathlib.Path,
                   help="default .gpu-bundle (make gpu-bundle); --smoke: WORK/smoke-bundle")
    p.add_argument("--work", type=pathlib.Path, help="scratch folder: wheels, data, runs "
                   "(default /tmp/cifar-resnet-gpu, or ...-smoke)")
    p.add_argument("--total", type=float,
                   help="seconds for everything (default 510; --smoke 1200)")
    args = p.parse_args(argv)
    t0 = time.time()
    out = args.out
    work = args.work or pathlib.Path("/tmp/cifar-resnet-gpu" + ("-smoke" if args.smoke else ""))
    args.bundle = args.bundle or (work / "smoke-bundle" if args.smoke else ROOT / ".gpu-bundle")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.smoke and not (args.bundle / "manifest.json").exists():
        from benchmarks.gpu import bundle
        bundle.make(args.bundle, smoke=True)
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "resume": args.resume}
    facts = setup(args.bundle, work, args.smoke)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(work / "site"), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    facts.update(probe_versions(env))
    summary["setup"] = facts
    log("setup", json.dumps(facts))
    write_json(out / "summary.json", summary)
    data_dir = work / "cifar" / "cifar-10-batches-py"
    runs_dir = work / "runs"
    runs_dir.mkdir(exist_ok=True)
    total = args.total or (1200 if args.smoke else 510)
    signal.signal(signal.SIGTERM, _deadline)
    try:
        if not args.resume:  # a resumed call goes straight back to training
            budget = 60 if args.smoke else 100
            summary["throughput"] = throughput(out, env, args.smoke, budget)
            write_json(out / "summary.json", summary)
        left = total - (time.time() - t0) - (30 if args.smoke else 75)  # evaluate, pack
        log(f"training for at most {left:.0f} s")
        summary["training"] = train_all(runs_dir, data_dir, env,
                                        SMOKE_NETS if args.smoke else NETS, max(left, 10),
                                        args.smoke)
    except Deadline:
        summary["cut_short"] = "SIGTERM before the training stage ended"
        log(summary["cut_short"])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    summary["final_errors"] = exact_test_errors(runs_dir, data_dir, env,
                                                timeout=900 if args.smoke else 60)
    summary["metrics"] = {run.name: json.loads((run / "metrics.json").read_text())
                          for run in sorted(runs_dir.iterdir())
                          if (run / "metrics.json").exists()}
    summary["wall_s"] = round(time.time() - t0, 1)
    pack(out, runs_dir, summary)
    log("done in", summary["wall_s"], "s:", ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
