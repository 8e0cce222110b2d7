"""Paired comparisons of two nets on the same test images: what one run of each can say.

He et al. 2015 compare nets by one test error each (Table 6; ResNet-110 alone has a mean of 5
runs, 6.61 +- 0.16). Two nets evaluated on the same 10,000 images differ on few of them, so the
standard error of their difference comes from the images only one of them gets wrong, not from
the two binomial errors added: with d_i = wrong_a_i - wrong_b_i,

    difference = mean(d) = (only_a - only_b) / n,    SE = sqrt(var(d) / n),

var(d) = (only_a + only_b) / n - difference^2 (McNemar's setting, as a difference of means).
A difference within two standard errors is "not resolved by one run". Resolved or not, it is
the test images' sampling error only: it says nothing of the spread between training runs of
the same net, which one seed cannot measure (He 2015's ResNet-110: 0.16 points over 5 runs).

The per-image results come from each run's final evaluation (`eval/test-final.json`,
"correct": one 0 or 1 a test image, in order; `encode`). No TensorFlow, no Keras.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Optional, Sequence

import numpy as np

RESOLVED_AT = 2.0  # standard errors


@dataclasses.dataclass(frozen=True)
class Paired:
    """Net `a` against net `b` on the same `n` images; errors and differences in %."""

    a: str
    b: str
    images: str            # which images: "all 10,000", "the exact 1,000"
    n: int
    error_a: float
    error_b: float
    only_a: int            # images only `a` gets wrong
    only_b: int
    difference: float      # error_a - error_b
    std_error: float       # of the difference
    paper: str = ""        # what the paper finds for this pair

    @property
    def resolved(self) -> bool:
        return abs(self.difference) > RESOLVED_AT * self.std_error

    def verdict(self) -> str:
        """`a` above or below `b`, or "not resolved by one run"."""
        if not self.resolved:
            return "not resolved by one run"
        return f"{self.a} {'above' if self.difference > 0 else 'below'} {self.b}"


def encode(correct) -> str:
    """The compact form an evaluation stores: "1" for each image the net gets right, "0" for
    each it gets wrong, in the split's order, one line."""
    return "".join("1" if c else "0" for c in np.asarray(correct, dtype=bool))


def decode(correct: str) -> np.ndarray:
    """The flags `encode` wrote, as a bool array (True: right)."""
    if not isinstance(correct, str) or set(correct) - {"0", "1"}:
        raise ValueError("per-image results must be a string of 0s and 1s")
    return np.frombuffer(correct.encode(), dtype=np.uint8) == ord("1")


def compare(a: str, b: str, correct_a, correct_b, *, head: Optional[int] = None,
            images: str = "", paper: str = "") -> Paired:
    """The paired difference of nets `a` and `b` (names) on the same images.

    Args:
        a, b: the nets' names.
        correct_a, correct_b: whether each net gets each image right, in order: bool arrays,
            or the strings `encode` writes.
        head: only the first `head` images (e.g. the 1,000 exact ones of the shared copy).
        images: how to name those images in a table; default their count.
        paper: what the paper finds for this pair, for the table.

    Raises:
        ValueError: the two do not cover the same number of images.
    """
    ok_a, ok_b = (decode(c) if isinstance(c, str) else np.asarray(c, dtype=bool)
                  for c in (correct_a, correct_b))
    if len(ok_a) != len(ok_b):
        raise ValueError(f"{a} has results for {len(ok_a)} images, {b} for {len(ok_b)}")
    if head is not None:
        ok_a, ok_b = ok_a[:head], ok_b[:head]
    n = len(ok_a)
    only_a, only_b = int(np.sum(~ok_a & ok_b)), int(np.sum(~ok_b & ok_a))
    diff = (only_a - only_b) / n
    var = max((only_a + only_b) / n - diff ** 2, 0.0)
    return Paired(a, b, images or f"{n:,}", n, 100 * float(np.mean(~ok_a)),
                  100 * float(np.mean(~ok_b)), only_a, only_b, 100 * diff,
                  100 * math.sqrt(var / n), paper)


def table(pairs: Sequence[Paired]) -> str:
    """A markdown table of paired comparisons."""
    lines = ["| a | b | test images | error a (%) | error b (%) | only a wrong | only b wrong | "
             "a - b (points) | paired SE | one run says | the paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p.a} | {p.b} | {p.images} | {p.error_a:.2f} | {p.error_b:.2f} | "
                     f"{p.only_a} | {p.only_b} | {p.difference:+.2f} | {p.std_error:.2f} | "
                     f"{p.verdict()} | {p.paper} |")
    return "\n".join(lines) + "\n"


def csv_text(pairs: Sequence[Paired]) -> str:
    """The comparisons as CSV: every field, `resolved`, numbers as computed."""
    buffer = io.StringIO()
    fields = [f.name for f in dataclasses.fields(Paired)] + ["resolved"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for p in pairs:
        writer.writerow({k: round(v, 4) if isinstance(v, float) else v
                         for k, v in dict(dataclasses.asdict(p), resolved=p.resolved).items()})
    return buffer.getvalue()


def markdown(pairs: Sequence[Paired], notes: Sequence[str] = ()) -> str:
    """A report's paired.md: what the comparisons are, the table, and the pairs left out."""
    return "\n".join([
        "# Paired comparisons: what one run of each net can say\n",
        "Each pair of nets on the same test images. The difference's standard error comes from "
        "the images only one of the two gets wrong (a paired difference of means). A difference "
        f"within {RESOLVED_AT:g} standard errors is not resolved by one run. Either way it is "
        "the test images' sampling error only: one run of each net cannot measure the spread "
        "between training runs of the same net (He et al. 2015 give it only for ResNet-110: "
        "6.61 +- 0.16 over 5 runs).\n",
        table(pairs) if pairs else "No pair has per-image results.\n",
    ] + [f"- left out: {note}" for note in notes]) + "\n"


def final_results(run_path) -> Optional[str]:
    """The per-image results ("correct") of a run's final test evaluation, or None when it has
    none (not evaluated, or evaluated before they were recorded)."""
    from cifar_resnet.spec import files, rundir
    path = rundir.RunDir(run_path).evaluation(*rundir.FINAL_EVALUATIONS["plain"])
    try:
        return files.read_json(path).get("correct")
    except (OSError, ValueError, AttributeError):
        return None


def from_runs(runs, comparisons, head: Optional[int] = None) -> tuple[list[Paired], list[str]]:
    """The paired comparisons among `runs` that `comparisons` names.

    Args:
        runs: runs with `.net`, `.seed` and `.path` (results.analysis.Run); the lowest seed of a
            net stands for it (one run each, as the papers' tables).
        comparisons: (a, b, what the paper finds) triples, e.g. paper.COMPARISONS.
        head: also compare on the first `head` images (the exact 1,000 of the shared copy).

    Returns:
        (comparisons, notes): each pair on all images, then on the head; a note for each pair
        named in `comparisons` with both nets finished but one without per-image results.
    """
    first: dict[str, object] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        first.setdefault(run.net, run)
    found, notes = [], []
    for a, b, says in comparisons:
        if a not in first or b not in first:
            continue
        ca, cb = final_results(first[a].path), final_results(first[b].path)
        if any(getattr(first[n], "status", "complete") != "complete" for n in (a, b)):
            continue  # still training: nothing to compare yet, nothing missing
        if ca is None or cb is None:
            notes.append(f"{a} against {b}: no per-image results in "
                         f"{first[a if ca is None else b].path} (evaluate its final model)")
            continue
        found.append(compare(a, b, ca, cb, images=f"all {len(ca):,}", paper=says))
        if head is not None and len(ca) > head:
            found.append(compare(a, b, ca, cb, head=head, images=f"the first {head:,}",
                                 paper=says))
    return found, notes
