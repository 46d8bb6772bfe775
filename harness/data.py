"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, an embedded synthetic set, and user .npz files.

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

import functools
import gzip
import hashlib
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import UserError

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

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_SOURCES = {
    # dataset: (subfolder, base URLs tried in order, MD5 of each .gz file)
    "mnist": ("mnist", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ), {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion-mnist": ("fashion-mnist", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ), {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
}
IDX_COUNTS = {"train": 60000, "t10k": 10000}

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_COUNTS = (50000, 10000)


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


# --------------------------------------------------------------------------- download

def download(url: str, dest: Path, md5: str, timeout: float = 30.0) -> None:
    """Download `url` to `dest` with a progress bar; verify MD5; atomic rename."""
    from tqdm import tqdm

    created = _make_dirs(dest.parent)   # removed again unless the download succeeds
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    digest = hashlib.md5()
    ok = False
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                      file=sys.stderr, leave=False) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise UserError(f"checksum mismatch for {url}: got {digest.hexdigest()}, expected {md5}; "
                            f"retry, or place the official file in {dest.parent}")
        os.replace(tmp, dest)
        ok = True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        for d in [] if ok else reversed(created):   # a mistyped --data-dir is not left behind
            try:
                os.rmdir(d)
            except OSError:
                break


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p `path`; the directories it created, outermost first."""
    missing, p = [], Path(path)
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the data directory {path}: {exc.strerror or exc}; "
                        f"pass a writable --data-dir") from None
    return missing[::-1]


def fetch_all(jobs: list[tuple[list[str], Path, str]], what: str, folder: Path) -> None:
    """Download each (urls, dest, md5) job, trying mirrors; one-line error when offline."""
    for urls, dest, md5 in jobs:
        errors = []
        for url in urls:
            try:
                download(url, dest, md5)
                break
            except (urllib.error.URLError, OSError, TimeoutError, UserError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")  # try the next mirror
        else:
            raise UserError(f"{what} not found in {folder} and could not be downloaded "
                            f"({'; '.join(errors)}); place the files there or pass --data-dir")


# --------------------------------------------------------------------------- IDX (MNIST)

def read_idx(path: Path, magic: int, count: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Read an IDX file (.gz or raw) and check magic number, count and item shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {exc}; re-download the file") from None
    ndim = len(shape) + 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated ({len(raw)} bytes); re-download the file")
    got_magic = int.from_bytes(raw[:4], "big")
    if got_magic != magic:
        raise UserError(f"{path} has magic number {got_magic:#010x}, expected {magic:#010x}; "
                        f"is it the right IDX file?")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if dims != (count, *shape):
        raise UserError(f"{path} holds shape {dims}, expected {(count, *shape)}; re-download the file")
    body = np.frombuffer(raw, np.uint8, offset=header)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} has {body.size} data bytes, expected {int(np.prod(dims))}; "
                        f"re-download the file")
    return body.reshape(dims)


def idx_path(folder: Path, base: str) -> Path | None:
    for candidate in (folder / (base + ".gz"), folder / base):
        if candidate.exists():
            return candidate
    return None


def find_folder(root: Path, subfolders: tuple[str, ...], has_all) -> Path:
    """The first of root/<sub>..., root that holds every file; else root/<first sub>.

    Besides our own layout this accepts files placed directly in the data directory
    and torchvision's layout (e.g. MNIST/raw/).
    """
    for folder in [root / s for s in subfolders] + [root]:
        if has_all(folder):
            return folder
    return root / subfolders[0]


def idx_folder(name: str, root: Path) -> Path:
    sub = IDX_SOURCES[name][0]
    tv = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    return find_folder(root, (sub, f"{tv}/raw"),
                       lambda f: all(idx_path(f, b) for b in IDX_FILES))


def load_idx_dataset(name: str, root: Path, download_ok: bool = True):
    _, urls, md5s = IDX_SOURCES[name]
    folder = idx_folder(name, root)
    missing = [b for b in IDX_FILES if idx_path(folder, b) is None]
    if missing:
        if not download_ok:
            raise UserError(f"{name} files missing in {folder}: {', '.join(missing)}")
        fetch_all([([u + b + ".gz" for u in urls], folder / (b + ".gz"), md5s[b]) for b in missing],
                  f"{name} files ({', '.join(b + '[.gz]' for b in missing)})", folder)
    out = []
    for split in ("train", "t10k"):
        n = IDX_COUNTS[split]
        x = read_idx(idx_path(folder, f"{split}-images-idx3-ubyte"), 0x00000803, n, (28, 28))
        y = read_idx(idx_path(folder, f"{split}-labels-idx1-ubyte"), 0x00000801, n)
        if y.max() > 9:
            raise UserError(f"{folder}: labels out of range 0..9 (max {y.max()}); re-download the files")
        out += [x[:, None], y]
    return (*out, str(folder))


# --------------------------------------------------------------------------- CIFAR-10

class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: only numpy array reconstruction may be imported.

    A regular `pickle.load` executes whatever callable a pickle names, so a crafted
    batch file could run arbitrary code. Here every global that is not needed to
    rebuild a numpy array raises before anything is called.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a CIFAR batch may only contain "
            f"dicts, lists, strings and numpy arrays")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {exc}") from None
    except Exception as exc:  # any malformed pickle: a one-line error, not a traceback
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc}); re-download CIFAR-10") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a CIFAR batch (top level is {type(d).__name__}, not dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise UserError(f"{path}: 'data' must be a uint8 array of shape (N, 3072); re-download CIFAR-10")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu" \
            or labels.min() < 0 or labels.max() > 9:
        raise UserError(f"{path}: 'labels' must be {data.shape[0]} integers in 0..9; re-download CIFAR-10")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def load_cifar10(root: Path, download_ok: bool = True):
    folder = find_folder(root, (CIFAR_DIR,), lambda f: all((f / n).exists() for n in CIFAR_FILES))
    missing = [f for f in CIFAR_FILES if not (folder / f).exists()]
    if missing:
        if not download_ok:
            raise UserError(f"cifar10 files missing in {folder}: {', '.join(missing)}")
        tar_path = root / "cifar-10-python.tar.gz"
        if not tar_path.exists():
            fetch_all([([CIFAR_URL], tar_path, CIFAR_MD5)],
                      f"cifar10 files ({', '.join(missing)})", folder)
        with tarfile.open(tar_path) as tar:
            tar.extractall(root, filter="data")
    parts = [read_cifar_batch(folder / f) for f in CIFAR_FILES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    if (len(y_train), len(parts[5][1])) != CIFAR_COUNTS:
        raise UserError(f"{folder}: expected {CIFAR_COUNTS[0]} train and {CIFAR_COUNTS[1]} test images, got "
                        f"{len(y_train)} and {len(parts[5][1])}; re-download CIFAR-10")
    return x_train, y_train, parts[5][0], parts[5][1], str(folder)


# --------------------------------------------------------------------------- npz

def load_npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"dataset file {p} does not exist; pass an existing .npz path")
    need = ("x_train", "y_train", "x_test", "y_test")
    try:
        z = np.load(p, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            d = {k: z[k] for k in z.files if k in need}
    except Exception as exc:  # noqa: BLE001 - empty, not a zip, bad member: one line, no traceback
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"cannot read {p} as .npz ({type(exc).__name__}: {msg}); an .npz dataset "
                        f"holds arrays {', '.join(need)} (numpy.savez)") from None
    missing = [k for k in need if not isinstance(d.get(k), np.ndarray)]
    if missing:
        raise UserError(f"{p} lacks keys {missing}; an .npz dataset needs {', '.join(need)} "
                        f"(numpy.savez)")
    for k in ("x_train", "x_test"):
        x = d[k]
        if x.dtype != np.uint8:
            raise UserError(f"{p}: {k} must be uint8 images, got {x.dtype}")
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            nchw, nhwc = x.shape[1] <= 4, x.shape[3] <= 4
            if nhwc and not nchw:
                x = x.transpose(0, 3, 1, 2)
            elif not nchw:
                raise UserError(f"{p}: {k} has shape {x.shape}; expected NHWC or NCHW with <= 4 channels")
        else:
            raise UserError(f"{p}: {k} has shape {x.shape}; expected (N,H,W), NHWC or NCHW")
        d[k] = np.ascontiguousarray(x)
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        y = d[yk]
        if y.ndim != 1 or len(y) != len(d[xk]) or y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
            raise UserError(f"{p}: {yk} must be {len(d[xk])} non-negative integer labels")
        if not len(y):
            raise UserError(f"{p}: {xk} holds no images; an .npz dataset needs training and test images")
    # The class count is max label + 1, so every class 0..K-1 must occur in training: one
    # stray label (say 5000) would otherwise make a 5001-class model without a word.
    classes = np.unique(d["y_train"])
    k = int(classes[-1]) + 1
    if len(classes) != k:
        gap = int(np.flatnonzero(classes != np.arange(len(classes)))[0])   # smallest missing class
        raise UserError(f"{p}: y_train labels must be the classes 0..K-1, each with training images; "
                        f"the largest label is {k - 1} but only {len(classes)} classes occur (none of "
                        f"class {gap}); relabel them as 0..{len(classes) - 1}")
    if int(d["y_test"].max()) >= k:
        raise UserError(f"{p}: y_test has label {int(d['y_test'].max())}, but y_train only classes 0..{k - 1}; "
                        f"relabel the test set or add training images of that class")
    if d["x_train"].shape[1:] != d["x_test"].shape[1:]:
        raise UserError(f"{p}: train images {d['x_train'].shape[1:]} and test images "
                        f"{d['x_test'].shape[1:]} differ in shape")
    return d


# --------------------------------------------------------------------------- synthetic

def bar(u, v, t):
    """A bar along u of half-length 1 and half-width t."""
    return (np.abs(v) < t) & (np.abs(u) < 1)


def synthetic_shape(k: int, u, v, t):
    """Mask of class k in the shape's own frame (u, v), unit half-extent, thickness t."""
    s2 = np.float32(np.sqrt(0.5))
    a, b = (u + v) * s2, (u - v) * s2          # the frame turned by 45 degrees
    box = np.maximum(np.abs(u), np.abs(v))
    r = np.sqrt(u * u + v * v)
    if k == 0:
        return bar(u, v, t)
    if k == 1:
        return bar(v, u, t)
    if k == 2:
        return bar(a, b, t)
    if k == 3:
        return bar(b, a, t)
    if k == 4:
        return bar(u, v, t) | bar(v, u, t)
    if k == 5:
        return bar(a, b, t) | bar(b, a, t)
    if k == 6:
        return (box < 0.85) & (box > 0.85 - 1.5 * t)
    if k == 7:
        return r < 0.8
    if k == 8:
        return (r < 0.9) & (r > 0.9 - 1.5 * t)
    return bar(u, v - 0.5, t) | bar(u, v + 0.5, t)


def make_synthetic(shape=(1, 28, 28), n_train=20000, n_test=5000, seed=0):
    """Procedural 10-class shapes, each drawn at a random place, size, tilt and contrast.

    Classes: 0 horizontal bar, 1 vertical bar, 2 '/' diagonal, 3 '\\' diagonal,
    4 plus, 5 cross (x), 6 square outline, 7 filled disc, 8 ring, 9 two parallel bars.
    Random translation makes a linear model on pixels weak; the classes are defined by
    local oriented structure that convolutions pick up. With 3 channels, the shape and
    the background get random colours. Deterministic for a given seed.
    """
    c, h, w = shape
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    size = min(h, w)
    scale = rng.uniform(0.22, 0.36, n) * size           # half-extent in pixels
    cy = rng.uniform(scale, h - 1 - scale)
    cx = rng.uniform(scale, w - 1 - scale)
    tilt = rng.uniform(-0.25, 0.25, n)                   # radians
    thick = rng.uniform(0.14, 0.24, n)                   # in units of the half-extent
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = np.empty((n, h, w), np.float32)
    for k in range(10):  # draw each class only where it is needed
        i = np.flatnonzero(labels == k)
        sc = scale[i, None, None].astype(np.float32)
        dy = (yy[None] - cy[i, None, None].astype(np.float32)) / sc
        dx = (xx[None] - cx[i, None, None].astype(np.float32)) / sc
        cos = np.cos(tilt[i, None, None]).astype(np.float32)
        sin = np.sin(tilt[i, None, None]).astype(np.float32)
        u, v = cos * dx + sin * dy, cos * dy - sin * dx
        t = thick[i, None, None].astype(np.float32)
        inside[i] = synthetic_shape(k, u, v, t)
    if c == 1:
        fg = rng.uniform(0.6, 1.0, (n, 1, 1, 1)).astype(np.float32)
        bg = rng.uniform(0.0, 0.25, (n, 1, 1, 1)).astype(np.float32)
    else:
        fg = rng.uniform(0.0, 1.0, (n, c, 1, 1)).astype(np.float32)
        bg = rng.uniform(0.0, 1.0, (n, c, 1, 1)).astype(np.float32)
        # keep the shape visible: push the colours apart where they are too close
        close = np.abs(fg - bg).sum(1, keepdims=True) < 0.6
        fg = np.where(close, 1.0 - bg, fg)
    img = bg + (fg - bg) * inside[:, None]
    img = img + 0.08 * rng.standard_normal(img.shape, dtype=np.float32)
    x = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    y = labels.astype(np.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@functools.lru_cache(maxsize=2)
def synthetic_arrays(shape) -> tuple[np.ndarray, ...]:
    """make_synthetic, generated once per process (suites and `check` load it many times);
    read-only, so no caller can alter the cached copy."""
    arrays = make_synthetic(tuple(shape))
    for a in arrays:
        a.setflags(write=False)
    return arrays


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
