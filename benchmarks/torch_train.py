"""An independent PyTorch trainer of the `fast` recipe (experiments/fast.py), issue #12 item 3.

It answers one question: when the Keras run of a recipe stops short of the paper's 91.25%
(ResNet-20, He et al. 2015 Table 6), is the limit the recipe and the data, or this project's
code? It trains the same recipe on the same archive with nothing from `cifar_resnet`:
  - the data read from the CIFAR-10 python archive here (tarfile + pickle), all 50,000 training
    images, normalized by the per-pixel mean image as the paper (sec 4.2), std 1;
  - the net of `benchmarks/torch_resnet.py` (ResNet v1, option A, fb.resnet.torch init; its
    parameter count is pinned against the Keras model in tests/test_bench.py);
  - pad-4 random crop and flip per batch, 391 iterations an epoch (the last batch partial, as
    Keras' epoch of 50,000 images);
  - SGD with momentum and, as the recipe says, Nesterov, coupled weight decay (PyTorch's) on the
    conv kernels only (the project's weight_decay_on="kernels") or on all, label smoothing,
    and the per-iteration lr: a linear warm-up, then a half cosine (or a line) to zero;
  - bfloat16 autocast where asked (channels_last on CPU), fp32 otherwise.

Rerunning the command resumes after the last finished epoch (OUT/checkpoint.pt). It writes
OUT/history.csv (per evaluation: epoch, iterations, lr, training error over the
period's augmented batches, test error, wall time) and OUT/results.json (final test error, the
first 1,000 test images' error with its standard error, flip TTA, wall time, settings):

    python -m benchmarks.torch_train --data ../shared/data/cifar-10-python.tar.gz --out runs/torch-fast
    make fast-recipe-torch    # the same, then history.csv and results.json to docs/fast/torch

Needs only torch and numpy (`pip install torch==2.13.0`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import pickle
import runpy
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import torch_resnet
from cifar_resnet.spec import config as config_lib  # no TensorFlow

# The recipe is the experiment file's, read here rather than copied (tests check the reading
# against the config the Keras sweep builds from the same file).
RECIPE_FILE = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "fast.py"
NUM_TRAIN = 50_000


def fast_recipe(path=RECIPE_FILE) -> dict:
    """The `fast` experiment's RECIPE in this trainer's terms, resolved as the Keras sweep
    resolves it (the project's defaults where the file leaves a value out, and its iteration
    counts given in passes converted with its batch size)."""
    c = config_lib.resolve(overrides=runpy.run_path(str(path))["RECIPE"])
    steps = c.iterations_per_pass(NUM_TRAIN)
    return dict(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                warmup_iterations=c.resolved_warmup, warmup_lr=c.warmup_lr,
                schedule=c.lr_schedule, momentum=c.momentum, nesterov=c.nesterov,
                weight_decay=c.weight_decay, decay_on=c.weight_decay_on or "all",
                label_smoothing=c.label_smoothing,
                eval_every=max(1, (c.log_every or steps) // steps))


def load_cifar10(archive):
    """(x_train, y_train, x_test, y_test) from the python archive: uint8 NHWC, int64 labels."""
    def read(tar, name):
        member = next(m for m in tar.getmembers() if m.name.endswith("/" + name))
        d = pickle.load(tar.extractfile(member), encoding="bytes")
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], np.int64)

    with tarfile.open(archive) as tar:
        train = [read(tar, f"data_batch_{i}") for i in range(1, 6)]
        x_test, y_test = read(tar, "test_batch")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            x_test, y_test)


def lr_at(step, total, *, lr, warmup_iterations, warmup_lr, schedule):
    """The learning rate of 0-based iteration `step` of `total`."""
    if step < warmup_iterations:
        return warmup_lr + (lr - warmup_lr) * step / warmup_iterations
    done = min((step - warmup_iterations) / (total - warmup_iterations), 1.0)
    return lr * (0.5 * (1 + math.cos(math.pi * done)) if schedule == "cosine" else 1 - done)


def param_groups(net, weight_decay, decay_on):
    """SGD parameter groups: decay on the conv kernels only ("kernels") or on all."""
    if decay_on == "all":
        return [{"params": list(net.parameters()), "weight_decay": weight_decay}]
    kernels = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ids = {id(p) for p in kernels}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": kernels, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def predict(net, x, mean, *, dtype, flip=False, batch_size=500):
    """Class probabilities of uint8 NHWC images (the mirror images' with `flip`)."""
    net.eval()
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32,
                                         enabled=dtype is not None):
        for i in range(0, len(x), batch_size):
            batch = torch_resnet.normalize(x[i:i + batch_size], mean, 1.0)
            if flip:
                batch = batch.flip(3)
            out.append(net(batch.contiguous(memory_format=torch.channels_last))
                       .float().softmax(1))
    net.train()
    return torch.cat(out)


def train(x_train, y_train, x_test, y_test, out, *, epochs, batch_size, lr, warmup_iterations,
          warmup_lr, schedule, momentum, nesterov, weight_decay, decay_on, label_smoothing,
          eval_every, precision="float32", seed=0, depth=20, head=1000, log=print) -> dict:
    """Trains ResNet-`depth` v1 and writes OUT/history.csv and OUT/results.json.

    OUT/checkpoint.pt (net, optimizer, random states, curve so far) is rewritten after every
    epoch, and a run started again on the same OUT resumes after the last saved epoch, as the
    Keras runs do; settings that differ from the saved ones are refused.

    Returns:
        The results dict (errors as fractions).

    Raises:
        ValueError: OUT holds a checkpoint of other settings.
    """
    settings = dict(recipe=dict(
        epochs=epochs, batch_size=batch_size, lr=lr, warmup_iterations=warmup_iterations,
        warmup_lr=warmup_lr, schedule=schedule, momentum=momentum, nesterov=nesterov,
        weight_decay=weight_decay, decay_on=decay_on, label_smoothing=label_smoothing,
        eval_every=eval_every), precision=precision, seed=seed, depth=depth,
        num_train=len(x_train))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch_resnet.PRECISIONS[precision]
    x_train, y_train = torch.as_tensor(x_train), torch.as_tensor(y_train)
    x_test, y_test = torch.as_tensor(x_test), torch.as_tensor(y_test)
    mean = x_train.float().mean(0) / 255  # the per-pixel mean image, [0, 1] scale
    net = torch_resnet.CifarResNet(depth, 1).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(param_groups(net, weight_decay, decay_on), lr=lr,
                                momentum=momentum, nesterov=nesterov)
    steps = math.ceil(len(x_train) / batch_size)
    total = epochs * steps
    state = dict(epoch=0, step=0, rows=[], wrong=0, seen=0, elapsed=0.0)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint)
        if saved["settings"] != settings:
            flat = lambda d: {**d["recipe"], **{k: v for k, v in d.items() if k != "recipe"}}
            now, then = flat(settings), flat(saved["settings"])
            changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
            raise ValueError(f"{checkpoint} was trained with other settings ({', '.join(changed)}"
                             f"); use another --out, or delete it to start again")
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        log(f"resuming {out} after epoch {state['epoch']} of {epochs}")
    start = time.perf_counter() - state["elapsed"]
    for epoch in range(state["epoch"], epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            images = torch_resnet.augment(x_train[idx], mean, 1.0, generator)
            images = images.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state["step"], total, lr=lr,
                                    warmup_iterations=warmup_iterations, warmup_lr=warmup_lr,
                                    schedule=schedule)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = net(images)
                loss = F.cross_entropy(logits.float(), y_train[idx],
                                       label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["wrong"] += int((logits.argmax(1) != y_train[idx]).sum())
            state["seen"] += len(idx)
            state["step"] += 1
        state["epoch"] = epoch + 1
        evaluated = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
        if evaluated:
            test_error = float((predict(net, x_test, mean, dtype=dtype).argmax(1) != y_test)
                               .float().mean())
            state["rows"].append(dict(
                epoch=epoch + 1, iterations=state["step"], lr=optimizer.param_groups[0]["lr"],
                error=state["wrong"] / state["seen"], test_error=test_error,
                wall_time=time.perf_counter() - start))
            state["wrong"] = state["seen"] = 0
        state["elapsed"] = time.perf_counter() - start
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(dict(settings=settings, net=net.state_dict(),
                        optimizer=optimizer.state_dict(), generator=generator.get_state(),
                        rng=torch.get_rng_state(), state=state), tmp)
        tmp.replace(checkpoint)  # a kill mid-write leaves the previous epoch's checkpoint
        if evaluated:
            log(", ".join(f"{k} {v:.4g}" for k, v in state["rows"][-1].items()))
    rows = state["rows"]
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    probs = predict(net, x_test, mean, dtype=dtype)
    flipped = (probs + predict(net, x_test, mean, dtype=dtype, flip=True)) / 2
    head = min(head, len(y_test))
    head_error = float((probs[:head].argmax(1) != y_test[:head]).float().mean())
    results = dict(
        final_test_error=rows[-1]["test_error"], final_train_error=rows[-1]["error"],
        flip_tta_test_error=float((flipped.argmax(1) != y_test).float().mean()),
        head=dict(num_images=head, error=head_error,
                  std_error=math.sqrt(head_error * (1 - head_error) / head)),
        wall_time=state["elapsed"], iterations=state["step"], threads=torch.get_num_threads(),
        torch=torch.__version__, **settings)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv=None) -> int:
    """Trains the fast recipe in PyTorch on the CIFAR-10 python archive."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_train",
                                description=main.__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="cifar-10-python.tar.gz")
    p.add_argument("--out", required=True, help="folder for history.csv and results.json")
    p.add_argument("--precision", default="bfloat16", choices=("float32", "bfloat16"),
                   help="bfloat16 autocast (the Keras run's mixed_bfloat16) or float32")
    p.add_argument("--seed", type=int, default=0)
    recipe = fast_recipe()
    for key, value in recipe.items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value) if not isinstance(
            value, bool) else lambda s: s.lower() in ("1", "true", "yes"), default=value,
            help="default: experiments/fast.py's %(default)s")
    args = p.parse_args(argv)
    if not pathlib.Path(args.data).is_file():
        p.exit(2, f"error: --data {args.data}: no such file\n")
    if args.schedule not in ("cosine", "linear") or args.decay_on not in ("kernels", "all"):
        p.exit(2, f"error: --schedule {args.schedule!r} (cosine, linear) or --decay-on "
                  f"{args.decay_on!r} (kernels, all) is not valid\n")
    x_train, y_train, x_test, y_test = load_cifar10(args.data)
    kwargs = {k: getattr(args, k) for k in recipe}
    try:
        r = train(x_train, y_train, x_test, y_test, args.out, precision=args.precision,
                  seed=args.seed, **kwargs)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    print(f"test error {100 * r['final_test_error']:.2f}% (flip TTA "
          f"{100 * r['flip_tta_test_error']:.2f}%), first {r['head']['num_images']} "
          f"{100 * r['head']['error']:.2f}% ± {100 * r['head']['std_error']:.2f}, "
          f"{r['wall_time'] / 60:.1f} min; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
