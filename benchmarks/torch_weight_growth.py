"""The first iterations of a plain net in PyTorch: do its kernels grow as this project's do?

`benchmarks/weight_growth.py` finds that the first pass of plain-56 lengthens its first
convolution's kernel 22,619-fold in squared norm (docs/full-repro, "Plain-56"). This script asks
whether that is the recipe or this project's Keras code: it trains the same net written in
PyTorch (`benchmarks/torch_resnet.py`, fb.resnet.torch initialization, `plain=True`) with the
same recipe (SGD lr 0.1, momentum 0.9, coupled weight decay 1e-4 on every parameter, batch 128,
the per-pixel mean image subtracted, pad-4 crop and flip) on the same archive, with none of
`cifar_resnet`'s nets or training code, and prints each seed's growth (squared norm over its
initial value) of the first convolution, and how many of the kernels grew more than tenfold,
after iterations 1, 2, 5, 10, 20 and 50.

    python -m benchmarks.torch_weight_growth --data ../shared/data/cifar-10-python.tar.gz \\
        --depth 56 --plain --seeds 0 1 2 [--precision bfloat16] [--json OUT.json]

Needs only torch and numpy (`pip install torch==2.13.0`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from benchmarks import torch_resnet, torch_train

MARKS = (1, 2, 5, 10, 20, 50)


def kernel_norms(net: torch.nn.Module) -> list[float]:
    """Squared L2 norm of each convolution and linear kernel, from the input to the classifier."""
    return [float(m.weight.detach().double().square().sum()) for m in net.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def growth(x, y, mean, *, depth: int, plain: bool, seed: int, iterations: int,
           precision: str = "float32", lr: float = 0.1) -> dict[int, list[float]]:
    """{iteration: each kernel's squared norm over its initial value} at MARKS up to
    `iterations`, training from PyTorch seed `seed`."""
    torch.manual_seed(seed)
    net = torch_resnet.CifarResNet(depth, 1, plain=plain)
    init = np.array(kernel_norms(net))
    step = torch_resnet.make_train_step(net, lr=lr, precision=precision, device="cpu")
    batches = torch_resnet.batches(x, y, 128, np.asarray(mean, np.float32), 1.0, seed)
    out = {}
    for iteration in range(1, iterations + 1):
        step(*next(batches))
        if iteration in MARKS or iteration == iterations:
            out[iteration] = (np.array(kernel_norms(net)) / init).tolist()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the CIFAR-10 python archive")
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--plain", action="store_true", help="the plain net (no shortcuts)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--precision", default="float32", choices=sorted(torch_resnet.PRECISIONS))
    parser.add_argument("--json", help="also write the growth here")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations must be 1 or more; got {args.iterations}")
    try:
        torch_resnet.CifarResNet(args.depth, 1, plain=args.plain)
        x, y, _, _ = torch_train.load_cifar10(args.data)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mean = x.astype(np.float32).mean(0) / 255  # the per-pixel mean image, std 1 (sec 4.2)
    results = {}
    for seed in args.seeds:
        results[seed] = growth(x, y, mean, depth=args.depth, plain=args.plain, seed=seed,
                               iterations=args.iterations, precision=args.precision)
        for iteration, ratio in results[seed].items():
            ratio = np.array(ratio)
            print(f"seed {seed} iteration {iteration:3d}: first convolution {ratio[0]:12.1f}x, "
                  f"median {np.median(ratio):5.2f}x, over 10x: {int((ratio > 10).sum())} of "
                  f"{len(ratio)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"depth": args.depth, "plain": args.plain, "precision": args.precision,
                       "growth": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
