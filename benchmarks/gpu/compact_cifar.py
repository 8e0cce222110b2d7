"""CIFAR-10 in a compact file that fits the GPU machine's 64 MiB working tree.

The project's copy of CIFAR-10 (../shared/data/README.md) is exact in 5,000 images
(`data_batch_1` rows 0-3999, `test_batch` rows 0-999); the other 55,000 were decoded from
JPEG quality 75 with 4:2:0 chroma. Here:

- the 5,000 exact images travel losslessly, as PNG mosaics of 32x32 tiles;
- the other 55,000 are re-encoded as JPEG with those same settings (Pillow, quality 75, 4:2:0,
  standard tables), image by image. Re-encoding a decoded JPEG with its own settings changes
  little (the measured extra loss is written into the file's `report`). Every image's JPEG has
  the same 623-byte header, so it is stored once, with each image's entropy-coded scan.

`encode` writes the `.npz`; `decode` gives back the arrays; `write_batches` writes them in the
official python layout, so `--data-dir` reads them as any copy of CIFAR-10. Needs numpy and
Pillow (the GPU machine has both).
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle

import numpy as np
from PIL import Image

EXACT_TRAIN = 4000   # data_batch_1 rows 0-3999 are exact in the project's copy
EXACT_TEST = 1000    # test_batch rows 0-999 are exact
JPEG = dict(format="JPEG", quality=75, subsampling=2)  # 4:2:0, as the copy's own loss
COLUMNS = 100        # tiles per mosaic row
SOS, EOI = b"\xff\xda", b"\xff\xd9"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")  # batches.meta, as in the official release


def digest(train, test) -> str:
    """SHA-256 of images (uint8) and labels (as uint8), to check a decode on another machine."""
    h = hashlib.sha256()
    for x, y in (train, test):
        h.update(np.ascontiguousarray(x, np.uint8).tobytes())
        h.update(np.asarray(y, np.uint8).tobytes())
    return h.hexdigest()


def _mosaic_png(images: np.ndarray) -> bytes:
    n = len(images)
    rows = -(-n // COLUMNS)
    tiles = np.zeros((rows * COLUMNS, 32, 32, 3), np.uint8)
    tiles[:n] = images
    grid = tiles.reshape(rows, COLUMNS, 32, 32, 3).transpose(0, 2, 1, 3, 4)
    out = io.BytesIO()
    Image.fromarray(grid.reshape(rows * 32, COLUMNS * 32, 3)).save(out, format="PNG",
                                                                    optimize=True)
    return out.getvalue()


def _unmosaic_png(blob: bytes, n: int) -> np.ndarray:
    grid = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    rows = grid.shape[0] // 32
    tiles = grid.reshape(rows, 32, COLUMNS, 32, 3).transpose(0, 2, 1, 3, 4)
    return tiles.reshape(-1, 32, 32, 3)[:n].copy()


def _jpeg_split(image: np.ndarray) -> tuple[bytes, bytes]:
    """`(header, scan)` of one image's JPEG: everything up to the scan, and the scan data."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, **JPEG)
    blob = out.getvalue()
    start = blob.index(SOS)
    cut = start + 2 + int.from_bytes(blob[start + 2:start + 4], "big")
    if not blob.endswith(EOI):
        raise ValueError("unexpected JPEG layout: no end-of-image marker")
    return blob[:cut], blob[cut:-2]


def _jpeg_join(header: bytes, scan: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(header + scan + EOI)).convert("RGB"))


def encode(train, test, path, exact=(EXACT_TRAIN, EXACT_TEST)) -> dict:
    """Writes CIFAR-10 compactly to `path` (.npz); returns the report (sizes, extra loss).

    Args:
        train: `(x, y)`, uint8 (50000, 32, 32, 3) images and labels, in the official order.
        test: `(x, y)`, the 10,000 test images and labels.
        path: The output file.
        exact: How many leading training and test images are exact (travel losslessly).
    """
    (x_train, y_train), (x_test, y_test) = train, test
    lossy = np.concatenate([x_train[exact[0]:], x_test[exact[1]:]])
    headers, scans = set(), []
    for image in lossy:
        header, scan = _jpeg_split(image)
        headers.add(header)
        scans.append(scan)
    if len(headers) != 1:
        raise ValueError(f"expected one shared JPEG header, got {len(headers)}")
    header = headers.pop()
    offsets = np.cumsum([0] + [len(s) for s in scans]).astype(np.int64)
    arrays = dict(
        y_train=np.asarray(y_train, np.uint8), y_test=np.asarray(y_test, np.uint8),
        exact_train=np.frombuffer(_mosaic_png(x_train[:exact[0]]), np.uint8),
        exact_test=np.frombuffer(_mosaic_png(x_test[:exact[1]]), np.uint8),
        jpeg_header=np.frombuffer(header, np.uint8), jpeg_offsets=offsets,
        jpeg_scans=np.frombuffer(b"".join(scans), np.uint8))
    decoded = np.stack([_jpeg_join(header, s) for s in scans])
    error = np.abs(decoded.astype(np.int16) - lossy)
    x_train2, x_test2 = _assemble(x_train[:exact[0]], x_test[:exact[1]], decoded,
                                  len(x_train))
    report = {
        "format": "compact-cifar10/1",
        "exact": list(exact), "train": len(x_train), "test": len(x_test),
        "reencoded_images": int(len(lossy)),
        "reencoding": "JPEG quality 75, 4:2:0 (Pillow), one shared header",
        "extra_loss_mean_abs_grey_levels": round(float(error.mean()), 4),
        "extra_loss_max_abs_grey_levels": int(error.max()),
        "extra_loss_exact_fraction": round(float((error == 0).mean()), 4),
        "decoded_sha256": digest((x_train2, y_train), (x_test2, y_test)),
        "source_sha256": digest(train, test),
    }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, report=np.frombuffer(json.dumps(report).encode(), np.uint8), **arrays)
    report["bytes"] = path.stat().st_size
    return report


def _assemble(exact_train, exact_test, decoded, num_train):
    split = num_train - len(exact_train)
    return (np.concatenate([exact_train, decoded[:split]]),
            np.concatenate([exact_test, decoded[split:]]))


def decode(path):
    """Reads a file of `encode`: `((x_train, y_train), (x_test, y_test), report)`."""
    with np.load(path) as f:
        report = json.loads(f["report"].tobytes())
        header, offsets, scans = f["jpeg_header"].tobytes(), f["jpeg_offsets"], f["jpeg_scans"]
        decoded = np.stack([_jpeg_join(header, scans[a:b].tobytes())
                            for a, b in zip(offsets[:-1], offsets[1:])])
        exact_train, exact_test = report["exact"]
        x_train, x_test = _assemble(_unmosaic_png(f["exact_train"].tobytes(), exact_train),
                                    _unmosaic_png(f["exact_test"].tobytes(), exact_test),
                                    decoded, report["train"])
        y_train, y_test = f["y_train"].astype(np.int64), f["y_test"].astype(np.int64)
    return (x_train, y_train), (x_test, y_test), report


def write_batches(train, test, folder) -> pathlib.Path:
    """Writes the arrays as the official `cifar-10-batches-py` files under `folder`."""
    folder = pathlib.Path(folder) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, x, y):
        rows = np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)).reshape(len(x), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                         b"data": rows, b"filenames": [b"%d.png" % i for i in range(len(x))]}, f)

    (x_train, y_train), (x_test, y_test) = train, test
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CLASS_NAMES],
                     b"num_cases_per_batch": 10_000, b"num_vis": 3072}, f)
    for k, part in enumerate(np.array_split(np.arange(len(x_train)), 5)):
        dump(f"data_batch_{k + 1}", x_train[part], y_train[part])
    dump("test_batch", x_test, y_test)
    return folder
