"""Paired comparisons of two nets on the same test images (results/paired.py, issue #37)."""

import csv
import math
import pathlib
import types

import numpy as np
import pytest

from cifar_resnet.spec import files, paper
from cifar_resnet.results import paired

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "full-repro"


def test_the_difference_and_its_standard_error_by_hand():
    # 10 images: a wrong on 0-3, b wrong on 2-4. Only a: 0, 1; only b: 4.
    a = [i > 3 for i in range(10)]
    b = [not 2 <= i <= 4 for i in range(10)]
    p = paired.compare("a", "b", a, b)
    assert (p.n, p.only_a, p.only_b) == (10, 2, 1)
    assert (p.error_a, p.error_b) == (40.0, 30.0)
    assert p.difference == pytest.approx(10.0)
    # d = +1, +1, 0, 0, -1, 0...: mean 0.1, E[d^2] = 0.3, var 0.29, SE sqrt(0.029)
    assert p.std_error == pytest.approx(100 * math.sqrt(0.029))
    assert not p.resolved and p.verdict() == "not resolved by one run"


def test_a_resolved_difference_names_the_net_above():
    rng = np.random.default_rng(0)
    b = rng.random(10000) < 0.9
    a = b & (rng.random(10000) < 0.95)  # a wrong wherever b is, and on 5% more
    p = paired.compare("deep", "shallow", a, b)
    assert p.only_b == 0 and p.resolved and p.verdict() == "deep above shallow"
    assert paired.compare("shallow", "deep", b, a).verdict() == "shallow below deep"
    # The same errors as two unpaired binomials would not be resolved this sharply.
    unpaired = math.hypot(*(math.sqrt(e * (1 - e) / 1e4) for e in (1 - a.mean(), 1 - b.mean())))
    assert p.std_error < 100 * unpaired


def test_encoding_round_trips_and_refuses_other_text():
    flags = np.array([True, False, False, True])
    assert paired.encode(flags) == "1001"
    np.testing.assert_array_equal(paired.decode("1001"), flags)
    with pytest.raises(ValueError, match="0s and 1s"):
        paired.decode("10x1")
    with pytest.raises(ValueError, match="a has results for 4 images, b for 3"):
        paired.compare("a", "b", "1001", "100")


def test_head_compares_only_the_first_images():
    p = paired.compare("a", "b", "0000011111", "1111100000", head=5)
    assert (p.n, p.only_a, p.only_b, p.difference) == (5, 5, 0, 100.0)


def _run(tmp_path, net, seed, correct):
    path = tmp_path / net / f"seed{seed}"
    if correct is not None:
        (path / "eval").mkdir(parents=True)
        files.write_json(path / "eval" / "test-final.json", {"error": 0.0, "correct": correct})
    return types.SimpleNamespace(net=net, seed=seed, path=path)


def test_from_runs_takes_the_papers_pairs_and_notes_the_ones_it_cannot_compare(tmp_path):
    runs = [_run(tmp_path, "resnet20", 0, "1100"), _run(tmp_path, "resnet56", 1, "1110"),
            _run(tmp_path, "resnet56", 0, "1111"), _run(tmp_path, "plain20", 0, None),
            _run(tmp_path, "resnet32", 0, "0000"),  # no pair of the paper's
            _run(tmp_path, "resnet110", 0, None)]
    runs[-1].status = "incomplete"  # still training: left out without a note
    pairs, notes = paired.from_runs(runs, paper.COMPARISONS, head=2)
    assert [(p.a, p.b, p.n) for p in pairs] == [("resnet20", "resnet56", 4),
                                                ("resnet20", "resnet56", 2)]
    assert pairs[0].only_a == 2 and pairs[0].paper == "Table 6: 8.75 against 6.97"  # seed 0
    assert notes == [f"plain20 against resnet20: no per-image results in "
                     f"{tmp_path / 'plain20' / 'seed0'} (evaluate its final model)"]


def test_the_committed_paired_comparisons_recompute_from_the_committed_evaluations():
    from cifar_resnet.results import analysis
    pairs, notes = paired.from_runs(analysis.find_runs(REPORT / "runs"), paper.COMPARISONS,
                                    head=1000)
    assert not notes and paired.csv_text(pairs) == (REPORT / "paired.csv").read_text()
    assert paired.markdown(pairs) == (REPORT / "paired.md").read_text()
    rows = {(r["a"], r["b"], r["n"]): r for r in csv.DictReader((REPORT / "paired.csv").open())}
    # The README's and results.csv's errors, image by image.
    assert float(rows["resnet20", "resnet56", "10000"]["error_a"]) == pytest.approx(11.85)
    assert float(rows["resnet20", "resnet56", "1000"]["error_b"]) == pytest.approx(8.90)
