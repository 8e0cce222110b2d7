"""Data sets as numpy arrays: the official files, read safely; synthetic data; splits; normalization
statistics. No TensorFlow: the tf.data input pipeline over these arrays is `pipeline`.

The recipe is He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2: "The
network inputs are 32x32 images, with the per-pixel mean subtracted"; for training, "4 pixels are
padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal
flip"; testing uses the original 32x32 image; hyper-parameters are chosen on a 45k/5k train/val
split of the 50k training images.

The raw data is the official "python version" of CIFAR-10: a `cifar-10-batches-py/` folder or the
`cifar-10-python.tar.gz` archive, read in place, never extracted: pickles through an unpickler
that accepts only the few numpy globals the official batches reference, archive members checked
for absolute paths, `..` and links, class counts checked. `make_synthetic` is a small,
learnable stand-in for tests and smoke runs without the real data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import pickle
import tarfile
import zlib
from typing import Optional

import numpy as np

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILE = "test_batch"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
NUM_CLASSES = 10
BATCH_SIZE = 10000  # images per official batch file
# A full-size batch must hold each class this many times (the official train batches: 937..1042,
# test: 1000 each); the small hand-made batches of tests are exempt.
CLASS_COUNT_RANGE = (900, 1100)
PAD = 4  # He et al. 2015 sec 4.2: "4 pixels are padded on each side".
NORMALIZATIONS = ("pixel_mean", "channel_std", "none")
DATASETS = ("cifar10", "synthetic")


class DataError(Exception):
    """A data problem the user must fix; the message is one line saying what and how."""


# ----------------------------------------------------------------------------------------------
# Finding and reading the official files.


def _keras_cache() -> pathlib.Path:
    # Resolved per call, not at import, so HOME / KERAS_HOME changes are honoured. Same rule as
    # keras.src.backend.config.keras_home().
    home = os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras"
    return pathlib.Path(home).expanduser() / "datasets"


def _locate(place: pathlib.Path) -> Optional[pathlib.Path]:
    """Returns the batches folder or archive that `place` is or directly holds, else None."""
    if place.is_file() or (place / TRAIN_FILES[0]).is_file():
        return place
    # The last candidate is where keras.datasets.cifar10.load_data() extracts its download.
    for candidate in (place / FOLDER_NAME, place / ARCHIVE_NAME,
                      place / "cifar-10-batches-py-target" / FOLDER_NAME):
        if candidate.exists():
            return candidate
    return None


def find_cifar10(data_dir=None, download: bool = True) -> pathlib.Path:
    """Finds CIFAR-10 in the official python format, downloading it if allowed.

    Only the first configured place is searched: `data_dir` if given, else `$CIFAR10_DIR` if set,
    else the Keras cache (`~/.keras/datasets`, or `$KERAS_HOME/datasets`). An explicit place that
    holds no data is an error, not a silent fall-back to some other copy. A place may be the
    `cifar-10-batches-py` folder, the `cifar-10-python.tar.gz` archive, or a directory holding
    either. Local copies are used as they are (no checksum, so rebuilt or converted copies work);
    only a download is verified against `OFFICIAL_SHA256`, and only into the Keras cache.

    Args:
        data_dir: Optional folder, archive, or directory holding either.
        download: Whether to download the official archive when the Keras cache has no copy.

    Returns:
        The path of the `cifar-10-batches-py` folder or of the archive.

    Raises:
        DataError: Nothing was found and it could not (or may not) be downloaded.
    """
    if data_dir is not None:
        place, origin = pathlib.Path(data_dir).expanduser(), "data_dir"
    elif os.environ.get("CIFAR10_DIR"):
        place, origin = pathlib.Path(os.environ["CIFAR10_DIR"]).expanduser(), "$CIFAR10_DIR"
    else:
        place, origin = _keras_cache(), "the Keras cache"
    found = _locate(place)
    if found is not None:
        return found
    looked = f"CIFAR-10 not found: looked for {FOLDER_NAME}/ or {ARCHIVE_NAME} in {origin} {place}"
    fix = "pass --data-dir DIR or set CIFAR10_DIR=DIR, where DIR holds one of them"
    if origin != "the Keras cache" or not download:
        raise DataError(f"{looked}; {fix}")
    try:
        import keras  # Deferred: only a download needs it.

        # Downloaded under another name, so that nothing unverified is ever found by _locate.
        part = pathlib.Path(keras.utils.get_file(ARCHIVE_NAME + ".part", origin=OFFICIAL_URL,
                                                 cache_dir=str(place.parent)))
    except Exception as e:  # urllib, OSError, ...
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{looked}, and downloading {OFFICIAL_URL} failed ({reason}); {fix}, "
                        "or check the network") from e
    return _accept_download(part, place / ARCHIVE_NAME)


def _accept_download(part: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Moves a verified download to `target`; a mismatch is kept aside as `<target>.bad`."""
    with open(part, "rb") as f:
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != OFFICIAL_SHA256:
        bad = target.with_name(target.name + ".bad")
        os.replace(part, bad)
        raise DataError(f"downloaded {OFFICIAL_URL} has SHA-256 {digest.hexdigest()}, not the "
                        f"official {OFFICIAL_SHA256}; refused it and kept it as {bad}; retry, "
                        "or pass --data-dir to a copy you trust")
    os.replace(part, target)
    return target


# The only globals the official batches (pickle protocol 2, numpy arrays) and numpy 2 pickles
# of the same structure reference. Anything else could run code, so it is refused. The callables
# are taken from numpy's public pickle protocol (`__reduce__`/`__reduce_ex__` name the functions
# that rebuild an array or scalar), not from numpy's private `_core` modules; the keys are the
# module paths numpy 1 (`numpy.core`) and numpy 2 (`numpy._core`) write into pickles.
_RECONSTRUCT = np.empty(0).__reduce__()[0]         # arrays, pickle protocols 0-4
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]      # arrays, pickle protocol 5
_SCALAR = np.int64(0).__reduce__()[0]              # numpy scalars, e.g. numpy ints in a list
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, str, numbers and numpy arrays, and nothing else."""

    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        return _SAFE_GLOBALS[module, name]


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def _read_batch(fileobj, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickles and validates one batch file; the only place that unpickles.

    Args:
        fileobj: Binary file object at the start of the pickle.
        name: The file's name, for error messages.

    Returns:
        `(images, labels)`: uint8 (N, 32, 32, 3) NHWC and int64 (N,).

    Raises:
        DataError: The file is not a valid CIFAR-10 batch.
    """
    try:
        batch = _BatchUnpickler(fileobj, encoding="bytes").load()
    except _RefusedGlobal as e:
        raise DataError(f"{name}: refused to unpickle global {e}: a CIFAR-10 batch holds only "
                        "dicts, bytes, int lists and uint8 arrays; replace the file") from None
    except Exception as e:  # Truncated or garbage files raise many different types.
        reason = " ".join(str(e).split())  # one line, whatever the unpickler said
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({type(e).__name__}: {reason}); "
                        "replace the file") from e
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a dict, got {type(batch).__name__}; replace the file")
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise DataError(f"{name}: b'data' must be uint8 of shape (N, 3072), got {got}")
    labels = np.asarray(labels if isinstance(labels, (list, tuple, np.ndarray)) else [labels])
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{name}: b'labels' must be {len(data)} ints, got {labels.dtype} "
                        f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: labels must be in 0..{NUM_CLASSES - 1}, got "
                        f"{labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    low, high = CLASS_COUNT_RANGE
    if len(labels) == BATCH_SIZE and not low <= counts.min() <= counts.max() <= high:
        raise DataError(f"{name}: class counts {counts.tolist()} outside {low}..{high} per class "
                        "for a full-size batch; replace the file")
    # Each row is the R, G and B planes in turn, each 32x32 row-major: CHW.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def _read_batches(source: pathlib.Path) -> dict:
    """Reads the six batches from a folder, or from an archive without extracting it."""
    wanted = (*TRAIN_FILES, TEST_FILE)
    batches = {}
    if source.is_dir():
        for name in wanted:
            if (source / name).is_file():
                with open(source / name, "rb") as f:
                    batches[name] = _read_batch(f, str(source / name))
    else:
        try:
            # One sequential pass: seeking backwards in a .gz means decompressing again.
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    _check_member(source, member)
                    name = pathlib.PurePosixPath(member.name).name
                    if member.isfile() and name in wanted and name not in batches:
                        batches[name] = _read_batch(tar.extractfile(member),
                                                    f"{source}:{member.name}")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            # tarfile's "could not be opened" lists every method it tried, one per line.
            reason = ("not a tar archive (plain, gzip, bzip2 or xz)"
                      if isinstance(e, tarfile.ReadError) and "opened successfully" in str(e)
                      else " ".join(str(e).split()) or type(e).__name__)
            raise DataError(f"{source}: unreadable archive ({reason}); replace it or pass "
                            "--data-dir to another copy") from e
    missing = [name for name in wanted if name not in batches]
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)}; expected the official "
                        f"{FOLDER_NAME} files")
    return batches


def _check_member(source, member: tarfile.TarInfo) -> None:
    """Refuses archive members that could reach outside the folder: absolute, `..`, links."""
    path = pathlib.PurePosixPath(member.name)
    problem = ("an absolute path" if path.is_absolute() or member.name.startswith("\\")
               else "a '..' path" if ".." in path.parts
               else "a link or device" if member.issym() or member.islnk() or member.isdev()
               else None)
    if problem:
        raise DataError(f"{source}: refusing archive member {member.name!r} ({problem}); the "
                        "official archive has none: replace it")


def load_cifar10(data_dir=None, download: bool = True):
    """Loads CIFAR-10 from the official python-format files, in their original order.

    Args:
        data_dir: Where to look; see `find_cifar10` for the resolution order.
        download: Whether a missing copy may be downloaded into the Keras cache.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 (N, 32, 32, 3) images and int64 (N,)
        labels.

    Raises:
        DataError: The data is missing, corrupt or malformed.
    """
    batches = _read_batches(find_cifar10(data_dir, download=download))
    x_train = np.concatenate([batches[name][0] for name in TRAIN_FILES])
    y_train = np.concatenate([batches[name][1] for name in TRAIN_FILES])
    return (x_train, y_train), batches[TEST_FILE]


# ----------------------------------------------------------------------------------------------
# Synthetic stand-in.


def _smooth_noise(rng, n, size, cells):
    """Returns (n, size, size, 3) Gaussian noise on a cells x cells grid, bilinearly upsampled."""
    coarse = rng.standard_normal((n, cells, cells, 3))
    t = np.linspace(0, cells - 1, size)
    lo = np.minimum(t.astype(int), cells - 2)
    w = (t - lo)[:, None]
    rows = coarse[:, lo] * (1 - w[:, None]) + coarse[:, lo + 1] * w[:, None]
    return rows[:, :, lo] * (1 - w) + rows[:, :, lo + 1] * w


def make_synthetic(num_train=2048, num_test=512, num_classes=NUM_CLASSES, seed=0):
    """Makes a small CIFAR-shaped problem that a tiny net learns well above chance in a few steps.

    Each class has a fixed random pattern: a mean colour, a smooth colour field and coloured
    stripes at a class-specific angle. An image is a random 32x32 window of its class pattern
    (shifts of up to 8 pixels) plus per-image brightness and per-pixel noise, so it is
    neither trivial nor pure noise.

    Args:
        num_train: Number of training images.
        num_test: Number of test images.
        num_classes: Number of classes; class counts differ by at most one.
        seed: Everything is a deterministic function of it.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, like `load_cifar10`.
    """
    rng = np.random.default_rng(seed)
    size = 32 + 2 * PAD
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    angle = np.pi * (np.arange(num_classes) + rng.uniform(size=num_classes)) / num_classes
    waves = np.sin(2 * np.pi / 8 * (np.cos(angle)[:, None, None] * ii
                                    + np.sin(angle)[:, None, None] * jj))
    patterns = (rng.uniform(-1, 1, (num_classes, 1, 1, 3))
                + 0.7 * _smooth_noise(rng, num_classes, size, 4)
                + waves[..., None] * rng.uniform(-1, 1, (num_classes, 1, 1, 3)))
    patterns = (128 + 40 * patterns).astype(np.float32)

    def sample(n):
        labels = rng.permutation(np.arange(n) % num_classes)
        top, left = rng.integers(0, 2 * PAD + 1, (2, n, 1))
        rows, cols = top + np.arange(32), left + np.arange(32)
        images = patterns[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
        images += rng.normal(0, 20, (n, 1, 1, 1)).astype(np.float32)
        images += rng.normal(0, 30, images.shape).astype(np.float32)
        return np.clip(images, 0, 255).round().astype(np.uint8), labels.astype(np.int64)

    return sample(num_train), sample(num_test)


# ----------------------------------------------------------------------------------------------
# Splits and normalization.


def split_validation(x, y, val_size=5000):
    """Holds out the LAST `val_size` training images for validation (He et al.'s 45k/5k split).

    The split takes the tail rather than a random subset so that every run and model is selected
    on the same images, with no seed to track. CIFAR-10's training order is already random.

    Args:
        x: Training images.
        y: Training labels.
        val_size: Number of held-out images, 0 <= val_size < len(x).

    Returns:
        `((x_train, y_train), (x_val, y_val))`, views of the inputs; `((x, y), None)` when
        `val_size` is 0.

    Raises:
        DataError: `val_size` is out of range, or `x` and `y` differ in length.
    """
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels")
    if not 0 <= val_size < len(x):
        raise DataError(f"val_size must be in [0, {len(x)}) for {len(x)} training images, "
                        f"got {val_size}")
    if val_size == 0:
        return (x, y), None
    cut = len(x) - val_size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def compute_normalization(x_train, mode="pixel_mean"):
    """Computes normalization statistics; pass only the training split, never test images.

    Every mode works on pixels scaled to [0, 1]: the model input is `(x / 255 - mean) / std`.

    Args:
        x_train: uint8 training images (N, H, W, C).
        mode: "pixel_mean": the per-pixel mean image and std 1 (He et al. 2015 sec 4.2).
            "channel_std": per-channel mean and std (fb.resnet.torch). "none": mean 0, std 1.

    Returns:
        `(mean, std)`, float32 arrays broadcastable to (H, W, C).

    Raises:
        ValueError: `mode` is unknown.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; valid: {', '.join(NORMALIZATIONS)}")
    x_train = np.asarray(x_train)
    channels = x_train.shape[-1]
    ones = np.ones((1, 1, channels), np.float32)
    if mode == "none":
        return np.zeros_like(ones), ones
    if mode == "pixel_mean":
        # float64 accumulation: a float32 running sum over 50k images drifts.
        return (x_train.mean(axis=0, dtype=np.float64) / 255).astype(np.float32), ones
    total, total_sq = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(x_train), 4096):  # Chunks: a float64 copy of 50k images is 1.2 GB.
        chunk = x_train[start:start + 4096].reshape(-1, channels) / 255
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    count = x_train.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.reshape(1, 1, -1).astype(np.float32), std.reshape(1, 1, -1).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields is ambiguous.
class Splits:
    """In-memory splits, and normalization statistics of the training split.

    Attributes:
        train: `(x, y)`, uint8 images and int64 labels.
        val: `(x, y)` held out from the end of the training set, or None.
        test: `(x, y)`.
        mean: Normalization mean, computed on `train` only.
        std: Normalization std, computed on `train` only.
        num_classes: Number of classes.
    """

    train: tuple
    val: Optional[tuple]
    test: tuple
    mean: np.ndarray
    std: np.ndarray
    num_classes: int


def load_dataset(name, data_dir=None, val_fraction=0.1, normalization="pixel_mean",
                 synthetic_size=(2048, 512), seed=0) -> Splits:
    """Loads a dataset, holds out the validation split and computes training statistics.

    Args:
        name: "cifar10" or "synthetic".
        data_dir: Where CIFAR-10 is; see `find_cifar10`.
        val_fraction: Fraction of the training images held out from the end for model
            selection (He et al. 2015: 5k of 50k, 0.1).
        normalization: A mode of `compute_normalization`.
        synthetic_size: `(num_train, num_test)` for "synthetic".
        seed: Seed of the synthetic data.

    Returns:
        The `Splits`; mean and std come from the training split after the hold-out.

    Raises:
        ValueError: `name` or `normalization` is unknown.
        DataError: The data cannot be loaded, or the validation size is out of range.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if normalization not in NORMALIZATIONS:  # Fail before a slow load, not after.
        raise ValueError(f"unknown normalization {normalization!r}; valid: "
                         f"{', '.join(NORMALIZATIONS)}")
    if name == "cifar10":
        train, test = load_cifar10(data_dir)
    else:
        train, test = make_synthetic(*synthetic_size, seed=seed)
    train, val = split_validation(*train, val_size=round(val_fraction * len(train[0])))
    mean, std = compute_normalization(train[0], normalization)
    return Splits(train, val, test, mean, std, NUM_CLASSES)
