"""The run directory's small files under their names (issue #39): history.csv and metrics.json
say `period` where they count logging periods, and a file written before says `epoch` there and
still reads, resumes and reports. No TensorFlow: spec/rundir.py alone."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest

from cifar_resnet.spec import files, rundir

ROOT = pathlib.Path(__file__).resolve().parents[1]
EARLIER = ROOT / "tests" / "fixtures" / "keras3.15-v1-depth8"
# The header every history.csv had before issue #39 (the committed docs/**/runs files have it).
OLD_HEADER = ("epoch,iterations,lr,loss,error,val_loss,val_error,test_loss,test_error,"
              "epoch_time,wall_time")


def _row(period, **cells):
    values = {"period": period, "iterations": 10 * (period + 1), "lr": 0.1, "loss": 2.0,
              "error": 0.5, "val_loss": "", "val_error": "", "test_loss": 2.1, "test_error": 0.6,
              "period_time": 1.5, "wall_time": 2.0 * (period + 1), **cells}
    return values


def _old_file(path, periods):
    """A history.csv as written before issue #39: `epoch` and `epoch_time`."""
    lines = [OLD_HEADER] + [",".join(str(_row(p)[k]) for k in rundir.HISTORY_FIELDS)
                            for p in range(periods)]
    path.write_text("\n".join(lines) + "\n")
    return path.read_text()


def test_history_is_written_under_period_and_period_time(tmp_path):
    path = tmp_path / "history.csv"
    assert rundir.HISTORY_FIELDS[0] == "period" and "period_time" in rundir.HISTORY_FIELDS
    assert not {"epoch", "epoch_time"} & set(rundir.HISTORY_FIELDS)
    rundir.append_history(path, _row(0))
    rundir.append_history(path, _row(1, val_error=0.4))
    header, first, second = path.read_text().splitlines()
    assert header == ",".join(rundir.HISTORY_FIELDS)
    assert first == "0,10,0.1,2.0,0.5,,,2.1,0.6,1.5,2.0"
    assert second == "1,20,0.1,2.0,0.5,,0.4,2.1,0.6,1.5,4.0"
    rows = rundir.read_history(path)
    assert [r["period"] for r in rows] == [0, 1] and rows[1]["period_time"] == 1.5
    assert rows[1]["val_error"] == 0.4


def test_an_old_history_with_an_epoch_column_reads_under_the_new_names(tmp_path):
    path = tmp_path / "history.csv"
    _old_file(path, 2)
    rows = rundir.read_history(path)
    assert [r["period"] for r in rows] == [0, 1] and rows[0]["period_time"] == 1.5
    assert not {"epoch", "epoch_time"} & set(rows[0])
    rundir.check_history(path, 2, "B")  # its rows count for the checkpoint's periods
    with pytest.raises(rundir.HistoryError, match=r"holds 2 of the 3 rows, .*period 3 missing"):
        rundir.check_history(path, 3, "B")
    # A damaged old row is named as a new one is.
    path.write_text(OLD_HEADER + "\n1.5,10\n")
    with pytest.raises(rundir.HistoryError, match="no whole period number"):
        rundir.read_history(path)


def test_the_committed_runs_histories_read():
    """docs/**/runs keep their history.csv as written (`epoch`): each reads, with periods."""
    paths = sorted((ROOT / "docs").glob("**/runs/**/history.csv"))
    assert paths
    for path in paths:
        rows = rundir.read_history(path)
        assert rows and [r["period"] for r in rows] == list(range(len(rows))), path


def test_a_resumed_old_history_is_rewritten_once_under_the_new_header(tmp_path):
    """The row a resumed old run appends goes under the new header, never below the old one:
    the file is rewritten whole (atomically), old cells kept as written, then appended to."""
    path = tmp_path / "history.csv"
    old = _old_file(path, 3)
    assert [r["period"] for r in rundir.trim_history(path, 2)] == [0, 1]  # past the backup
    assert path.read_text().splitlines()[0] == OLD_HEADER  # trimming keeps the header
    rundir.append_history(path, _row(2, test_error=0.25))
    header, *rows = path.read_text().splitlines()
    assert header == ",".join(rundir.HISTORY_FIELDS)
    assert rows[:2] == old.splitlines()[1:3]  # the same columns in the same order: same cells
    assert rows[2] == "2,30,0.1,2.0,0.5,,,2.1,0.25,1.5,6.0"
    read = rundir.read_history(path)
    assert [r["period"] for r in read] == [0, 1, 2] and read[2]["test_error"] == 0.25
    # From then on rows are appended to the file as it is.
    before = path.read_text()
    rundir.append_history(path, _row(3))
    assert path.read_text().startswith(before) and len(path.read_text().splitlines()) == 5


def test_an_older_header_with_other_columns_keeps_every_cell_under_its_name(tmp_path):
    """A history.csv of a version with fewer columns (no losses) and one of its own: each old
    cell stays under its (renamed) column, the cells it lacks are empty."""
    path = tmp_path / "history.csv"
    path.write_text("epoch,iterations,lr,error,test_error,wall_time,extra\n0,10,0.1,0.5,0.6,2.0,7\n")
    rundir.append_history(path, _row(1))
    header, old, new = path.read_text().splitlines()
    assert header == ",".join(rundir.HISTORY_FIELDS) + ",extra"
    assert old == "0,10,0.1,,0.5,,,,0.6,,2.0,7"
    assert new == "1,20,0.1,2.0,0.5,,,2.1,0.6,1.5,4.0,"
    assert [r["period"] for r in rundir.read_history(path)] == [0, 1]


def test_a_failed_rewrite_leaves_the_old_history_as_it_was(tmp_path, monkeypatch):
    """The rewrite under the new header is one atomic replace: a disk that fills at the
    rename leaves the old file whole, and no temporary file."""
    path = tmp_path / "history.csv"
    old = _old_file(path, 1)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(files.WriteError, match="cannot write .*history.csv"):
        rundir.append_history(path, _row(1))
    assert path.read_text() == old and [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_an_empty_history_file_gets_its_header(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("")
    rundir.append_history(path, _row(0))
    assert path.read_text().splitlines()[0] == ",".join(rundir.HISTORY_FIELDS)
    assert [r["period"] for r in rundir.read_history(path)] == [0]


def test_metrics_json_of_before_issue_39_reads_under_the_new_names(tmp_path):
    # A finished run's `best_val_epoch` counted logging periods from 1.
    files.write_json(tmp_path / "metrics.json", {"status": "complete", "best_val_epoch": 2,
                                                 "epochs": 2, "final_test_error": 0.1})
    metrics = rundir.finished_metrics(tmp_path)
    assert metrics["best_val_period"] == 2 and "best_val_epoch" not in metrics
    assert metrics["epochs"] == 2  # passes, then as now
    # A failed run's `epoch` (the period it diverged in) and `finished_epochs`.
    files.write_json(tmp_path / "metrics.json", {"status": "failed", "step": 5, "epoch": 2,
                                                 "finished_epochs": 1})
    assert rundir.read_metrics(tmp_path) == {"status": "failed", "step": 5, "period": 2,
                                             "finished_periods": 1}
    # Today's names read as written; an old name beside its new one is left alone.
    new = {"status": "complete", "best_val_period": 3, "best_val_iterations": 30, "epochs": 1.5}
    files.write_json(tmp_path / "metrics.json", new)
    assert rundir.read_metrics(tmp_path) == new
    files.write_json(tmp_path / "metrics.json", {**new, "best_val_epoch": 9})
    assert rundir.read_metrics(tmp_path) == {**new, "best_val_epoch": 9}


def test_the_fixture_and_committed_runs_metrics_read_with_best_val_period():
    metrics = rundir.finished_metrics(EARLIER / "complete")
    assert json.loads((EARLIER / "complete" / "metrics.json").read_text())["best_val_epoch"] == 2
    assert metrics["best_val_period"] == 2 and "best_val_epoch" not in metrics
    # The committed runs kept theirs as written (null: an older version wrote the field
    # without a validation split).
    committed = [p.parent for p in (ROOT / "docs").glob("**/runs/**/metrics.json")
                 if "best_val_epoch" in p.read_text()]
    assert committed
    for run in committed:
        metrics = rundir.read_metrics(run)
        assert "best_val_period" in metrics and "best_val_epoch" not in metrics
