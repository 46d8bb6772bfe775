"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, an embedded synthetic set, and user .npz files.

This module assembles the splits; the file formats and downloads are
`harness.data.formats`, the synthetic shapes `harness.data.synthetic`.

All data is held in memory as normalized float32 tensors (NCHW). A deterministic
validation split is held out from the training set (the same for every run seed, so
methods are compared on one split), and per-channel normalization statistics come
from the remaining training split only.

Data directory: `--data-dir`, else $SPECTRAL_BENCH_DATA, else the user cache
directory (~/.cache/spectral-bench). Files missing there are downloaded from the
official locations and checked against their published MD5s. Local files are checked
by structure (magic numbers, shapes, counts, label range), not by checksum: a CIFAR-10
copy with different `filenames` entries is still the same data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.data.formats import (CIFAR_COUNTS, CIFAR_DIR, CIFAR_FILES, IDX_COUNTS, IDX_FILES,
                                  IDX_SOURCES, download, fetch_all, idx_folder, idx_path,
                                  load_cifar10, load_idx_dataset, load_npz, read_cifar_batch,
                                  read_idx)
from harness.data.synthetic import make_synthetic, synthetic_arrays
from harness.errors import UserError

__all__ = ["Dataset", "SHAPES", "NAMES", "data_root", "check_name", "is_npz", "dataset_shape",
           "load_raw", "split_and_normalize", "load", "default_dataset", "make_synthetic",
           # the file formats (harness.data.formats), for scripts and tests
           "CIFAR_COUNTS", "CIFAR_DIR", "CIFAR_FILES", "IDX_COUNTS", "IDX_FILES", "IDX_SOURCES",
           "download", "fetch_all", "load_cifar10", "load_idx_dataset", "load_npz",
           "read_cifar_batch", "read_idx", "synthetic_arrays"]

DATA_ENV = "SPECTRAL_BENCH_DATA"
VAL_SPLIT_SEED = 0  # fixed: every run seed sees the same validation split

# name -> (input shape C,H,W; number of classes)
SHAPES = {
    "mnist": ((1, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "synthetic": ((1, 28, 28), 10),
    "synthetic-cifar": ((3, 32, 32), 10),
}
NAMES = tuple(SHAPES)


@dataclass
class Dataset:
    """Normalized in-memory splits of one dataset."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: list[float]
    std: list[float]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "n_train": len(self.y_train),
                "n_val": len(self.y_val), "n_test": len(self.y_test),
                "norm_mean": self.mean, "norm_std": self.std}


# --------------------------------------------------------------------------- paths

def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $SPECTRAL_BENCH_DATA, else the user cache directory."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "spectral-bench"


def is_npz(name: str) -> bool:
    return name.endswith(".npz")


def check_name(name: str) -> None:
    if name not in SHAPES and not is_npz(name):
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(NAMES)}, "
                        f"or a path to a .npz file")


def dataset_shape(name: str) -> tuple[tuple[int, int, int], int]:
    """(input shape, number of classes) without loading the pixels where possible."""
    check_name(name)
    if is_npz(name):
        d = load_npz(name)
        return d["x_train"].shape[1:], int(max(d["y_train"].max(), d["y_test"].max())) + 1
    return SHAPES[name]


# --------------------------------------------------------------------------- assembly

def load_raw(name: str, data_dir=None, download_ok: bool = True):
    """uint8 NCHW train/test arrays and a source description for dataset `name`."""
    check_name(name)
    if is_npz(name):
        d = load_npz(name)
        return d["x_train"], d["y_train"], d["x_test"], d["y_test"], str(Path(name).resolve())
    if name in ("synthetic", "synthetic-cifar"):
        return (*synthetic_arrays(SHAPES[name][0]), "generated (harness.data.make_synthetic, seed 0)")
    root = data_root(data_dir)
    if name == "cifar10":
        return load_cifar10(root, download_ok)
    return load_idx_dataset(name, root, download_ok)


def split_and_normalize(name, x_train, y_train, x_test, y_test, source, val_size=5000,
                        num_classes=None, subset: int | None = None) -> Dataset:
    """Hold out a fixed validation split; normalize with training-split statistics."""
    n = len(y_train)
    if val_size >= n:
        raise UserError(f"val_size {val_size} leaves no training images (the training set has {n}); "
                        f"use a smaller val_size")
    perm = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if subset:  # a quick run on part of the data (tests, smoke checks)
        train_idx = train_idx[:subset]
        val_idx = val_idx[: max(1, subset // 5)] if val_size else val_idx
        test_keep = slice(0, max(1, subset // 5))
        x_test, y_test = x_test[test_keep], y_test[test_keep]
    xt = torch.from_numpy(x_train[train_idx]).float().div_(255)
    mean = xt.mean(dim=(0, 2, 3))
    std = xt.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def norm(x):
        x = x if torch.is_tensor(x) else torch.from_numpy(np.require(x, requirements="CW")).float().div_(255)
        return x.sub_(mean[None, :, None, None]).div_(std[None, :, None, None])

    def labels(y):
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    k = num_classes or int(max(np.max(y_train), np.max(y_test))) + 1
    return Dataset(name=name, x_train=norm(xt), y_train=labels(y_train[train_idx]),
                   x_val=norm(x_train[val_idx]), y_val=labels(y_train[val_idx]),
                   x_test=norm(x_test), y_test=labels(y_test), num_classes=k,
                   mean=mean.tolist(), std=std.tolist(), source=source)


def load(name: str, data_dir=None, val_size: int = 5000, subset: int | None = None,
         download_ok: bool = True) -> Dataset:
    """Load dataset `name` as normalized in-memory splits."""
    x_train, y_train, x_test, y_test, source = load_raw(name, data_dir, download_ok)
    k = SHAPES[name][1] if name in SHAPES else None
    return split_and_normalize(name, x_train, y_train, x_test, y_test, source,
                               val_size=val_size, num_classes=k, subset=subset)


def default_dataset(data_dir=None) -> str:
    """MNIST if present or downloadable; otherwise 'synthetic', with a notice on stderr."""
    if all(idx_path(idx_folder("mnist", data_root(data_dir)), b) for b in IDX_FILES):
        return "mnist"
    try:
        load_raw("mnist", data_dir)  # downloads the missing files
        return "mnist"
    except UserError as exc:
        print(f"notice: {exc}. Using the embedded 'synthetic' dataset instead "
              f"(pass --dataset to choose).", file=sys.stderr)
        return "synthetic"
