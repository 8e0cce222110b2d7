"""Brings run directories' config.json files written by earlier versions to today's fields, once,
so that the package reads only today's format (issue #39: the shims of a 0.1 package go).

    python -m benchmarks.migrate_config_json PATH...          rewrite what needs it, say what
    python -m benchmarks.migrate_config_json --check PATH...  exit 1 if anything needs it

PATH is a config.json or a folder searched for them (run directories, sweeps, reports). What
changed, and what each old file meant (the rules the package applied on reading, until now):
- `mixed_precision` merged into `precision` (issue #13): a file with `mixed_precision` and
  `precision` missing, null or "auto" trained in bfloat16 when the flag was set (float16 on a
  GPU: `--gpu`), else float32; a named policy always won. The flag is removed.
- `whole_passes` did not exist: every run before it trained whole logging periods (64k
  iterations were 164 passes, 64,124), so it becomes true. Null meant false.
- `val_fraction` null meant "the run directory's value, else 0" (all 50k images).
A field added since a file was written gets the value reading that file gave until now (its
preset's, else the field's default, which kept the old behaviour). Each file is rewritten
atomically, complete and in today's order, and only if it changes; the result is validated
with today's `spec/config.load`. A run of the pinned long runs (experiments/
run_pinned.sh) keeps its own old format: its code reads no other; `make full-repro-report`
migrates the copies it stages.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def migrate(raw: dict, *, gpu: bool = False) -> dict:
    """Today's fields for one config.json's content (a new dict; `raw` is unchanged)."""
    new = dict(raw)
    if "mixed_precision" in new:
        mixed = bool(new.pop("mixed_precision"))
        if new.get("precision") in (None, "auto"):
            new["precision"] = ("mixed_float16" if gpu else "mixed_bfloat16") if mixed \
                else "float32"
    elif new.get("precision") is None:  # written before either field: float32 throughout
        new["precision"] = "float32"
    if "whole_passes" not in new:
        new["whole_passes"] = True
    elif new["whole_passes"] is None:
        new["whole_passes"] = False
    if new.get("val_fraction") is None:
        new["val_fraction"] = 0.0
    return new


def config_files(paths) -> list[pathlib.Path]:
    """The config.json files a list of files and folders names (folders searched, sorted)."""
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found += sorted(path.rglob("config.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"error: {path}: no such file or folder")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any file needs migrating")
    parser.add_argument("--gpu", action="store_true",
                        help="the runs trained on a GPU (mixed_precision meant float16)")
    args = parser.parse_args(argv)

    from cifar_resnet.spec import config as config_lib, files
    stale = 0
    for path in config_files(args.paths):
        raw = json.loads(path.read_text())
        # Every field the file lacks gets the value reading it gave until now: its preset's,
        # else the default (each field was added with a default that kept the old behaviour).
        new = config_lib.resolve(settings=migrate(raw, gpu=args.gpu)).to_dict()
        new = json.loads(json.dumps(new))  # tuples as the lists JSON holds
        if new == raw and list(new) == list(raw):
            continue
        stale += 1
        changes = [f"{k}: {raw.get(k, '(none)')!r} -> {new.get(k, '(removed)')!r}"
                   for k in sorted(set(raw) | set(new)) if raw.get(k, ...) != new.get(k, ...)]
        print(f"{path}: {', '.join(changes) or 'keys reordered'}")
        if not args.check:
            config_lib.load(path, new)  # today's code reads it, or nothing is written
            files.write_json(path, new)
    if args.check and stale:
        print(f"{stale} config.json file(s) need migrating: {config_lib.MIGRATE} "
              f"{' '.join(args.paths)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
