"""What a trained run is read back with: its own data and its own checkpoints, both checked.

`evaluate`, `export`, `report` and the notebooks rebuild a run's test split and load its
checkpoints long after training, often in another shell or on another machine:

- `load_splits` reads the data the run's `data.json` names (where it was read from, and the
  SHA-256 of its content, `spec/dataid.py`), or the data at `data_dir` when one is given, and
  refuses data whose content is not the run's: a run is only evaluated on what it trained on.
- `load_checkpoint` loads a `.keras` file and refuses, in one line, a damaged file (a
  truncated one is named as damaged, not as missing) and a file that holds another net than
  the run's `config.json` describes (a checkpoint copied in from another run).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import zipfile
from typing import Optional

import keras

from cifar_resnet.spec import config as config_lib, dataid, datasets, rundir

# Where a relative data_dir of a config.json is also tried: runs are made from the repository
# root, while notebooks run in notebooks/.
_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _recorded(run_dir) -> Optional[dict]:
    """data.json of the run, or None when it has none or it cannot be read (an old run)."""
    try:
        record = dataid.read(run_dir)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _places(config: config_lib.Config, record: Optional[dict], data_dir) -> list[tuple]:
    """(place, what it is) to look for the run's data, in order; a place None is the default
    search (`$CIFAR10_DIR`, then the Keras cache)."""
    if data_dir is not None:
        return [(str(data_dir), "--data-dir")]
    places = []
    if record and record.get("source"):
        places.append((record["source"], f"its {rundir.DATA}"))
    if config.data_dir:
        given = pathlib.Path(config.data_dir).expanduser()
        if not given.exists() and not given.is_absolute() and (_ROOT / given).exists():
            given = _ROOT / given
        places.append((str(given), f"its {rundir.CONFIG}"))
    else:
        places.append((None, "the default places"))
    return places


def load_splits(run_dir, config: config_lib.Config, data_dir=None) -> datasets.Splits:
    """The run's splits, read from the data it was trained on.

    Args:
        run_dir: The run directory (its `data.json` names the data's source and content).
        config: The run's config (`config.json`).
        data_dir: A folder or archive to read instead of the recorded one (`--data-dir`).

    Returns:
        `datasets.load_splits(config, place)` for the first place that holds the data: `data_dir`
        if given, else the source `data.json` records, else the config's `data_dir` or the
        default search (`$CIFAR10_DIR`, the Keras cache; as training).

    Raises:
        DataError: in one line, when no place holds the data (naming each place and
            `--data-dir`), or when the data found is not the content the run recorded.
    """
    record = _recorded(run_dir)
    release = datasets.DATASETS[config.dataset].release
    if release is None:  # generated from the config: nothing to find
        splits, place = datasets.load_splits(config), None
    else:
        found, missed = None, []
        for place, what in _places(config, record, data_dir):
            try:
                # Only the default search may download (as training does), and only for a run
                # that recorded no source: the official archive is rarely a moved copy.
                found = datasets.find(release, place, download=place is None and not (
                    record and record.get("source")))
            except datasets.DataError as e:
                missed.append(f"not at {place} ({what})" if place is not None
                              else str(e).split(";")[0])
                continue
            break
        if found is None:
            raise datasets.DataError(
                f"{release.title} of the run {run_dir} not found: {'; '.join(missed)}; pass "
                "--data-dir DIR, the folder or archive it was trained on")
        splits, place = datasets.load_splits(config, str(found)), found
    if record and record.get("sha256"):
        now = dataid.fingerprint(config.dataset, splits.train, splits.test, splits.val)
        if now != record["sha256"]:
            where = f" at {place}" if place is not None else ""
            raise datasets.DataError(
                f"the {config.dataset} data{where} is {dataid.short(now)}, not the "
                f"{dataid.short(record['sha256'])} the run {run_dir} was trained on "
                f"({rundir.DATA}); pass --data-dir DIR with the data it was trained on")
    return splits


def _describe(model: keras.Model) -> str:
    """A net as people tell nets apart: its name, classes and trainable parameters (the count
    training prints and metrics.json records)."""
    params = sum(math.prod(w.shape) for w in model.trainable_weights)
    return f"{model.name} ({model.output_shape[-1]} classes, {params:,} parameters)"


def load_checkpoint(path, config: config_lib.Config, error=config_lib.ConfigError) -> keras.Model:
    """A run's `.keras` checkpoint, checked against the net its config describes.

    Args:
        path: The checkpoint (`final.keras`, `best.keras`).
        config: The run's config; a net built from it must have the checkpoint's layer
            structure (the shapes of every weight, in order).
        error: The exception class to raise (a ConfigError: exit status 2).

    Raises:
        error: in one line, when the file is missing, damaged (not a readable `.keras` archive:
            truncated or overwritten), or holds another net than the config describes.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise error(f"{path} not found")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras reports a truncated archive as "File not found"
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            why = "not a .keras archive: truncated or overwritten"
        else:
            why = " ".join(str(e).split())[:160] or type(e).__name__
        raise error(f"{path} is damaged ({size:,} bytes; {why}); restore it, or retrain the run "
                    "into a new --workdir") from None
    from cifar_resnet.run import build  # TensorFlow-side; the importer already has Keras
    expected = build.build_net(dataclasses.replace(config, precision="float32"))
    shapes = [tuple(w.shape) for w in model.weights]
    if shapes != [tuple(w.shape) for w in expected.weights]:
        config_file = pathlib.Path(path).parent / rundir.CONFIG
        raise error(f"{path} holds {_describe(model)}, not the {_describe(expected)} that "
                    f"{config_file} describes; was it copied from another run? Evaluate the run "
                    "it came from")
    return model
