"""The one-command GPU run (benchmarks/gpu/run.sh): setup, training, test errors, throughput, pack.

Ordered by value, so a call cut short still returns what matters most (every stage writes its
results into OUTDIR as soon as it ends; summary.json is rewritten after each):

1. setup: installs the bundle's wheels (.gpu-bundle/wheels) into a temporary folder (no
   network), prints versions and the GPU, decodes the compact CIFAR-10 into the official layout
   and checks its SHA-256 against the bundle's manifest; with `--resume-from DIR` it unpacks the
   runs (their latest checkpoints included) that an earlier call packed into DIR;
2. training: by default ResNet-20 alone with the paper's full recipe (He 2015 sec 4.2: 64k
   iterations, batch 128, lr 0.1 divided by 10 at 32k and 48k, all 50k training images, a test
   evaluation every pass), on fixed batch shapes (the last partial batch of a pass dropped,
   evaluation in batches of 500: one train and one eval compile, counted in the log);
   `--nets` adds plain-20, plain-56, ResNet-56 as concurrent processes. Every run has a
   deadline: SIGTERM, it stops after the current batch, then SIGKILL after a bounded wait;
3. test errors: of every finished model on all 10,000 test images and on the 1,000 exact ones
   (test_batch rows 0-999); a run cut short reports its last evaluated pass (history.csv) and
   iteration count as partial;
4. throughput (`--throughput`, or in a `--smoke` call): images/s of a full training step of
   ResNet-20/56/110 under Keras 3 on JAX, float32 and mixed bfloat16, and of the PyTorch
   reference (benchmarks/torch_resnet.py), as the time left allows;
5. pack, always (also after SIGTERM): runs.tar.gz holds every run's directory (config,
   history, metrics, the latest checkpoint, the final model) and logs: the next call's
   `--resume-from OUTDIR` continues from it.

Exit status: 0 when every stage that ran succeeded and the call packed what it had (also when
the deadline cut it short), 1 when a stage failed (summary.json's "failed" names it), 2 for
bad arguments.

`--smoke` runs the same path on a CPU at toy size (depth 8, a few iterations, a synthetic bundle
it makes itself, with the real keras wheels when pip can fetch them, else the installed keras;
the PyTorch part is skipped when torch is absent).
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

# The run directory's file names from their one owner (standard library only: this process
# never imports TensorFlow; it runs as `python -m benchmarks.gpu.gpu_run` from the checkout).
from cifar_resnet.spec import rundir

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETS = {  # name: (depth, plain) -- Figure 6 at 20 and 56 layers
    "resnet20": (20, False), "plain20": (20, True), "plain56": (56, True),
    "resnet56": (56, False)}
SMOKE_NETS = {"resnet8": (8, False), "plain8": (8, True)}


class Deadline(Exception):
    """SIGTERM to this process: the command's time is up; stop the runs and pack."""


def _deadline(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the stop and the pack go on
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
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=180)
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
    from cifar_resnet.data import device_input
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib

    cfg = config_lib.resolve(overrides=dict(depth=depth, dataset="synthetic", epochs=1,
                                            input_pipeline="device", precision=precision))
    net = build.build_model(cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128 * 8, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, len(x))
    mean, std = x.mean(0) / 255, np.ones((1, 1, 3), np.float32)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == warmup - 1:
                float(logs["loss"])  # waits for the device
                self.start = time.perf_counter()

    trainer = build.device_trainer(net, types.SimpleNamespace(mean=mean, std=std), cfg)
    clock = Clock()
    trainer.fit(device_input.TrainBatches(x, y, batch_size=128, seed=0, start=0,
                                          stop=warmup + steps),
                epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], verbose=0,
                shuffle=False)
    float(keras.ops.convert_to_numpy(trainer.net.trainable_weights[0]).sum())  # sync
    return 128 * steps / (time.perf_counter() - clock.start)


def torch_throughput(depth, precision, steps, env, timeout=240) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.torch_resnet", "--depth", str(depth),
           "--precision", precision, "--steps", str(steps), "--epochs", "3", "--device", "auto"]
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=min(240, timeout))
    except subprocess.TimeoutExpired:
        return {"skipped": f"not finished in {min(240, timeout):.0f} s"}
    rates = [float(m) for m in re.findall(r"epoch \d+: (\d+) img/s", out.stdout)]
    if out.returncode or not rates:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return {"img_per_s": sorted(rates)[len(rates) // 2], "device_line": out.stdout.strip()
            .splitlines()[-1]}


def throughput(out_dir, env, smoke, budget_s, rows=None) -> list[dict]:
    """Fills `rows` (written to throughput.json after each) until `budget_s` is spent; every
    child gets at most the time left."""
    started, rows = time.time(), ([] if rows is None else rows)
    depths = [8] if smoke else [20, 56, 110]
    steps, warmup = (3, 2) if smoke else (100, 10)
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for depth in depths:
        if time.time() - started > budget_s - 5:
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
            left = budget_s - (t0 - started)
            if left < 5:
                break
            if impl == "torch":
                row = torch_throughput(depth, precision, steps * 2, env, timeout=left)
            else:
                code = (f"from benchmarks.gpu.gpu_run import keras_throughput; "
                        f"print(keras_throughput({depth}, {precision!r}, {steps}, {warmup}))")
                try:
                    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=left)
                    row = ({"img_per_s": float(p.stdout.strip().splitlines()[-1])}
                           if p.returncode == 0 else {"error": p.stderr[-1500:]})
                except subprocess.TimeoutExpired:
                    row = {"skipped": f"not finished in the {left:.0f} s left"}
            row.update(net=f"resnet{depth}", impl=impl, precision=precision,
                       seconds=round(time.time() - t0, 1))
            log("throughput", row)
            rows.append(row)
            write_json(out_dir / "throughput.json", rows)
    return rows


# ---------------------------------------------------------------------------------------------
# Stage 2: training, one process per net, with a deadline.

# The GPU path's fixed shapes: every training batch full (390 a pass), evaluation in batches of
# 500 (10,000 = 20 x 500). One history row (and test evaluation) per pass. 30 steps per
# execution (390 = 13 x 30): the callbacks, and so the host's wait for the device, come once
# every 30 steps, not every step.
FIXED_SHAPES = ("drop_remainder=true", "eval_batch_size=500", "steps_per_execution=30")
STOP_GRACE_S = 10  # after SIGTERM, a run gets this long to finish its batch, then SIGKILL
# JAX_LOG_COMPILES logs one line per XLA compile; Keras' JAX trainer names its steps so.
COMPILE_RE = re.compile(r"(?:Compiling|Finished XLA compilation of) (?:jit\()?"
                        r"(one_train_step|multi_train_steps|train_step|one_test_step|"
                        r"multi_test_steps|test_step)\b")


def train_command(name, depth, plain, runs_dir, data_dir, smoke, log_every=None) -> list[str]:
    cmd = [sys.executable, "-m", "cifar_resnet", "train", "--depth", str(depth),
           "--data-dir", str(data_dir), "--workdir", str(runs_dir / name),
           "--set", "input_pipeline=device", "--set", "val_fraction=0"]
    for field in FIXED_SHAPES:  # the smoke set: 600/200 images, 4 batches a pass
        cmd += ["--set", field.replace("=500", "=100").replace("=30", "=2") if smoke else field]
    cmd += ["--plain"] if plain else []
    cmd += ["--iterations", "16", "--set", "log_every=8"] if smoke else []
    cmd += ["--set", f"log_every={log_every}"] if log_every and not smoke else []
    return cmd


def count_compiles(log_path, start=0) -> dict:
    """{"train": n, "eval": n}: the XLA compiles of the training and evaluation steps that the
    run's log records from byte `start` on (this call's part; JAX_LOG_COMPILES=1)."""
    counts = {"train": 0, "eval": 0}
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        m = COMPILE_RE.search(line)
        if m and "Finished XLA compilation" not in line:
            counts["train" if "train" in m.group(1) else "eval"] += 1
    return counts


def stop_children(procs: dict, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to every running child, at most `grace_s` to exit, then SIGKILL (and reaped)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    end, pending = time.time() + grace_s, None
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, end - time.time()))
        except (subprocess.TimeoutExpired, Deadline) as e:
            if isinstance(e, Deadline):  # SIGTERM to us meanwhile: no more waiting
                pending, end = e, 0.0
            proc.kill()
            proc.wait()
    if pending is not None:
        raise pending


def child_status(returncode) -> str:
    # 143: the CLI stopped after a batch; -15: SIGTERM before its handler was set; -9: killed
    # after the grace period. All three stay resumable from the last finished pass.
    if returncode == 0:
        return "complete"
    if returncode in (143, -15, 130):
        return "stopped at the deadline (resumable)"
    if returncode == -9:
        return "killed after the grace period (resumable from its last pass)"
    return f"exit {returncode}"


def train_all(runs_dir, data_dir, env, nets, deadline_s, smoke, on_change=None,
              log_every=None) -> dict:
    env = {**env, "JAX_LOG_COMPILES": "1"}
    if len(nets) > 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # several processes share the GPU
    procs, logs, status, starts = {}, {}, {}, {}
    for name, (depth, plain) in nets.items():
        cmd = train_command(name, depth, plain, runs_dir, data_dir, smoke, log_every)
        (runs_dir / name).mkdir(parents=True, exist_ok=True)
        logs[name] = open(runs_dir / f"{name}.log", "a")
        starts[name] = logs[name].tell()  # a resumed run's log goes on; count this call's
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logs[name],
                                       stderr=logs[name])
        status[name] = "running"
        log("started", name, " ".join(cmd[3:]))
    end = time.time() + deadline_s
    try:
        while any(s == "running" for s in status.values()):
            for name, proc in procs.items():
                if status[name] == "running" and proc.poll() is not None:
                    status[name] = child_status(proc.returncode)
                    log(name, status[name])
                    on_change and on_change(status)
            if time.time() > end:
                log("training deadline: stopping the runs")
                break
            time.sleep(0.5)
    finally:  # the deadline, SIGTERM to us (Deadline) or an error: bounded stop, then reap
        stop_children(procs)
        for name, proc in procs.items():
            if status[name] == "running":
                status[name] = child_status(proc.returncode)
                log(name, status[name])
            logs[name].close()
        for name in procs:
            status[name] = {"status": status[name],
                            "compiles": count_compiles(runs_dir / f"{name}.log", starts[name])}
        on_change and on_change(status)
    return status


# ---------------------------------------------------------------------------------------------
# Stage 3: test errors.


def partial_metrics(run: pathlib.Path) -> dict | None:
    """A run without metrics.json: its last finished pass from history.csv (iterations, the
    test error on all test images measured then), marked partial; the columns under today's
    names (an older file's `epoch` as `period`: spec/rundir.HISTORY_RENAMED)."""
    path = rundir.RunDir(run).history
    if not path.exists():
        return None
    rows = path.read_text().strip().splitlines()
    if len(rows) < 2:
        return {"status": "partial", "iterations": 0}
    import csv
    last = list(csv.DictReader(rows))[-1]
    out = {"status": "partial"}
    for key, value in last.items():
        key = rundir.HISTORY_RENAMED.get(key, key)
        try:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def exact_test_errors(runs_dir, data_dir, env, timeout) -> dict:
    """Test error on all test images and on the 1,000 exact ones (rows 0-999) of each run's
    final model, or of its last checkpoint (marked partial, with its iterations)."""
    code = """
import json, pathlib, sys
import keras, numpy as np
from cifar_resnet.data import device_input
from cifar_resnet.spec import datasets
from cifar_resnet.nets import models
from cifar_resnet.run import build, reliability
from cifar_resnet.spec import config as config_lib, rundir
out = {}
for path in sorted(p for p in pathlib.Path(sys.argv[1]).iterdir() if p.is_dir()):
    run = rundir.RunDir(path)
    if not run.config.exists():
        continue
    cfg = config_lib.load(run.config)
    splits = datasets.load_splits(cfg, sys.argv[2])
    x, y = splits.test
    row = {}
    if run.final.exists():
        net = keras.saving.load_model(run.final)
    else:  # cut short: its last checkpoint, as the runner would resume it
        net = build.build_model(cfg)
        trainer = build.device_trainer(net, splits, cfg)
        backup = reliability.Checkpointer(run.backup)
        backup.restore(trainer)
        # A SIGTERM saves the state at its iteration (run/resume.py), inside a pass too.
        done = backup.resume_iteration(cfg.plan(len(splits.train[0]))[0])
        if not done:
            continue
        row = {"partial": True, "iterations": done}
    pred = net.predict(device_input.NormalizedImages(x, mean=splits.mean, std=splits.std,
                                                     batch_size=500), verbose=0).argmax(1)
    out[path.name] = {**row, "test_error": float((pred != y).mean()),
                     "exact_1000_test_error": float((pred[:1000] != y[:1000]).mean())}
print(json.dumps(out))
"""
    if timeout < 5:
        return {"skipped": "no time left"}
    try:
        p = subprocess.run([sys.executable, "-c", code, str(runs_dir), str(data_dir)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # out of time, not a fault: the call still exits 0
        return {"skipped": f"not finished in the {timeout:.0f} s left"}
    return (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
            else {"error": p.stderr[-1500:]})


# ---------------------------------------------------------------------------------------------
# Stage 5: pack.

PACK_SKIP = ("tensorboard", ".lock")


def pack(out_dir, runs_dir) -> None:
    """runs.tar.gz: every run directory (checkpoints and final model included, TensorBoard
    logs left out) and the logs; written to a temporary name, then renamed."""
    tmp = out_dir / "runs.tar.gz.part"
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for run in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            for f in sorted(run.rglob("*")):
                if f.is_file() and not any(s in f.name or s in f.parts for s in PACK_SKIP):
                    tar.add(f, arcname=f"{run.name}/{f.relative_to(run)}")
        for logf in sorted(runs_dir.glob("*.log")):
            tar.add(logf, arcname=f"logs/{logf.name}")
    tmp.replace(out_dir / "runs.tar.gz")


def unpack(resume_from: pathlib.Path, runs_dir: pathlib.Path) -> list[str]:
    """Puts the runs an earlier call packed into `resume_from` back into `runs_dir`."""
    archive = resume_from / "runs.tar.gz"
    if not archive.exists():
        raise FileNotFoundError(f"--resume-from {resume_from}: no runs.tar.gz there")
    names = set()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if not member.isfile() or ".." in parts or member.name.startswith("/"):
                continue
            if parts[0] == "logs":  # logs/NAME.log -> runs_dir/NAME.log
                target = runs_dir.joinpath(*parts[1:])
            else:
                target = runs_dir.joinpath(*parts)
                names.add(parts[0])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return sorted(names)


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=pathlib.Path, help="OUTDIR: at most 8 files land here")
    p.add_argument("--smoke", action="store_true", help="toy size on a CPU")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs of an earlier call on this machine (same --work)")
    p.add_argument("--resume-from", type=pathlib.Path, metavar="DIR",
                   help="continue the runs an earlier call packed into DIR (its OUTDIR)")
    p.add_argument("--nets", default=None,
                   help=f"comma-separated, of {', '.join(NETS)} (default resnet20 alone)")
    p.add_argument("--log-every", type=int, metavar="N",
                   help="iterations per history row, test evaluation and checkpoint (default "
                   "one pass, 390; the CPU rehearsal uses fewer); the same in every call of a run")
    p.add_argument("--throughput", action="store_true",
                   help="measure the throughput table after training, as time allows")
    p.add_argument("--bundle", type=pathlib.Path,
                   help="default .gpu-bundle (make gpu-bundle); --smoke: WORK/smoke-bundle")
    p.add_argument("--work", type=pathlib.Path, help="scratch folder: wheels, data, runs "
                   "(default /tmp/cifar-resnet-gpu, or ...-smoke)")
    p.add_argument("--total", type=float,
                   help="seconds for everything, packing included (default 540; --smoke 1200); "
                   "run.sh sends SIGTERM at --total and SIGKILL 20 s later")
    args = p.parse_args(argv)
    t0 = time.time()
    out = args.out
    total = args.total or (1200 if args.smoke else 540)
    work = args.work or pathlib.Path("/tmp/cifar-resnet-gpu" + ("-smoke" if args.smoke else ""))
    args.bundle = args.bundle or (work / "smoke-bundle" if args.smoke else ROOT / ".gpu-bundle")
    all_nets = SMOKE_NETS if args.smoke else NETS
    names = (args.nets.split(",") if args.nets else
             list(SMOKE_NETS) if args.smoke else ["resnet20"])
    unknown = [n for n in names if n not in all_nets]
    if unknown:
        p.error(f"--nets: unknown {unknown}; allowed: {', '.join(all_nets)}")
    nets = {n: all_nets[n] for n in names}
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    runs_dir = work / "runs"
    runs_dir.mkdir(exist_ok=True)
    data_dir = work / "cifar" / "cifar-10-batches-py"
    resume = args.resume or args.resume_from is not None
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "resume": resume,
               "total_s": total, "nets": names, "failed": []}

    def save():
        summary["wall_s"] = round(time.time() - t0, 1)
        write_json(out / "summary.json", summary)

    def left():  # seconds to the call's end, less what packing needs
        return total - (time.time() - t0) - (15 if args.smoke else 20)

    def failed(stage, error):
        summary["failed"].append(stage)
        summary.setdefault("errors", {})[stage] = str(error)[-2000:]
        log(f"{stage} FAILED: {str(error)[-500:]}")

    signal.signal(signal.SIGTERM, _deadline)
    env = None
    try:
        try:  # Stage 1: setup
            if args.smoke and not (args.bundle / "manifest.json").exists():
                from benchmarks.gpu import bundle
                bundle.make(args.bundle, smoke=True)
            facts = setup(args.bundle, work, args.smoke)
            env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1",
                   "JAX_COMPILATION_CACHE_DIR": str(work / "jax-cache"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [
                       str(work / "site"), str(ROOT), os.environ.get("PYTHONPATH")]))}
            facts.update(probe_versions(env))
            summary["setup"] = facts
            log("setup", json.dumps(facts))
            if "error" in facts:
                raise RuntimeError(f"keras/jax do not import: {facts['error']}")
            if args.resume_from:
                summary["resumed_runs"] = unpack(args.resume_from, runs_dir)
                log("resuming", summary["resumed_runs"], "from", args.resume_from)
        except Deadline:
            raise
        except Exception as e:  # noqa: BLE001 -- recorded, the call still packs
            failed("setup", e)
            env = None
        save()
        if env is not None:  # Stage 2: training
            # The smoke test's throughput rows come first (it checks the table, not the time).
            if args.smoke and not resume:
                summary["throughput"] = []
                throughput(out, env, True, min(120, left()), summary["throughput"])
                save()
            budget = left() - (30 if args.smoke else 40)  # test errors
            log(f"training for at most {budget:.0f} s")

            def on_change(status):
                summary["training"] = dict(status)
                save()
            try:
                summary["training"] = train_all(runs_dir, data_dir, env, nets, max(budget, 5),
                                                args.smoke, on_change, args.log_every)
            finally:
                summary["metrics"] = {}
                for run in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
                    if (metrics := rundir.read_metrics(run)) is not None:
                        summary["metrics"][run.name] = metrics
                    elif (part := partial_metrics(run)) is not None:
                        summary["metrics"][run.name] = part
                save()
            bad = {n: s["status"] for n, s in summary["training"].items()
                   if s["status"].startswith("exit")}
            if bad:
                failed("training", bad)
            # Stage 3: test errors of the finished models.
            summary["final_errors"] = exact_test_errors(runs_dir, data_dir, env,
                                                        timeout=min(left(), 300))
            if "error" in summary["final_errors"]:
                failed("final_errors", summary["final_errors"]["error"])
            save()
            if args.throughput and not args.smoke:  # Stage 4: the table, as time allows
                summary["throughput"] = []
                throughput(out, env, False, left(), summary["throughput"])
                save()
            rows = summary.get("throughput") or []
            if any("error" in r for r in rows):
                failed("throughput", [r for r in rows if "error" in r])
    except Deadline:
        summary["cut_short"] = f"SIGTERM after {time.time() - t0:.0f} s"
        log(summary["cut_short"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the pack finishes; run.sh's SIGKILL is last
    try:  # Stage 5: pack, always
        pack(out, runs_dir)
    except Exception as e:  # noqa: BLE001
        failed("pack", e)
    save()
    log("done in", summary["wall_s"], "s:", ", ".join(sorted(p.name for p in out.iterdir())),
        "failed:", summary["failed"] or "none")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
