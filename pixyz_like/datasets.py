"""Dataset loading for the examples: MNIST through torchvision, or from a local folder of IDX files.

The real path is torchvision's (``torchvision.datasets.MNIST``, downloading when online). Offline, a
folder holding the original IDX files (gzipped or not, in torchvision's ``raw/`` layout or flat) is
read directly. When the folder holds only the 10,000-digit test split, it is split deterministically
into the first ``n_train`` digits for training and the rest for testing.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from .errors import DatasetNotFoundError  # defined with the other named errors; importable from here too

__all__ = ["read_idx", "find_mnist_files", "load_mnist", "DatasetNotFoundError"]

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes (LeCun's format): only unsigned bytes are used by MNIST.
_IDX_DTYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32, 0x0D: torch.float32}


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a tensor of its stored dtype and shape.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(f, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(f)
    tensor([7, 8, 9], dtype=torch.uint8)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[dtype_code]
    body = bytearray(data[4 + 4 * ndim :])
    tensor = torch.frombuffer(body, dtype=dtype) if body else torch.empty(0, dtype=dtype)
    if dtype.itemsize > 1 and tensor.numel():
        tensor = tensor.view(torch.uint8).reshape(-1, dtype.itemsize).flip(-1).reshape(-1).view(dtype)  # big-endian
    expected = 1
    for d in dims:
        expected *= d
    if tensor.numel() != expected:
        raise ValueError(f"{path}: header says shape {dims} but the file holds {tensor.numel()} elements")
    return tensor.reshape(dims).clone()


def find_mnist_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """Locate MNIST IDX files under ``data_dir`` (flat, ``raw/`` or ``MNIST/raw/``; ``.gz`` or not).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> find_mnist_files(d)
    {}
    >>> _ = (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    >>> find_mnist_files(d)["test_labels"].name
    't10k-labels-idx1-ubyte.gz'
    """
    root = Path(data_dir)
    found: dict[str, Path] = {}
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for key, stem in _FILES.items():
            if key in found:
                continue
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
    return found


def _dataset(images: torch.Tensor, labels: torch.Tensor, flatten: bool) -> TensorDataset:
    x = images.to(torch.float32).div_(255.0)
    x = x.reshape(len(x), -1) if flatten else x.unsqueeze(1)
    return TensorDataset(x, labels.to(torch.long))


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    flatten: bool = True,
    n_train: int = 8000,
) -> tuple[TensorDataset, TensorDataset]:
    """Return ``(train, test)`` MNIST datasets of ``(image, label)`` with grey levels in ``[0, 1]``.

    Args:
        data_dir: a folder with the IDX files, or torchvision's root folder. ``None`` uses
            ``~/.cache/pixyz_like/data``.
        download: let torchvision download MNIST when the files are not found locally.
        flatten: images as 784-vectors (else ``(1, 28, 28)``).
        n_train: when only the test split is present, how many of its digits go to training.

    With only the test split on disk (here four blank 28x28 digits), it is split in two:

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> header = bytes([0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28])
    >>> _ = (d / "t10k-images-idx3-ubyte").write_bytes(header + bytes(4 * 784))
    >>> _ = (d / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 4, 7, 2, 1, 0]))
    >>> train, test = load_mnist(d, download=False, n_train=3)
    >>> len(train), len(test), train[0][0].shape, int(test[0][1])
    (3, 1, torch.Size([784]), 0)

    A folder without MNIST, offline or with ``download=False``, raises :class:`DatasetNotFoundError`:

    >>> load_mnist(tempfile.mkdtemp(), download=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.DatasetNotFoundError: MNIST is not under ... and could not be downloaded ...
    """
    root = Path(data_dir) if data_dir is not None else Path.home() / ".cache" / "pixyz_like" / "data"
    files = find_mnist_files(root)
    have_train = "train_images" in files and "train_labels" in files
    have_test = "test_images" in files and "test_labels" in files
    if have_train and have_test:
        train = _dataset(read_idx(files["train_images"]), read_idx(files["train_labels"]), flatten)
        test = _dataset(read_idx(files["test_images"]), read_idx(files["test_labels"]), flatten)
        return train, test
    if have_test and not download:
        images, labels = read_idx(files["test_images"]), read_idx(files["test_labels"])
        if not 0 < n_train < len(images):
            raise ValueError(f"load_mnist: n_train={n_train} must be between 1 and {len(images) - 1}")
        return (
            _dataset(images[:n_train], labels[:n_train], flatten),
            _dataset(images[n_train:], labels[n_train:], flatten),
        )
    try:
        from torchvision.datasets import MNIST

        train_tv = MNIST(str(root), train=True, download=download)
        test_tv = MNIST(str(root), train=False, download=download)
    except Exception as e:  # offline, or files absent with download=False
        if have_test:
            return load_mnist(root, download=False, flatten=flatten, n_train=n_train)
        raise DatasetNotFoundError(
            f"MNIST is not under {root} and could not be downloaded ({type(e).__name__}: {e}); "
            "pass --data-dir pointing at a folder of MNIST IDX files"
        ) from e
    return (
        _dataset(train_tv.data, train_tv.targets, flatten),
        _dataset(test_tv.data, test_tv.targets, flatten),
    )
