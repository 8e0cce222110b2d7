"""The CPU under the run: its flags, TensorFlow's oneDNN switch, and the precision it suits.

No TensorFlow here: `import cifar_resnet` calls `enable_onednn()` first thing, before anything
imports TensorFlow, and the JAX path uses `resolve_precision` without TensorFlow.

oneDNN. TensorFlow's x86 Linux packages carry oneDNN kernels (fused convolution + bias + ReLU,
bfloat16 matmuls and convolutions), but turn them on by default only on CPUs with
"neural-network-focused" features: TensorFlow 2.9's release notes (RELEASE.md, PR
tensorflow/tensorflow#55939 and #56039) say on for "AVX512_VNNI, AVX512_BF16, AMX, etc." (Intel
Cascade Lake and newer) and off on older CPUs unless `TF_ENABLE_ONEDNN_OPTS=1`. The rule is
`DefaultOneDnnPolicy()` / `IsMklEnabled()` in `tensorflow/core/util/util.cc`: on Linux, on if
`port::TestCPUFeature` finds any of AVX512_VNNI, AVX512_BF16, AVX_VNNI, AMX_TILE, AMX_INT8 or
AMX_BF16, then `TF_ENABLE_ONEDNN_OPTS` overrides that default. An AVX2-only CPU such as AMD Zen 3
has none of them, so TensorFlow leaves oneDNN off there, and issue 13 measured ResNet-20 training
at half the speed (187 img/s off, 372 on). `enable_onednn()` sets the variable to 1 unless the
user set it, so every CPU gets the oneDNN path; `TENSORFLOW_DEFAULT_FEATURES` mirrors the rule so
that metrics.json can say whether this changed anything.

Precision. `resolve_precision` turns the config's `precision` (a Keras dtype-policy name, or
"auto") into the policy a run uses. "auto" is mixed precision where the hardware computes it
natively: float16 on a GPU; on a CPU bfloat16 only where the CPU computes it natively (avx512_bf16 or AMX-BF16). Elsewhere
bfloat16 is emulated by converting to and from float32 around float32 arithmetic, so it adds work
instead of saving it, and "auto" picks float32 with one printed line. That choice follows issue
13's report from an AVX2 Zen 3 machine; it was not measured in this project, whose machines have
native bf16 (`--precision mixed_bfloat16` forces bfloat16 where one wants to measure it).
"""

from __future__ import annotations

import os
import pathlib
import platform
import re
import sys
from typing import Optional

from cifar_resnet.spec.choices import check_choice

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# Keras dtype policies a run may use; None or "auto" derive one (resolve_precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# /proc/cpuinfo flags meaning the CPU computes bfloat16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# TensorFlow turns oneDNN on by default if the CPU has any of these (util.cc, see above).
TENSORFLOW_DEFAULT_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                               "amx_bf16")
# The flags metrics.json and bench.json record.
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                  "amx_bf16")

_warned = False


def read_cpuinfo(path="/proc/cpuinfo") -> tuple[Optional[str], frozenset]:
    """(model name, flags) of the first CPU in `path`; (None, empty) where it is unreadable.

    Linux only; elsewhere (macOS, Windows) the flags are unknown and the caller treats the CPU
    as one without native bf16 and without TensorFlow's default oneDNN.
    """
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return None, frozenset()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return (model.group(1).strip() if model else None,
            frozenset(flags.group(1).split()) if flags else frozenset())


def cpu_flags() -> frozenset:
    """This machine's CPU flags (empty where /proc/cpuinfo is absent)."""
    return read_cpuinfo()[1]


def has_native_bf16(flags: Optional[frozenset] = None) -> bool:
    """Whether the CPU computes bfloat16 natively (avx512_bf16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def tensorflow_default_onednn(flags: Optional[frozenset] = None) -> bool:
    """Whether TensorFlow (x86 Linux) would turn oneDNN on by itself on this CPU."""
    flags = cpu_flags() if flags is None else flags
    return sys.platform.startswith("linux") and any(
        f in flags for f in TENSORFLOW_DEFAULT_FEATURES)


def enable_onednn() -> Optional[str]:
    """Sets TF_ENABLE_ONEDNN_OPTS=1 unless the user set it; returns the variable's value.

    Must run before TensorFlow is first imported, which reads the variable once. If TensorFlow
    is already loaded and the variable unset, it is left unset (it would record a setting that
    did not apply) and one line says so, once per process.
    """
    global _warned
    if ONEDNN_VARIABLE in os.environ:
        return os.environ[ONEDNN_VARIABLE]
    if sys.modules.get("tensorflow") is not None:  # None: an import of it is blocked
        if not _warned:
            _warned = True
            state = "on" if tensorflow_default_onednn() else "off"
            print(f"cifar_resnet: TensorFlow was imported before cifar_resnet, so oneDNN stays "
                  f"at TensorFlow's default for this CPU ({state}); set {ONEDNN_VARIABLE}=1 "
                  "before importing TensorFlow to turn it on", file=sys.stderr)
        return None
    os.environ[ONEDNN_VARIABLE] = "1"
    return "1"


def steal_clock(path="/proc/stat") -> Optional[tuple[int, int]]:
    """(steal, total) CPU time of all CPUs since boot, in clock ticks; None where unreadable.

    Steal is the time a virtual machine's CPUs were ready to run while the hypervisor ran
    another guest (the `st` of `vmstat`). On this project's 2-CPU virtual machines it comes in
    bursts of 20-50% that halve a run's speed for minutes, which no alternation of the measured
    programs removes; timings record it so such epochs can be told apart.
    """
    try:
        fields = pathlib.Path(path).read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_fraction(start: Optional[tuple[int, int]],
                   end: Optional[tuple[int, int]]) -> Optional[float]:
    """The share of CPU time stolen between two `steal_clock()` readings (None if unknown)."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])


def describe(onednn_enabled: Optional[bool] = None) -> dict:
    """The CPU and oneDNN facts a run records in metrics.json (and the bench in bench.json).

    Args:
        onednn_enabled: whether TensorFlow's oneDNN kernels are on in this process
            (`private_apis.onednn_enabled()`, asked on the Keras side); None: not known.
    """
    model, flags = read_cpuinfo()
    return {
        "model": model or platform.processor() or None,
        "machine": platform.machine(),
        "flags": {f: f in flags for f in RECORDED_FLAGS} if flags else None,
        "native_bf16": has_native_bf16(flags),
        "onednn": {ONEDNN_VARIABLE: os.environ.get(ONEDNN_VARIABLE),
                   "enabled": onednn_enabled,
                   "tensorflow_default": tensorflow_default_onednn(flags)},
    }


def resolve_precision(precision: str, *, gpu: bool,
                      native_bf16: Optional[bool] = None) -> tuple[str, Optional[str]]:
    """The dtype policy a run uses, and a one-line note where "auto" passed over bfloat16.

    Args:
        precision: "float32", "mixed_bfloat16", "mixed_float16" (used as given), or "auto":
            mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bf16, float32 on a CPU
            without.
        gpu: whether the run trains on GPUs.
        native_bf16: the CPU's bf16 ability; None reads it from this machine.

    Returns:
        (policy name, note or None).

    Raises:
        ValueError: `precision` is not one of the names above.
    """
    check_choice("precision", precision, ("auto", *PRECISIONS))
    if precision != "auto":
        return precision, None
    if gpu:
        return "mixed_float16", None
    if has_native_bf16() if native_bf16 is None else native_bf16:
        return "mixed_bfloat16", None
    return "float32", ("precision float32: this CPU has no native bfloat16 (no avx512_bf16 or "
                       "amx_bf16), where mixed_bfloat16 is emulated and slower; "
                       "--precision mixed_bfloat16 forces it")


# Device files a GPU driver makes (NVIDIA, AMD ROCm, WSL): where none exists, no backend can
# see a GPU, so "auto" resolves without importing one (the command line's finished-run check).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def precision_without_backend(precision: str) -> Optional[str]:
    """`resolve_precision`'s policy, found without TensorFlow or JAX; None where a GPU may be
    there (only the backend can tell, and "auto" is then float16 on it).

    Args:
        precision: as for `resolve_precision`.
    """
    if precision != "auto":
        return resolve_precision(precision, gpu=False)[0]
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    if not hidden and any(os.path.exists(path) for path in GPU_DEVICE_FILES):
        return None
    return resolve_precision("auto", gpu=False)[0]
