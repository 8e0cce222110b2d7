"""Trained weights shipped with the package, loaded the way `keras.applications` loads its own.

`resnet_v1(depth=20, weights="cifar10")` builds He et al. 2015's ResNet-20 (section 4.2, option-A
shortcuts, the "paper" preset; `depth=56` its ResNet-56, `plain=True` the plain net of either
depth) and loads the final weights of this project's full-length run of the paper's recipe
(64k iterations, `make full-repro`, docs/full-repro); `weights="path/to/file.weights.h5"` loads
any weights file of the same net. The shipped files are float32 `.weights.h5` files in
`cifar_resnet/nets/weights/`, each checked against its SHA-256 before it is loaded.

The nets take images as they were trained on them (`run.config.normalization`, the paper's
"pixel_mean"): `x / 255` minus the per-pixel mean image of the 50,000 training images they were
trained on. `preprocess_input(images)` (`cifar_resnet.preprocess_input`, as
`keras.applications` has one per net) does that to raw images, uint8 or floats in [0, 255], with
that mean image, shipped beside the weights (`PIXEL_MEAN`); the nets themselves stay the plain
constructors' nets, so the `.weights.h5` files load into them unchanged. See
`tests/test_pretrained.py`.

A net gets an entry in `CIFAR10` when its run has finished: the file, its checksum, the settings
it was trained with, and the test errors the file gives in the float32 net `weights=` builds (all
10,000 test images, the 1,000 exact ones of the project's data, and flip TTA; docs/full-repro has
the runs, whose own evaluations in their training precision, bfloat16, can differ by a few
images). `python -m cifar_resnet export RUN_DIR --out cifar_resnet/nets/weights` writes the file
and prints the entry.
"""

from __future__ import annotations

import math
import pathlib
import sys
from typing import Optional

from cifar_resnet.spec import files

WEIGHTS_DIR = pathlib.Path(__file__).parent / "weights"
# The per-pixel mean image (32, 32, 3, float32, of pixels scaled to [0, 1]) of the 50,000
# training images the shipped nets were trained on (the project's copy of CIFAR-10,
# data.datasets.compute_normalization), with its SHA-256.
PIXEL_MEAN = dict(file="cifar10_pixel_mean.npy",
                  sha256="5527564b6544dca04de91903ae2148a1b164a110612fb359334c77b0d136e124")

# Model name (nets.architecture.net_name) -> the shipped file and what it was trained and measured
# with: the four full-length runs of issue #22.
CIFAR10: dict[str, dict] = {
    'resnet20_v1': dict(
        file='resnet20_v1_cifar10.weights.h5',
        sha256='7066268e449bdb71028d323c50a801a131f2b8d2b84915d1c2af2ce81874ba9a',
        shortcut='A',
        preset='paper',
        num_classes=10,
        input_shape=(32, 32, 3),
        normalization='pixel_mean',
        trained='64,124 iterations at batch 128, mixed_bfloat16, code d8205a2',
        test_error=11.77,
        exact1000_error=9.1,
        tta_error=10.27,
    ),
    'resnet56_v1': dict(
        file='resnet56_v1_cifar10.weights.h5',
        sha256='b73fe405e4fdd0927958ac52e5ae669e425ae9453f58df1bae52be46802beced',
        shortcut='A',
        preset='paper',
        num_classes=10,
        input_shape=(32, 32, 3),
        normalization='pixel_mean',
        trained='64,124 iterations at batch 128, mixed_bfloat16, code d8205a2',
        test_error=10.96,
        exact1000_error=9.0,
        tta_error=9.32,
    ),
    'plain20_v1': dict(
        file='plain20_v1_cifar10.weights.h5',
        sha256='49acfd8bf131754b346e6a6440fb5f4f8bdf3cde1df45f5b6c81f05f2a3cd665',
        shortcut='A',
        preset='paper',
        num_classes=10,
        input_shape=(32, 32, 3),
        normalization='pixel_mean',
        trained='64,124 iterations at batch 128, mixed_bfloat16, code d8205a2',
        test_error=13.07,
        exact1000_error=10.6,
        tta_error=11.88,
    ),
    'plain56_v1': dict(
        file='plain56_v1_cifar10.weights.h5',
        sha256='113e480c80aab8183ba2ac623f6bdb4c0e6cd28eb3f1f125900706ab2e0a11ca',
        shortcut='A',
        preset='paper',
        num_classes=10,
        input_shape=(32, 32, 3),
        normalization='pixel_mean',
        trained='64,124 iterations at batch 128, mixed_bfloat16, code d8205a2',
        test_error=15.56,
        exact1000_error=13.3,
        tta_error=13.86,
    ),
}

# weights= values that name shipped weights -> their table.
TABLES = {"cifar10": CIFAR10}


class WeightsError(ValueError):
    """Shipped weights are missing, do not fit the net asked for, or fail their checksum."""


def preprocess_input(images):
    """Raw CIFAR-10 images as the `weights="cifar10"` nets take them: `images / 255` minus the
    per-pixel mean image of their training images (the paper's preprocessing).

    Args:
        images: uint8 images, or floats in [0, 255], shaped (32, 32, 3) or (N, 32, 32, 3)
            (channels last), e.g. `keras.datasets.cifar10.load_data()`'s or
            `data.datasets.load_cifar10()`'s.

    Returns:
        float32 array of the same shape, to pass to the net (`model.predict(...)`).

    Raises:
        WeightsError: `images` are not of that shape.
    """
    import numpy as np

    x = np.asarray(images)
    if x.shape[-3:] != (32, 32, 3) or x.ndim not in (3, 4):
        raise WeightsError(f"preprocess_input: images of shape {x.shape}; expected (32, 32, 3) "
                           "or (N, 32, 32, 3), channels last")
    # As training normalized them (data.pipeline): float32 pixels times 1/255, minus the mean.
    return x.astype(np.float32) * np.float32(1 / 255) - _pixel_mean()


def _pixel_mean():
    """PIXEL_MEAN's array, checked against its SHA-256 once."""
    global _PIXEL_MEAN_ARRAY
    if _PIXEL_MEAN_ARRAY is None:
        import numpy as np

        path = WEIGHTS_DIR / PIXEL_MEAN["file"]
        if not path.is_file():
            raise WeightsError(f"{path} is missing from this installation of cifar_resnet")
        if files.sha256(path) != PIXEL_MEAN["sha256"]:
            raise WeightsError(f"{path}: its SHA-256 is not the shipped "
                               f"{PIXEL_MEAN['sha256'][:12]}...; reinstall cifar_resnet")
        _PIXEL_MEAN_ARRAY = np.load(path, allow_pickle=False)
    return _PIXEL_MEAN_ARRAY


_PIXEL_MEAN_ARRAY = None


def check_weights_arg(weights) -> None:
    """Refuses a `weights` value that is neither None, a key of TABLES, nor a path."""
    if weights is None or weights in TABLES:
        return
    if not (isinstance(weights, (str, pathlib.Path)) and str(weights).endswith(".weights.h5")):
        raise WeightsError(f"weights={weights!r}: expected None, "
                           f"{' or '.join(repr(k) for k in TABLES)}, or a path to a "
                           ".weights.h5 file")


def _shapes_of_file(path) -> list[tuple]:
    """The shapes of the arrays in a `.weights.h5` file, in the file's order.

    Raises:
        ValueError: the file is not HDF5, or holds no Keras weights (the message says which).
    """
    import h5py  # a Keras dependency; only needed when a weights file is read
    if not h5py.is_hdf5(path):
        raise ValueError(f"not a Keras weights file: {pathlib.Path(path).stat().st_size:,} "
                         "bytes that are not HDF5")
    shapes = []
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise ValueError(f"an HDF5 file without Keras weights (top level: "
                             f"{', '.join(sorted(f.keys())[:5]) or 'empty'})")
        f["layers"].visititems(lambda _, obj: shapes.append(tuple(obj.shape))
                               if isinstance(obj, h5py.Dataset) else None)
    return shapes


def _describe_shapes(shapes) -> str:
    """What a list of weight shapes is, as people tell nets apart: convolutions, classifier,
    parameters."""
    convs = [s for s in shapes if len(s) == 4]
    dense = [s for s in shapes if len(s) == 2]
    params = sum(math.prod(s) for s in shapes)
    head = f", a {dense[-1][0]}->{dense[-1][1]} classifier" if dense else ""
    return f"{len(convs)} convolutions{head}, {params:,} values in {len(shapes)} arrays"


def _load_file(model, path) -> None:
    """Loads a `.weights.h5` file into `model`; a file of another net, or no weights file at
    all, is a WeightsError in one line naming the file and what it holds."""
    try:
        shapes = _shapes_of_file(path)
    except (OSError, ValueError) as e:
        raise WeightsError(f"weights file {path}: {' '.join(str(e).split())[:200]}") from None
    wanted = [tuple(w.shape) for w in model.weights]
    if sorted(shapes) != sorted(wanted):  # the file's order is by attribute, not by layer
        raise WeightsError(f"weights file {path} holds another net ({_describe_shapes(shapes)}) "
                           f"than {model.name} ({_describe_shapes(wanted)}); build the net it "
                           "was saved from")
    try:
        model.load_weights(path)
    except Exception as e:  # a damaged file that still lists the right arrays
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise WeightsError(f"weights file {path} does not load into {model.name}: "
                           f"{reason}") from None


def load(model, weights, *, shortcut: Optional[str], preset: str, num_classes: int,
         input_shape):
    """`model` with `weights` loaded into it (unchanged when `weights` is None).

    Args:
        model: a freshly built net of nets.models.
        weights: None, "cifar10" (the shipped weights of this net), or a `.weights.h5` path.
        shortcut, preset, num_classes, input_shape: what the net was built with; shipped weights
            fit only the settings they were trained with.

    Raises:
        WeightsError: no shipped weights for this net or these settings, a checksum mismatch,
            a file that does not exist, is not a Keras weights file, or holds another net
            (one line naming the file and what it holds).
    """
    check_weights_arg(weights)
    if weights is None:
        return model
    if weights not in TABLES:
        if not pathlib.Path(weights).is_file():
            raise WeightsError(f"weights file {weights} not found")
        _load_file(model, weights)
        return model
    table = TABLES[weights]
    entry = table.get(model.name)
    if entry is None:
        raise WeightsError(f"no {weights} weights are shipped for {model.name}; shipped: "
                           f"{', '.join(sorted(table)) or 'none yet'}")
    built = dict(shortcut=shortcut, preset=preset, num_classes=num_classes,
                 input_shape=tuple(input_shape))
    trained = dict(shortcut=entry["shortcut"], preset=entry["preset"],
                   num_classes=entry["num_classes"], input_shape=tuple(entry["input_shape"]))
    if built != trained:
        diff = ", ".join(f"{k}={built[k]!r} (trained with {trained[k]!r})"
                         for k in built if built[k] != trained[k])
        raise WeightsError(f"the {weights} weights of {model.name} do not fit this net: {diff}")
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise WeightsError(f"{path} is missing from this installation of cifar_resnet")
    digest = files.sha256(path)
    if digest != entry["sha256"]:
        raise WeightsError(f"{path}: SHA-256 {digest[:12]}... is not the shipped "
                           f"{entry['sha256'][:12]}...; reinstall cifar_resnet")
    model.load_weights(path)
    print(f"cifar_resnet: {model.name} {weights} weights ({entry['file']}, {entry['trained']}): "
          f"test error {entry['test_error']:.2f}% on the 10,000 test images; inputs: "
          "cifar_resnet.preprocess_input(images) (images / 255 minus the training images' "
          "per-pixel mean; raw uint8 images give nonsense)", file=sys.stderr)
    return model
