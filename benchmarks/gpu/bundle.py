"""`make gpu-bundle`: everything the GPU machine lacks, in one ignored folder of at most 55 MiB.

The borrowed GPU machines (Python 3.12, JAX with CUDA, PyTorch, numpy, h5py, rich, absl-py,
ml-dtypes, packaging, Pillow) have no Keras and no network, and only a 64 MiB working tree
travels. The bundle holds:

    wheels/             keras and the dependencies missing there (CPython 3.12, manylinux x86-64)
    cifar10.npz         CIFAR-10, compact (compact_cifar.py: 5,000 exact images lossless, the
                        rest re-encoded as they were, JPEG quality 75 4:2:0)
    manifest.json       what is in it, sizes, and the measured extra loss of the re-encoding

Usage: python -m benchmarks.gpu.bundle [--out .gpu-bundle] [--data PATH] [--smoke]
`--smoke` writes a small bundle of synthetic images, for the CPU smoke test, with the same wheels
for the running Python when pip can fetch them (else none: the installed keras is used).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

from benchmarks.gpu import compact_cifar

# The versions tested here with JAX (requirements-notf.txt). The GPU machine has absl-py,
# numpy, rich, h5py, ml-dtypes, packaging; not PyYAML, which cifar_resnet/spec/config.py imports
# (the CPU rehearsal found it), and typing_extensions (optree's) only through torch.
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.20.0", "PyYAML==6.0.3",
          "typing_extensions==4.16.0")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64")
LIMIT_MIB = 55
DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared/data/cifar-10-python.tar.gz"


def download_wheels(folder: pathlib.Path, python_version="3.12") -> list[str]:
    """Fetches WHEELS for CPython `python_version` on manylinux x86-64 (pip, no dependencies)."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
           *(f"--platform={p}" for p in PLATFORMS), "-d", str(folder), *WHEELS]
    subprocess.run(cmd, check=True)
    return sorted(p.name for p in folder.glob("*.whl"))


def folder_mib(folder: pathlib.Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def make(out, data=None, smoke=False) -> dict:
    """Writes the bundle into `out` (replacing its files); returns the manifest."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("wheels/*.whl"), out / "cifar10.npz", out / "manifest.json"]:
        old.unlink(missing_ok=True)
    from cifar_resnet.spec import datasets as data_lib  # numpy only: no TensorFlow
    if smoke:
        train, test = data_lib.make_synthetic(600, 200, seed=0)
        report = compact_cifar.encode(train, test, out / "cifar10.npz", exact=(40, 10))
        try:  # the real wheels, for the Python that runs the smoke call
            wheels = download_wheels(out / "wheels", "%d.%d" % sys.version_info[:2])
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"smoke bundle: no wheels ({e}); the installed keras is used",
                  file=sys.stderr)
            for old in out.glob("wheels/*.whl"):
                old.unlink()
            wheels = []
    else:
        source = data or os.environ.get("CIFAR10_DIR") or DEFAULT_DATA
        train, test = data_lib.load_cifar10(source, download=False)
        report = compact_cifar.encode(train, test, out / "cifar10.npz")
        wheels = download_wheels(out / "wheels")
    manifest = {"wheels": wheels, "data": report, "smoke": smoke,
                "mib": round(folder_mib(out), 2)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if manifest["mib"] > LIMIT_MIB:
        raise SystemExit(f"error: bundle {out} is {manifest['mib']} MiB, over {LIMIT_MIB} MiB")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".gpu-bundle", help="bundle folder (ignored by git)")
    p.add_argument("--data", help="CIFAR-10 archive or folder (default ../shared/data/...)")
    p.add_argument("--smoke", action="store_true", help="small synthetic bundle, no wheels")
    args = p.parse_args(argv)
    manifest = make(args.out, args.data, args.smoke)
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
