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
import os
import pathlib
import pickle
import tarfile
import zlib
from typing import Optional

import numpy as np

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec import files

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
IMAGE_BYTES = 32 * 32 * 3  # one image's row of b'data', uint8
# A full-size batch must hold each class this many times (the official train batches: 937..1042,
# test: 1000 each); the small hand-made batches of tests are exempt.
CLASS_COUNT_RANGE = (900, 1100)
PAD = 4  # He et al. 2015 sec 4.2: "4 pixels are padded on each side".
NORMALIZATIONS = ("pixel_mean", "channel_std", "none")

# CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html): 100 classes ("fine" labels) grouped in
# 20 superclasses ("coarse" labels), 500 training and 100 test images per class. The official
# page gives the archive's MD5, eb9058c3a382ffc7106e4002c42a8d85; the SHA-256 below is the one
# keras.datasets.cifar100.load_data and torchvision's prototype Cifar100 verify the same archive
# against (not computed here: this project has no network).
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
# The official meta file's names, in label order.
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
CIFAR100_COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")


@dataclasses.dataclass(frozen=True)
class Release:
    """An official "python version" release of a CIFAR data set: where it is found, how it reads.

    Attributes:
        title: For messages, e.g. "CIFAR-10".
        folder: The archive's top folder, e.g. "cifar-10-batches-py".
        archive: The archive's file name.
        url: The official download.
        sha256: The official archive's SHA-256; a download must match it.
        env: The environment variable that may name a place holding the data.
        train_files: The training files, in order.
        test_file: The test file.
        label_keys: Label mode -> the key of the labels in each file.
        full_sizes: File -> its image count in the official release; a file of that size must
            hold every class `count_tolerance` of equally often (hand-made small files are exempt).
        count_tolerance: Allowed relative deviation of a class count from the mean.
        meta_file: The file naming the classes (checked against the registry), or None.
        meta_keys: Label mode -> the key of the class names in `meta_file`.
    """

    title: str
    folder: str
    archive: str
    url: str
    sha256: str
    env: str
    train_files: tuple
    test_file: str
    label_keys: dict
    full_sizes: dict
    count_tolerance: float
    meta_file: Optional[str] = None
    meta_keys: dict = dataclasses.field(default_factory=dict)


CIFAR10 = Release(
    "CIFAR-10", FOLDER_NAME, ARCHIVE_NAME, OFFICIAL_URL, OFFICIAL_SHA256, "CIFAR10_DIR",
    TRAIN_FILES, TEST_FILE, {"fine": b"labels"},
    {name: BATCH_SIZE for name in (*TRAIN_FILES, TEST_FILE)}, 0.1)
CIFAR100 = Release(
    "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", CIFAR100_URL, CIFAR100_SHA256,
    "CIFAR100_DIR", ("train",), "test", {"fine": b"fine_labels", "coarse": b"coarse_labels"},
    {"train": 50000, "test": 10000}, 0.0, meta_file="meta",
    meta_keys={"fine": b"fine_label_names", "coarse": b"coarse_label_names"})


class DataError(Exception):
    """A data problem the user must fix; the message is one line saying what and how."""


# ----------------------------------------------------------------------------------------------
# Finding and reading the official files.


def _keras_cache() -> pathlib.Path:
    # Resolved per call, not at import, so HOME / KERAS_HOME changes are honoured. Same rule as
    # keras.src.backend.config.keras_home().
    home = os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras"
    return pathlib.Path(home).expanduser() / "datasets"


def _locate(place: pathlib.Path, release: Release = CIFAR10) -> Optional[pathlib.Path]:
    """Returns the release's folder or archive that `place` is or directly holds, else None."""
    if place.is_file() or (place / release.train_files[0]).is_file():
        return place
    # The last candidate is where keras.datasets' load_data() extracts its download.
    for candidate in (place / release.folder, place / release.archive,
                      place / f"{release.folder}-target" / release.folder):
        if candidate.exists():
            return candidate
    return None


def find(release: Release, data_dir=None, download: bool = True) -> pathlib.Path:
    """Finds an official release in its python format, downloading it if allowed.

    Only the first configured place is searched: `data_dir` if given, else the release's
    environment variable (`$CIFAR10_DIR`, `$CIFAR100_DIR`) if set, else the Keras cache
    (`~/.keras/datasets`, or `$KERAS_HOME/datasets`). An explicit place that holds no data is an
    error, not a silent fall-back to some other copy. A place may be the release's folder (e.g.
    `cifar-10-batches-py`), its archive (`cifar-10-python.tar.gz`), or a directory holding
    either. Local copies are used as they are (no checksum, so rebuilt or converted copies work);
    only a download is verified against the release's SHA-256, and only into the Keras cache.

    Args:
        release: `CIFAR10` or `CIFAR100`.
        data_dir: Optional folder, archive, or directory holding either.
        download: Whether to download the official archive when the Keras cache has no copy.

    Returns:
        The path of the release's folder or of its archive.

    Raises:
        DataError: Nothing was found and it could not (or may not) be downloaded.
    """
    if data_dir is not None:
        place, origin = pathlib.Path(data_dir).expanduser(), "data_dir"
    elif os.environ.get(release.env):
        place, origin = pathlib.Path(os.environ[release.env]).expanduser(), f"${release.env}"
    else:
        place, origin = _keras_cache(), "the Keras cache"
    found = _locate(place, release)
    if found is not None:
        return found
    looked = (f"{release.title} not found: looked for {release.folder}/ or {release.archive} in "
              f"{origin} {place}")
    fix = f"pass --data-dir DIR or set {release.env}=DIR, where DIR holds one of them"
    if origin != "the Keras cache" or not download:
        raise DataError(f"{looked}; {fix}")
    # Downloaded under another name, so that nothing unverified is ever found by _locate.
    part = place / (release.archive + ".part")
    try:
        _download(release.url, part)
    except Exception as e:  # urllib, OSError, ...
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{looked}, and downloading {release.url} failed ({reason}); {fix}, "
                        "or check the network") from e
    return _accept_download(part, place / release.archive, release)


def find_cifar10(data_dir=None, download: bool = True) -> pathlib.Path:
    """`find(CIFAR10, ...)`: the `cifar-10-batches-py` folder or `cifar-10-python.tar.gz`."""
    return find(CIFAR10, data_dir, download)


def _download(url: str, part: pathlib.Path) -> None:
    """Fetches `url` into `part` (urllib: no TensorFlow or Keras needed)."""
    import shutil
    import urllib.request

    part.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def _accept_download(part: pathlib.Path, target: pathlib.Path,
                     release: Release = CIFAR10) -> pathlib.Path:
    """Moves a verified download to `target`; a mismatch is kept aside as `<target>.bad`."""
    digest = files.sha256(part)
    if digest != release.sha256:
        bad = target.with_name(target.name + ".bad")
        os.replace(part, bad)
        raise DataError(f"downloaded {release.url} has SHA-256 {digest}, not the "
                        f"official {release.sha256}; refused it and kept it as {bad}; retry, "
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


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as pickle protocols 0-2 of Python 3 use it for bytes: latin-1 only.

    `pickle.dumps(b"...", protocol=2)` writes `_codecs.encode("...", "latin1")`; a CIFAR file
    written that way (rather than by Python 2, as the official ones) needs nothing more.
    """
    if (not isinstance(text, str) or encoding not in ("latin1", "latin-1")
            or errors != "strict"):
        raise _RefusedGlobal(f"_codecs.encode with encoding {encoding!r} (only 'latin1' "
                             "is allowed, as pickle writes bytes)")
    return text.encode("latin1")


_SAFE_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,  # bytes in pickle protocols 0-2 (Python 3)
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


# The globals that make an array of a shape the pickle names: called directly, they allocate
# that shape before anything else sees it (a 147-byte file can ask `ndarray((10**6, 3072))`,
# issue #38). The official files never do: their arrays are `_reconstruct(ndarray, (0,), b'b')`
# filled by `__setstate__` from bytes in the file, which numpy checks against the shape.
_SIZED = {_RECONSTRUCT: 1, _FROMBUFFER: 2, np.ndarray: 0}  # callable -> index of the shape


def _requested_bytes(shape, dtype) -> int:
    """Bytes an array of `shape` and `dtype` takes, computed without making it.

    Raises:
        _TooLarge: `shape` is not a whole number or a tuple of them, or `dtype` is not a dtype.
    """
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
               for d in dims):
        raise _TooLarge(f"an array shape {str(shape)[:40]} that is not whole numbers")
    try:
        itemsize = np.dtype(dtype).itemsize
    except Exception:
        raise _TooLarge(f"an array of an unknown dtype {str(dtype)[:40]}") from None
    total = itemsize
    for d in dims:
        total *= int(d)
    return total


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, str, numbers and numpy arrays, and nothing else.

    Every array the pickle asks numpy to make is sized before it is made, and all of them
    together may take at most `max_array_bytes` (`_array_budget`).
    """

    def __init__(self, fileobj, max_array_bytes: int, **kwargs):
        super().__init__(fileobj, **kwargs)
        self.budget = max_array_bytes

    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        found = _SAFE_GLOBALS[module, name]
        if found not in _SIZED:
            return found
        if found is np.ndarray:
            # Also `_reconstruct`'s first argument, which must be the class itself: a
            # subclass keeps `isinstance` and the constructor's arguments are checked.
            return _CheckedArray.bind(self)
        return lambda *args: self._make(found, *args)

    def _charge(self, shape, dtype) -> None:
        needed = _requested_bytes(shape, dtype)
        if needed > self.budget:
            raise _TooLarge(f"it asks for an array of {needed:,} bytes, more than the "
                            f"{self.budget:,} its file can hold")
        self.budget -= needed

    def _make(self, function, *args):
        if function is _RECONSTRUCT:  # (subtype, shape, dtype)
            if len(args) != 3 or not (isinstance(args[0], type)
                                      and issubclass(args[0], _CheckedArray)):
                raise _RefusedGlobal("numpy _reconstruct of anything but numpy.ndarray")
            self._charge(args[1], args[2])
            return function(np.ndarray, *args[1:])
        # _frombuffer(buffer, dtype, shape, order): a view of the file's bytes, sized anyway.
        if len(args) != 4:
            raise _RefusedGlobal("numpy _frombuffer with unexpected arguments")
        self._charge(args[2], args[1])
        return function(*args)


class _CheckedArray(np.ndarray):
    """`numpy.ndarray` as the batch unpickler hands it out: calling it sizes the array against
    the unpickler's budget first; as `_reconstruct`'s subtype it stands for `numpy.ndarray`."""

    _unpickler = None

    @classmethod
    def bind(cls, unpickler):
        return type("ndarray", (cls,), {"_unpickler": unpickler})

    def __new__(cls, shape, dtype=float, *args, **kwargs):
        cls._unpickler._charge(shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)


class _RefusedGlobal(pickle.UnpicklingError):
    pass


# Items (containers and what they hold, counted as a tree: a list shared twice counts twice)
# one file may expand to. The largest official file, CIFAR-100's train, holds about 150k (50k
# fine and 50k coarse labels, 50k file names); a few nested shared lists in a 200-byte pickle
# can expand to 2**24 or more, which numpy would build before any length check (issue #25).
MAX_PICKLE_ITEMS = 1_000_000


class _TooLarge(Exception):
    pass


def _expanded_size(obj, budget: int = MAX_PICKLE_ITEMS) -> int:
    """Items of `obj` expanded as a tree, counted on the shared graph without expanding it.

    Each container is visited once (its expanded size memoized by identity), so a bomb of
    nested shared lists costs its pickle's size to count, not its expansion.

    Raises:
        _TooLarge: the count passes `budget`, or a container holds itself.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(x) -> int:
        if not isinstance(x, (list, tuple, dict, set, frozenset)):
            return 1
        key = id(x)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge("a container holds itself")
        active.add(key)
        children = (item for pair in x.items() for item in pair) if isinstance(x, dict) else x
        total = 1
        for child in children:
            total += size(child)
            if total > budget:
                raise _TooLarge(f"its containers expand to more than {budget:,} items")
        active.discard(key)
        sizes[key] = total
        return total

    return size(obj)


def _array_budget(release: Release, file_size: Optional[int] = None) -> int:
    """The most bytes the arrays of one file of `release` may take: its largest official
    file's images (CIFAR-10: 10,000 x 3,072), with room for int64 labels; at most the file's
    own size, when known, since an array's data must come from the file."""
    official = max(release.full_sizes.values()) * (IMAGE_BYTES + 2 * 8)
    return official if file_size is None else min(official, file_size)


def _unpickle(fileobj, name: str, release: Release, file_size: Optional[int] = None):
    """Unpickles one official file with `_BatchUnpickler`; the only place that unpickles.

    Only allowed globals are called, each array is sized against `_array_budget` before numpy
    allocates it, and the result's containers are counted (as `_expanded_size`) before anything
    expands them.
    """
    try:
        obj = _BatchUnpickler(fileobj, _array_budget(release, file_size),
                              encoding="bytes").load()
        _expanded_size(obj)
        return obj
    except _TooLarge as e:
        raise DataError(f"{name}: refused: {e} (a {release.title} file is a dict of a uint8 "
                        "array and flat lists); replace the file") from None
    except RecursionError:
        raise DataError(f"{name}: refused: containers nested too deeply for a "
                        f"{release.title} file; replace the file") from None
    except _RefusedGlobal as e:
        raise DataError(f"{name}: refused to unpickle global {e}: a {release.title} file holds "
                        "only dicts, bytes, int lists and uint8 arrays; replace the file") from None
    except Exception as e:  # Truncated or garbage files raise many different types.
        reason = " ".join(str(e).split())  # one line, whatever the unpickler said
        raise DataError(f"{name}: not a readable {release.title} batch ({type(e).__name__}: "
                        f"{reason}); replace the file") from e


def _read_batch(fileobj, name: str, release: Release = CIFAR10, label_mode: str = "fine",
                num_classes: int = NUM_CLASSES,
                file_size: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpickles and validates one batch file.

    Args:
        fileobj: Binary file object at the start of the pickle.
        name: The file's name, for error messages.
        release: The release the file belongs to (its label keys, sizes and class counts).
        label_mode: Which labels to read ("fine"; CIFAR-100 also "coarse").
        num_classes: Labels must lie in 0..num_classes-1.
        file_size: The file's size in bytes, when known: its arrays can be no larger.

    Returns:
        `(images, labels)`: uint8 (N, 32, 32, 3) NHWC and int64 (N,).

    Raises:
        DataError: The file is not a valid batch of the release.
    """
    batch = _unpickle(fileobj, name, release, file_size)
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a dict, got {type(batch).__name__}; replace the file")
    key = release.label_keys[label_mode]
    data, labels = batch.get(b"data"), batch.get(key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise DataError(f"{name}: b'data' must be uint8 of shape (N, 3072), got {got}")
    labels = np.asarray(labels if isinstance(labels, (list, tuple, np.ndarray)) else [labels])
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{name}: {key!r} must be {len(data)} ints, got {labels.dtype} "
                        f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{name}: labels must be in 0..{num_classes - 1}, got "
                        f"{labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=num_classes)
    full = release.full_sizes.get(pathlib.PurePosixPath(name).name)
    if len(labels) == full:
        mean = full / num_classes
        low = round(mean * (1 - release.count_tolerance))
        high = round(mean * (1 + release.count_tolerance))
        if not low <= counts.min() <= counts.max() <= high:
            raise DataError(f"{name}: class counts {counts.tolist()} outside {low}..{high} per "
                            "class for a full-size batch; replace the file")
    # Each row is the R, G and B planes in turn, each 32x32 row-major: CHW.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def _check_meta(fileobj, name: str, release: Release, label_mode: str, class_names,
                file_size: Optional[int] = None) -> None:
    """Checks that the release's meta file names the classes as the registry does."""
    meta = _unpickle(fileobj, name, release, file_size)
    names = meta.get(release.meta_keys[label_mode]) if isinstance(meta, dict) else None
    names = tuple(n.decode() if isinstance(n, bytes) else n for n in names or ())
    if names != tuple(class_names):
        raise DataError(f"{name}: {release.meta_keys[label_mode]!r} does not name the "
                        f"{len(class_names)} official {release.title} classes in order; "
                        "replace the file")


def _read_batches(source: pathlib.Path, release: Release = CIFAR10, label_mode: str = "fine",
                  class_names=CLASS_NAMES) -> dict:
    """Reads the release's files from a folder, or from an archive without extracting it."""
    wanted = (*release.train_files, release.test_file)
    batches, seen_meta = {}, False

    def read(fileobj, name, path, size):
        nonlocal seen_meta
        if name == release.meta_file:
            _check_meta(fileobj, path, release, label_mode, class_names, size)
            seen_meta = True
        else:
            batches[name] = _read_batch(fileobj, path, release, label_mode, len(class_names),
                                        size)

    if source.is_dir():
        for name in (*wanted, *([release.meta_file] if release.meta_file else [])):
            if (source / name).is_file():
                with open(source / name, "rb") as f:
                    read(f, name, str(source / name), os.fstat(f.fileno()).st_size)
    else:
        try:
            # One sequential pass: seeking backwards in a .gz means decompressing again.
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    _check_member(source, member)
                    name = pathlib.PurePosixPath(member.name).name
                    if member.isfile() and (name in wanted and name not in batches
                                            or name == release.meta_file and not seen_meta):
                        read(tar.extractfile(member), name, f"{source}:{member.name}",
                             member.size)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            # tarfile's "could not be opened" lists every method it tried, one per line.
            reason = ("not a tar archive (plain, gzip, bzip2 or xz)"
                      if isinstance(e, tarfile.ReadError) and "opened successfully" in str(e)
                      else " ".join(str(e).split()) or type(e).__name__)
            raise DataError(f"{source}: unreadable archive ({reason}); replace it or pass "
                            "--data-dir to another copy") from e
    missing = [name for name in wanted if name not in batches]
    if release.meta_file and not seen_meta:
        missing.append(release.meta_file)
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)}; expected the official "
                        f"{release.folder} files")
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


def load_official(release: Release, data_dir=None, download: bool = True,
                  label_mode: str = "fine", class_names=CLASS_NAMES):
    """Loads an official release from its python-format files, in their original order.

    Args:
        release: `CIFAR10` or `CIFAR100`.
        data_dir: Where to look; see `find` for the resolution order.
        download: Whether a missing copy may be downloaded into the Keras cache.
        label_mode: A key of `release.label_keys`.
        class_names: The classes of `label_mode`, in label order.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 (N, 32, 32, 3) images and int64 (N,)
        labels.

    Raises:
        DataError: The data is missing, corrupt or malformed.
    """
    batches = _read_batches(find(release, data_dir, download=download), release, label_mode,
                            class_names)
    x_train = np.concatenate([batches[name][0] for name in release.train_files])
    y_train = np.concatenate([batches[name][1] for name in release.train_files])
    return (x_train, y_train), batches[release.test_file]


def load_cifar10(data_dir=None, download: bool = True):
    """Loads CIFAR-10 (`load_official(CIFAR10, ...)`); see `find` for where it looks."""
    return load_official(CIFAR10, data_dir, download)


def load_cifar100(data_dir=None, download: bool = True, label_mode: str = "fine"):
    """Loads CIFAR-100 with its 100 "fine" or 20 "coarse" labels; see `find`."""
    return load_official(CIFAR100, data_dir, download, label_mode,
                         DATASETS["cifar100"].class_names[label_mode])


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
    check_choice("normalization", mode, NORMALIZATIONS)
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
        key: The settings `load_splits` read them for (`splits_key`), or None.
    """

    train: tuple
    val: Optional[tuple]
    test: tuple
    mean: np.ndarray
    std: np.ndarray
    num_classes: int
    key: Optional[tuple] = None


# ----------------------------------------------------------------------------------------------
# The registry: one entry per data set.


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One data set of the registry: its classes, and where its images come from.

    Attributes:
        name: The config's `dataset` value.
        class_names: Label mode -> class names in label order ("fine"; CIFAR-100 also
            "coarse", its 20 superclasses). `num_classes` follows from them.
        release: The official files (URL, SHA-256, layout), or None for generated data.
    """

    name: str
    class_names: dict
    release: Optional[Release]

    @property
    def label_modes(self) -> tuple:
        return tuple(self.class_names)

    def num_classes(self, label_mode: str = "fine") -> int:
        check_choice(f"label_mode of {self.name}", label_mode, self.label_modes)
        return len(self.class_names[label_mode])

    def load(self, data_dir=None, label_mode: str = "fine", synthetic_size=(2048, 512), seed=0,
             download: bool = True):
        """`((x_train, y_train), (x_test, y_test))` of this data set (see `load_official`)."""
        k = self.num_classes(label_mode)
        if self.release is None:
            return make_synthetic(*synthetic_size, num_classes=k, seed=seed)
        return load_official(self.release, data_dir, download, label_mode,
                             self.class_names[label_mode])


DATASETS = {
    "cifar10": Dataset("cifar10", {"fine": CLASS_NAMES}, CIFAR10),
    "cifar100": Dataset("cifar100", {"fine": CIFAR100_FINE_NAMES, "coarse": CIFAR100_COARSE_NAMES},
                        CIFAR100),
    "synthetic": Dataset("synthetic", {"fine": tuple(f"class{i}" for i in range(NUM_CLASSES))},
                         None),
}
LABEL_MODES = ("fine", "coarse")  # every label mode of the registry


def get(name: str) -> Dataset:
    """The registry entry `name`; ValueError naming the data sets otherwise."""
    check_choice("dataset", name, DATASETS)
    return DATASETS[name]


def load_dataset(name, data_dir=None, *, val_fraction, normalization="pixel_mean",
                 synthetic_size=(2048, 512), seed=0, label_mode="fine") -> Splits:
    """Loads a dataset, holds out the validation split and computes training statistics.

    Args:
        name: A key of `DATASETS`: "cifar10", "cifar100" or "synthetic".
        data_dir: Where the official files are; see `find`.
        val_fraction: Fraction of the training images held out from the end for model
            selection (He et al. 2015: 5k of 50k, 0.1).
        normalization: A mode of `compute_normalization`.
        synthetic_size: `(num_train, num_test)` for "synthetic".
        seed: Seed of the synthetic data.
        label_mode: "fine", or "coarse" for CIFAR-100's 20 superclasses.

    Returns:
        The `Splits`; mean and std come from the training split after the hold-out.

    Raises:
        ValueError: `name`, `normalization` or `label_mode` is unknown.
        DataError: The data cannot be loaded, or the validation size is out of range.
    """
    spec = get(name)
    check_choice("normalization", normalization, NORMALIZATIONS)  # before a slow load
    num_classes = spec.num_classes(label_mode)
    train, test = spec.load(data_dir, label_mode, synthetic_size, seed)
    train, val = split_validation(*train, val_size=round(val_fraction * len(train[0])))
    mean, std = compute_normalization(train[0], normalization)
    return Splits(train, val, test, mean, std, num_classes)


def splits_key(config) -> tuple:
    """The settings of a `config.Config` that decide its splits (where the files are read from
    does not: the data's content is checked by dataid.py)."""
    return (config.dataset, config.val_fraction, config.normalization,
            config.synthetic_train, config.synthetic_test, config.seed, config.label_mode)


def load_splits(config, data_dir=None) -> Splits:
    """The data of a `config.Config`'s run: its splits and training-set statistics, the same
    every time. Reads no TensorFlow, so the command line refuses a bad data file before that
    slow import.

    Training, `evaluate` and `analysis` all rebuild a run's data through this one call.
    `data_dir` replaces `config.data_dir` (e.g. a path made relative to another folder).
    """
    splits = load_dataset(config.dataset, data_dir=data_dir or config.data_dir,
                          val_fraction=config.val_fraction,
                          normalization=config.normalization,
                          synthetic_size=(config.synthetic_train, config.synthetic_test),
                          seed=config.seed, label_mode=config.label_mode)
    return dataclasses.replace(splits, key=splits_key(config))
