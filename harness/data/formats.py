"""File formats and downloads: MNIST/Fashion-MNIST IDX files, CIFAR-10 pickle batches,
user .npz archives, and fetching missing files from the official mirrors.

Every reader checks structure (magic numbers, shapes, counts, label ranges), not
checksums, and turns a malformed file into one line that says what to do. CIFAR
batches are read with a restricted unpickler (`RestrictedUnpickler`): a batch file that
names any callable other than numpy array reconstruction is refused before anything is
called. Downloads are verified against their published MD5s and renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from harness import files
from harness.errors import UserError

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
    try:   # a regular file only: a FIFO in its place would block the read forever
        with files.open_regular(path, "IDX file", "re-download the file", follow_links=True) as f:
            raw = gzip.GzipFile(fileobj=f).read() if path.suffix == ".gz" else f.read()
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

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id: a CIFAR batch may only contain "
                                     "dicts, lists, strings and numpy arrays")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "re-download CIFAR-10"
    try:
        with files.open_regular(path, "CIFAR-10 batch", fix, follow_links=True) as f:
            d = RestrictedUnpickler(f, encoding="bytes").load()
    except UserError:
        raise
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {' '.join(str(exc).split())}; {fix}") from None
    except Exception as exc:  # any malformed pickle: a one-line error, not a traceback
        msg = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {msg}); {fix}") from None
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
