"""Checks what benchmarks/gpu/rehearsal.sh's two calls left (standard library only).

Usage: rehearsal_check.py DIR RC1 WALL1 CUT RC2 WALL2 TOTAL2; prints the facts, exits 1 on a
failed check.
"""

import json
import pathlib
import sys
import tarfile


def main(argv):
    d = pathlib.Path(argv[0])
    rc1, wall1, cut, rc2, wall2, total2 = map(int, argv[1:7])
    fails = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        ok or fails.append(what)

    check(rc1 == 0, f"call 1 exits 0 after SIGTERM at {cut} s (got {rc1})")
    check(wall1 <= cut + 30, f"call 1 ends within 30 s of the SIGTERM ({wall1} s)")
    s1 = json.loads((d / "out1/summary.json").read_text())
    check("cut_short" in s1 or s1.get("training"), "call 1's summary.json is packed")
    m1 = s1.get("metrics", {}).get("resnet20", {})
    it1 = int(m1.get("iterations", 0))
    check(m1.get("status") == "partial" and it1 > 0,
          f"call 1: partial metrics with the iteration count ({m1.get('status')}, {it1} "
          f"iterations, test error {m1.get('test_error')})")
    with tarfile.open(d / "out1/runs.tar.gz") as tar:
        names = tar.getnames()
    check(any(n.startswith("resnet20/backup/") and n.endswith(".weights.h5") for n in names),
          "call 1 packs ResNet-20's latest checkpoint")
    c1 = s1.get("training", {}).get("resnet20", {}).get("compiles")
    check(c1 == {"train": 1, "eval": 1}, f"call 1: one train and one eval compile ({c1})")
    check(rc2 == 0, f"call 2 exits 0 (got {rc2})")
    check(wall2 <= total2 + 20, f"call 2 ends within its --total={total2} s ({wall2} s)")
    s2 = json.loads((d / "out2/summary.json").read_text())
    check(s2.get("resumed_runs") == ["resnet20"], "call 2 unpacks ResNet-20 from call 1")
    m2 = s2.get("metrics", {}).get("resnet20", {})
    it2 = int(m2.get("iterations", 0))
    check(it2 > it1, f"call 2 continues ResNet-20: {it1} -> {it2} iterations")
    log = (d / "work2/runs/resnet20.log").read_text(errors="replace")
    check("resuming after epoch" in log, "call 2's run resumes from the checkpoint")
    c2 = s2.get("training", {}).get("resnet20", {}).get("compiles")
    check(c2 == {"train": 1, "eval": 1}, f"call 2: one train and one eval compile ({c2})")
    print(json.dumps({"call1": {"wall_s": wall1, "metrics": m1, "compiles": c1},
                      "call2": {"wall_s": wall2, "metrics": m2, "compiles": c2}}, indent=1))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
