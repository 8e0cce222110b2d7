"""The command line as a new user meets it: help for every flag, the experiments registry in
`sweep --help`, and one line with exit status 2 for any corrupt CIFAR-10 archive, refused
before TensorFlow is imported."""

import argparse
import gzip
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from cifar_resnet.spec import datasets, experiments
from cifar_resnet.__main__ import build_parser, main


def _subparsers(parser):
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_flag_of_every_command_has_help():
    parser = build_parser()
    commands = _subparsers(parser)
    assert sorted(commands) == ["evaluate", "export", "report", "sweep", "train"]
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, command in commands.items() for action in command._actions
               if not (action.help or "").strip()]
    assert missing == []


def test_sweep_help_lists_every_experiment_of_the_registry(capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    names = experiments.list_experiments()
    assert len(names) >= 8
    assert f"{', '.join(names)}" in help_text
    # From the registry, not a list in the code: another experiments folder, other names.
    (tmp_path / "my_experiment.py").write_text('"""Mine."""\nRECIPE = {}\nNETS = {}\n')
    monkeypatch.setenv("CIFAR_RESNET_EXPERIMENTS", str(tmp_path))
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "experiments (in" in capsys.readouterr().out.replace("\n", " ")
    assert experiments.list_experiments() == ["my_experiment"]


def _garbage_member_archive(path):
    with tarfile.open(path, "w:gz") as tar:
        for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
            payload = os.urandom(3000)
            info = tarfile.TarInfo(f"{datasets.FOLDER_NAME}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _truncated_gzip(path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
            payload = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4})
            info = tarfile.TarInfo(f"{datasets.FOLDER_NAME}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    whole = buffer.getvalue()
    assert gzip.decompress(whole)  # a valid archive before it is cut
    path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(os.urandom(4096)), "not a tar archive"),
    (_truncated_gzip, "Compressed file ended before the end-of-stream marker"),
    (_garbage_member_archive, "not a readable CIFAR-10 batch"),
], ids=["random-bytes", "truncated-gzip", "garbage-members"])
def test_a_corrupt_archive_is_one_line_and_exit_2(make, says, tmp_path, capsys):
    archive = tmp_path / datasets.ARCHIVE_NAME
    make(archive)
    code = main(["train", "--data-dir", str(archive), "--depth", "8", "--iterations", "1",
                 "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and str(archive) in err, err
    assert says in err, err
    assert not (tmp_path / "run").exists()


# Runs the CLI with TensorFlow and Keras made unimportable: an import of either fails the run.
NO_TF_CLI = ("import sys\n"
             "class Refuse:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
             "            raise ImportError(f'{name} imported before the data was checked')\n"
             "sys.meta_path.insert(0, Refuse())\n"
             "from cifar_resnet.__main__ import main\n"
             "sys.exit(main(sys.argv[1:]))\n")


@pytest.mark.parametrize("make, says", [
    (None, "CIFAR-10 not found"),
    (lambda p: p.write_bytes(os.urandom(4096)), "not a tar archive"),
    (_garbage_member_archive, "not a readable CIFAR-10 batch"),
], ids=["missing", "random-bytes", "garbage-members"])
def test_a_bad_data_file_is_refused_before_tensorflow_is_imported(make, says, tmp_path):
    """Issue #25: data-file refusals come before TensorFlow loads (the CLI reads the data first)."""
    archive = tmp_path / datasets.ARCHIVE_NAME
    if make is not None:
        make(archive)
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", NO_TF_CLI, "train", "--data-dir", str(archive), "--depth", "8",
         "--iterations", "1", "--workdir", str(workdir)],
        cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True,
        timeout=120)
    err = result.stderr
    assert result.returncode == 2, err  # DataError: bad input, as in-process above
    assert err.count("\n") == 1 and err.startswith("error: ") and str(archive) in err, err
    assert says in err and "imported before" not in err, err
    assert not workdir.exists()


@pytest.mark.parametrize("argv, says", [
    (["train", "--iteration", "20"], "--iteration (did you mean --iterations?)"),
    (["train", "--dpeth", "20"], "--dpeth (did you mean --depth?)"),
    (["train", "--data_dir=x"], "--data_dir=x (did you mean --data-dir?)"),
    (["sweep", "table6", "--seed", "2"], "--seed (did you mean --seeds?)"),
    (["evaluate", "run", "--tt", "flip"], "--tt (did you mean --tta?)"),
])
def test_an_abbreviated_or_misspelt_flag_is_refused_with_did_you_mean(argv, says, capsys):
    """Issue #26: abbreviations are refused (`--iteration` is not a prefix of `--iterations`),
    and an unknown flag gets the nearest known one, in one line, exit 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_every_parser_refuses_abbreviations():
    parser = build_parser()
    assert not parser.allow_abbrev
    assert all(not command.allow_abbrev for command in _subparsers(parser).values())


def test_an_h5py_write_error_on_a_read_only_mount_is_one_line_exit_1(tmp_path, monkeypatch,
                                                                      capsys):
    """Issue #38: `export` of a finished run on a read-only mount printed a 26-line h5py
    traceback: h5py's OSError has an errno but no filename, which the CLI did not map."""
    import h5py

    from cifar_resnet import __main__ as cli

    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(OSError) as raised:
            h5py.File(mount / "run.weights.h5", "w")  # what export's save_weights meets there
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)

    def export(args):
        raise raised.value

    monkeypatch.setattr(cli, "_export", export)
    assert main(["export", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: [Errno 30] Unable to ")
    assert str(mount / "run.weights.h5") in err[0] and "Read-only file system" in err[0]
