"""cpu.py: CPU flags, oneDNN on by default at import, and precision from the hardware."""

import os
import pathlib
import subprocess
import sys

import pytest

from cifar_resnet.spec import cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Flag sets of the CPU kinds the project meets (from their /proc/cpuinfo, abridged).
ZEN3 = frozenset("sse4_2 avx avx2 fma".split())                        # AMD EPYC Zen 3
CASCADE_LAKE = frozenset("avx2 avx512f avx512_vnni".split())            # Intel, no bf16
ZEN5 = frozenset("avx2 avx512f avx512_vnni avx512_bf16".split())       # AMD EPYC Zen 5
SAPPHIRE_RAPIDS = frozenset("avx2 avx512f avx512_bf16 amx_tile amx_bf16".split())


def test_read_cpuinfo_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"
                 "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n")
    assert cpu.read_cpuinfo(f) == ("AMD EPYC 7B13", frozenset({"fpu", "avx2", "fma"}))
    assert cpu.read_cpuinfo(tmp_path / "absent") == (None, frozenset())  # not Linux


def test_steal_clock_and_fraction(tmp_path):
    f = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    f.write_text("cpu  100 0 20 60 0 0 0 20 0 0\ncpu0 50 0 10 30 0 0 0 10 0 0\n")
    assert cpu.steal_clock(f) == (20, 200)
    f.write_text("cpu  160 0 30 70 0 0 0 140 0 0\n")  # 200 ticks later, 120 of them stolen
    assert cpu.steal_fraction((20, 200), cpu.steal_clock(f)) == pytest.approx(0.6)
    assert cpu.steal_clock(tmp_path / "absent") is None  # not Linux
    assert cpu.steal_fraction(None, (1, 2)) is None and cpu.steal_fraction((1, 2), (1, 2)) is None


@pytest.mark.parametrize("flags, bf16, tf_default", [
    (ZEN3, False, False), (CASCADE_LAKE, False, True), (ZEN5, True, True),
    (SAPPHIRE_RAPIDS, True, True), (frozenset(), False, False)])
def test_native_bf16_and_tensorflow_default_onednn(flags, bf16, tf_default):
    assert cpu.has_native_bf16(flags) is bf16
    assert cpu.tensorflow_default_onednn(flags) is (tf_default and sys.platform == "linux")


@pytest.mark.parametrize("precision, gpu, native, expected, noted", [
    ("auto", True, False, "mixed_float16", False),      # a GPU: CPU flags do not matter
    ("auto", False, True, "mixed_bfloat16", False),
    ("auto", False, False, "float32", True),            # bf16 emulated: float32, said once
    ("mixed_bfloat16", False, False, "mixed_bfloat16", False),  # asked for: as given
    ("float32", True, True, "float32", False),
])
def test_resolve_precision(precision, gpu, native, expected, noted):
    policy, note = cpu.resolve_precision(precision, gpu=gpu, native_bf16=native)
    assert policy == expected
    assert (note is not None) is noted
    if noted:
        assert "\n" not in note and "avx512_bf16" in note and "--precision" in note


def test_resolve_precision_rejects_unknown_names():
    with pytest.raises(ValueError, match="precision 'bf16' is not one of 'auto', 'float32'"):
        cpu.resolve_precision("bf16", gpu=False)


def test_describe_records_flags_and_onednn():
    info = cpu.describe()
    assert info["native_bf16"] is cpu.has_native_bf16()
    assert set(info["onednn"]) == {"TF_ENABLE_ONEDNN_OPTS", "enabled", "tensorflow_default"}
    if cpu.cpu_flags():
        assert set(info["flags"]) == set(cpu.RECORDED_FLAGS)


# ------------------------------------------------------------------------------------------------
# `import cifar_resnet` sets TF_ENABLE_ONEDNN_OPTS before TensorFlow starts, unless the user did.

_CHILD = """
import os
{before}
import cifar_resnet
from cifar_resnet.spec import cpu
cpu.enable_onednn()  # a second call: no second warning
print("variable", os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
import tensorflow as tf
from cifar_resnet import private_apis
print("enabled", private_apis.onednn_enabled())
"""


def _child(before="", **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environ.update(env, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _CHILD.format(before=before)], cwd=ROOT,
                            env=environ, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    return out, [line for line in result.stderr.splitlines() if "cifar_resnet" in line]


@pytest.mark.slow
@pytest.mark.parametrize("user, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_import_turns_onednn_on_unless_the_user_chose(user, expected):
    out, warnings = _child(**({"TF_ENABLE_ONEDNN_OPTS": user} if user else {}))
    assert out["variable"] == expected
    # TensorFlow's own answer (x86 Linux builds carry oneDNN): it followed the variable.
    if out["enabled"] != "None":
        assert out["enabled"] == str(expected == "1")
    assert warnings == []


@pytest.mark.slow
def test_tensorflow_imported_first_warns_once_in_one_line():
    out, warnings = _child(before="import tensorflow")
    assert out["variable"] == "None"  # too late to apply: not recorded as if it had
    assert len(warnings) == 1, warnings
    assert "imported before cifar_resnet" in warnings[0]
    assert "TF_ENABLE_ONEDNN_OPTS=1" in warnings[0]
