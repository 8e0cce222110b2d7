"""PyTorch reference of the CIFAR-10 ResNets, for the side-by-side benchmark (issue #4).

The same nets as `cifar_resnet.nets.models` with the "paper" preset, written the way a PyTorch user
would (fb.resnet.torch conventions):
  - He et al. 2015 sec 4.2: v1 basic units, option-A shortcuts (subsample, zero-pad channels),
    3x3 stem with 16 filters, stages of 16/32/64 filters, global average pooling, linear layer;
  - He et al. 2016 Fig. 4(e): v2 full pre-activation bottleneck units with 1x1 projection
    shortcuts (no BN) on the pre-activated input where the shape changes.
Plus the training step the benchmark times (SGD with momentum 0.9 and weight decay 1e-4,
channels_last memory format, optionally bfloat16 or float16 autocast, on the CPU or a CUDA GPU),
and its input: the paper's augmentation (per-pixel mean, pad-4 random crop, flip) on in-memory
uint8 images, made ahead of the timed loop (`prepare_batches`), as a PyTorch user tuning for
speed would feed it, or normalized only (`augment=False`).

Only `torch` is needed (no torchvision): `pip install torch==2.13.0` (the `bench` extra).
Standalone timing, e.g. on a GPU:

    python -m benchmarks.torch_resnet --depth 20 --device auto --precision bfloat16
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

PAD = 4
WIDTHS = (16, 32, 64)


def _conv(cin, cout, kernel, stride=1):
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
    # fb.resnet.torch ConvInit: normal(0, sqrt(2 / (k * k * out_channels))).
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2015: `x[:, :, ::s, ::s]`, zero channels appended after."""

    def __init__(self, cout, stride):
        super().__init__()
        self.cout, self.stride = cout, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - x.shape[1]))


class BasicV1(nn.Module):
    """Post-activation unit: conv-BN-ReLU, conv-BN, add the shortcut, ReLU; the plain nets'
    (He et al. 2015, sec 4.2) add nothing."""

    def __init__(self, cin, cout, stride, plain=False):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.shortcut = (None if plain else nn.Identity() if stride == 1 and cin == cout
                         else ZeroPadShortcut(cout, stride))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y if self.shortcut is None else y + self.shortcut(x))


class BottleneckV2(nn.Module):
    """Full pre-activation bottleneck: (BN-ReLU-conv) 1x1, 3x3 (strided), 1x1 (4x wide)."""

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv(cin, width, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), _conv(width, width, 3, stride)
        self.bn3, self.conv3 = nn.BatchNorm2d(width), _conv(width, cout, 1)
        self.project = (None if stride == 1 and cin == cout
                        else nn.Conv2d(cin, cout, 1, stride, bias=False))
        if self.project is not None:
            nn.init.kaiming_normal_(self.project.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        preact = F.relu(self.bn1(x))
        y = self.conv1(preact)
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        # preresnet.lua "both_preact": a projecting unit feeds BN-ReLU(x) to the shortcut too.
        return y + (x if self.project is None else self.project(preact))


class CifarResNet(nn.Module):
    """CIFAR ResNet: version 1 (basic, option A, depth 6n+2) or 2 (bottleneck, depth 9n+2);
    `plain=True`: version 1 without its shortcuts (the paper's plain nets)."""

    def __init__(self, depth=20, version=1, num_classes=10, plain=False):
        super().__init__()
        per_unit = {1: 2, 2: 3}.get(version)
        if per_unit is None:
            raise ValueError(f"version {version!r} is not valid; valid: 1, 2")
        if plain and version != 1:
            raise ValueError(f"plain nets are version 1 (He et al. 2015); got version {version}")
        if (depth - 2) % (3 * per_unit) or depth < 3 * per_unit + 2:
            raise ValueError(f"depth {depth!r} is not {3 * per_unit}n+2 for version {version}")
        n = (depth - 2) // (3 * per_unit)
        self.version = version
        self.stem = _conv(3, 16, 3)
        self.stem_bn = nn.BatchNorm2d(16) if version == 1 else None
        units, cin = [], 16
        for s, width in enumerate(WIDTHS):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                if version == 1:
                    units.append(BasicV1(cin, width, stride, plain))
                    cin = width
                else:
                    units.append(BottleneckV2(cin, width, stride))
                    cin = 4 * width
        self.units = nn.Sequential(*units)
        self.final_bn = nn.BatchNorm2d(cin) if version == 2 else None
        self.classifier = nn.Linear(cin, num_classes)  # Torch default init, as the paper preset.

    def forward(self, x):
        x = self.stem(x)
        if self.stem_bn is not None:
            x = F.relu(self.stem_bn(x))
        x = self.units(x)
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x))
        return self.classifier(x.mean((2, 3)))


def count_params(net: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers, so not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def augment(images, mean, std, generator=None):
    """Normalizes a uint8 NHWC batch, pads 4 zeros, crops 32x32 per image, flips half.

    Args:
        images: uint8 (B, 32, 32, 3) tensor.
        mean: float32 (32, 32, 3) or broadcastable, on the [0, 1] scale.
        std: float32, broadcastable like `mean`.
        generator: optional torch.Generator.

    Returns:
        float32 (B, 3, 32, 32) in channels_last memory layout (an NHWC tensor viewed as NCHW).
    """
    b, h, w, _ = images.shape
    x = (images.float() / 255 - mean) / std
    x = F.pad(x, (0, 0, PAD, PAD, PAD, PAD))
    offsets = torch.randint(0, 2 * PAD + 1, (2, b, 1), generator=generator)
    flips = torch.rand(b, 1, generator=generator) < 0.5
    rows = offsets[0] + torch.arange(h)
    cols = offsets[1] + torch.where(flips, torch.arange(w - 1, -1, -1), torch.arange(w))
    x = x[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return x.permute(0, 3, 1, 2)


def normalize(images, mean, std):
    """A uint8 NHWC batch normalized, as float32 (B, 3, 32, 32) in channels_last layout."""
    return ((images.float() / 255 - mean) / std).permute(0, 3, 1, 2)


def batches(x, y, batch_size, mean, std, seed=0, augment_images=True):
    """Endless training batches, augmented unless `augment_images` is False: a new permutation
    of the images every epoch."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    mean, std = torch.as_tensor(mean), torch.as_tensor(std)
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield (augment(x[idx], mean, std, generator) if augment_images
                   else normalize(x[idx], mean, std)), y[idx]


def prepare_batches(x, y, batch_size, mean, std, count, *, seed=0, augment=True, device="cpu",
                    channels_last=True) -> list:
    """`count` training batches made ahead of the timed loop, on `device`, in the step's layout.

    The timed loop then only trains: augmentation is off the training thread, where a PyTorch
    user tuning for speed would put it (a DataLoader's workers; on 2 cores those would take the
    step's cores, so here it all happens before).
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return [(images.contiguous(memory_format=memory_format).to(device),
             labels.to(device))
            for images, labels in itertools.islice(
                batches(x, y, batch_size, mean, std, seed, augment_images=augment), count)]


def default_device() -> str:
    """"cuda" where PyTorch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_train_step(net, *, lr=0.1, momentum=0.9, weight_decay=1e-4, bf16=False,
                    precision=None, channels_last=True, device=None):
    """Returns `step(images, labels) -> loss`: forward, backward and an SGD update.

    Weight decay is PyTorch's coupled one (added to the gradient, through momentum), as in the
    paper and fb.resnet.torch, on every parameter.

    Args:
        net: the module; moved to `device` and `channels_last` here.
        bf16: shorthand for `precision="bfloat16"`.
        precision: "float32" (default), "bfloat16" or "float16": autocast on `device`'s type;
            float16 scales the loss (torch.amp.GradScaler).
        channels_last: NHWC memory layout (the fast one for convolutions on CPU and GPU).
        device: "cpu", "cuda", ...; None: `default_device()`.
    """
    precision = precision or ("bfloat16" if bf16 else "float32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device or default_device())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(net.parameters(), lr, momentum=momentum,
                                weight_decay=weight_decay)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "float16")

    def step(images, labels):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def main(argv=None) -> int:
    """Times the reference alone: images/s per epoch of `--steps` steps after a warm-up."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_resnet",
                                description=main.__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--version", type=int, default=1, choices=(1, 2))
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, "
                                                    "cuda, cuda:1, ...")
    p.add_argument("--precision", default="float32", choices=tuple(PRECISIONS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    p.add_argument("--noaug", action="store_true", help="normalized batches, no augmentation")
    p.add_argument("--nchw", action="store_true", help="contiguous NCHW, not channels_last")
    args = p.parse_args(argv)
    try:
        device = torch.device(default_device() if args.device == "auto" else args.device)
        net = CifarResNet(args.depth, args.version)
    except (RuntimeError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.exit(2, "error: --device cuda, but PyTorch sees no CUDA GPU\n")
    step = make_train_step(net, precision=args.precision, device=device,
                           channels_last=not args.nchw)
    # Random uint8 images stand in for CIFAR-10: the step's time does not depend on pixels.
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (max(1024, args.batch_size), 32, 32, 3), dtype=torch.uint8,
                      generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    pool = prepare_batches(x, y, args.batch_size, x.float().mean(0) / 255, 0.25,
                           len(x) // args.batch_size, augment=not args.noaug, device=device,
                           channels_last=not args.nchw)
    feed = itertools.cycle(pool)
    for epoch in range(args.epochs + 1):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step(*next(feed))
        loss.item()  # waits for the device
        rate = args.steps * args.batch_size / (time.perf_counter() - start)
        print(f"{'warm-up' if epoch == 0 else f'epoch {epoch}'}: {rate:.0f} img/s "
              f"(resnet{args.depth}_v{args.version}, {args.precision}, {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
