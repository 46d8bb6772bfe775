"""Dataset loaders on small files written here, the restricted unpickler, downloads,
splits and the synthetic set."""

import gzip
import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import data
from harness.errors import UserError


def write_idx(path: Path, arr: np.ndarray, magic: int, compress: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def make_idx_dir(root: Path, n_train=120, n_test=30, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "mnist"
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte", x, 0x803, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y, 0x801, compress)
        arrays[split] = (x, y)
    return arrays


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setitem(data.IDX_COUNTS, "train", 120)
    monkeypatch.setitem(data.IDX_COUNTS, "t10k", 30)
    monkeypatch.setattr(data.formats, "CIFAR_COUNTS", (100, 20))


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loader_reads_gz_and_raw(tmp_path, small_counts, compress):
    arrays = make_idx_dir(tmp_path, compress=compress)
    x_tr, y_tr, x_te, y_te, _ = data.load_raw("mnist", tmp_path)
    assert x_tr.shape == (120, 1, 28, 28) and x_te.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(x_tr[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(y_te, arrays["t10k"][1])


def test_idx_bad_magic_count_and_labels(tmp_path, small_counts):
    make_idx_dir(tmp_path)
    folder = tmp_path / "mnist"
    # labels file where an images file is expected: wrong magic
    (folder / "train-images-idx3-ubyte.gz").write_bytes((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(UserError, match="magic number"):
        data.load_raw("mnist", tmp_path, download_ok=False)

    # wrong count
    (folder / "train-images-idx3-ubyte.gz").unlink()
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((7, 28, 28)), 0x803, True)
    with pytest.raises(UserError, match="expected"):
        data.load_raw("mnist", tmp_path, download_ok=False)


def test_idx_label_out_of_range(tmp_path, small_counts):
    make_idx_dir(tmp_path)
    folder = tmp_path / "mnist"
    write_idx(folder / "train-labels-idx1-ubyte", np.full(120, 11), 0x801, True)
    with pytest.raises(UserError, match="out of range"):
        data.load_raw("mnist", tmp_path)


def test_idx_truncated(tmp_path, small_counts):
    make_idx_dir(tmp_path, compress=False)
    p = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(UserError, match="data bytes"):
        data.load_raw("mnist", tmp_path)


def test_missing_files_offline_one_line_error(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise data.formats.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.formats.urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as err:
        data.load_raw("mnist", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte" in msg


def write_cifar_batch(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    d = {b"batch_label": b"test", b"labels": [int(v) for v in y],
         b"data": x.reshape(len(x), -1), b"filenames": [b"x.png"] * len(x)}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def make_cifar_dir(root: Path, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / data.CIFAR_DIR
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in data.CIFAR_FILES:
        n = 20
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        write_cifar_batch(folder / name, x, y)
        xs.append(x)
        ys.append(y)
    return xs, ys


def test_cifar_loader(tmp_path, small_counts):
    xs, ys = make_cifar_dir(tmp_path)
    x_tr, y_tr, x_te, y_te, _ = data.load_raw("cifar10", tmp_path)
    np.testing.assert_array_equal(x_tr, np.concatenate(xs[:5]))
    np.testing.assert_array_equal(y_tr, np.concatenate(ys[:5]))
    np.testing.assert_array_equal(x_te, xs[5])
    assert x_tr.shape == (100, 3, 32, 32)


class Evil:
    """Unpickling this would run os.system and create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_executes_nothing(tmp_path, small_counts):
    make_cifar_dir(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20, b"x": Evil(marker)}
    with open(tmp_path / data.CIFAR_DIR / "data_batch_3", "wb") as f:
        pickle.dump(evil, f, protocol=2)
    # sanity: the ordinary unpickler really would execute it
    plain = tmp_path / "plain_marker"
    pickle.loads(pickle.dumps(Evil(plain)))
    assert plain.exists()

    with pytest.raises(UserError, match="refusing to load global posix.system"):
        data.load_raw("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar_wrong_layout(tmp_path, small_counts):
    make_cifar_dir(tmp_path)
    write_cifar_batch(tmp_path / data.CIFAR_DIR / "test_batch",
                      np.zeros((20, 3, 16, 16), np.uint8), np.zeros(20))
    with pytest.raises(UserError, match=r"\(N, 3072\)"):
        data.load_raw("cifar10", tmp_path)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_download_verifies_checksum(tmp_path, http_server):
    www, url = http_server
    payload = os.urandom(100_000)
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "f.bin"
    with pytest.raises(UserError, match="checksum mismatch"):
        data.download(url + "f.bin", dest, md5="0" * 32)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    data.download(url + "f.bin", dest, md5=hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload


def test_mnist_download_path(tmp_path, http_server, monkeypatch, small_counts):
    """Missing files are fetched from the mirror list, verified, then validated."""
    www, url = http_server
    src = tmp_path / "src"
    make_idx_dir(src)
    md5s = {}
    for b in data.IDX_FILES:
        blob = (src / "mnist" / (b + ".gz")).read_bytes()
        (www / (b + ".gz")).write_bytes(blob)
        md5s[b] = hashlib.md5(blob).hexdigest()
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", ("mnist", ("http://127.0.0.1:9/", url), md5s))
    root = tmp_path / "data"
    x_tr, *_ = data.load_raw("mnist", root)
    assert x_tr.shape == (120, 1, 28, 28)
    assert all((root / "mnist" / (b + ".gz")).exists() for b in data.IDX_FILES)


def test_npz_nhwc_and_nchw_agree(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    xt = rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    y, yt = rng.integers(0, 4, 50), rng.integers(0, 4, 10)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(tmp_path / "b.npz", x_train=x.transpose(0, 2, 3, 1), y_train=y,
             x_test=xt.transpose(0, 2, 3, 1), y_test=yt)
    a = data.load(str(tmp_path / "a.npz"), val_size=10)
    b = data.load(str(tmp_path / "b.npz"), val_size=10)
    assert a.input_shape == (3, 8, 8) and a.num_classes == int(max(y.max(), yt.max())) + 1
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(UserError, match="lacks keys"):
        data.load(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "f.npz", x_train=np.zeros((5, 8, 8), np.float32), y_train=np.zeros(5, int),
             x_test=np.zeros((5, 8, 8), np.float32), y_test=np.zeros(5, int))
    with pytest.raises(UserError, match="uint8"):
        data.load(str(tmp_path / "f.npz"))
    with pytest.raises(UserError, match="does not exist"):
        data.load(str(tmp_path / "nope.npz"))


def test_unknown_dataset_lists_names():
    with pytest.raises(UserError, match="valid datasets: mnist, fashion-mnist, cifar10"):
        data.check_name("imagenet")


def test_split_is_deterministic_and_normalized_on_train(tmp_path, small_counts):
    make_idx_dir(tmp_path)
    a = data.load("mnist", tmp_path, val_size=20)
    b = data.load("mnist", tmp_path, val_size=20)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert len(a.y_train) == 100 and len(a.y_val) == 20 and len(a.y_test) == 30
    # normalization statistics come from the training split only
    assert abs(a.x_train.mean().item()) < 1e-4
    assert abs(a.x_train.std().item() - 1) < 1e-3
    raw = data.load_raw("mnist", tmp_path)[0][:, :, :, :].astype(np.float64) / 255
    train_mask = np.ones(120, bool)
    val_idx = np.random.default_rng(data.VAL_SPLIT_SEED).permutation(120)[:20]
    train_mask[val_idx] = False
    assert a.mean[0] == pytest.approx(raw[train_mask].mean(), rel=1e-5)
    # the split is disjoint and complete
    assert sorted(a.y_train.tolist() + a.y_val.tolist()) == sorted(raw_labels(tmp_path))


def raw_labels(root):
    return data.load_raw("mnist", root)[1].astype(int).tolist()


def test_val_size_too_large(tmp_path, small_counts):
    make_idx_dir(tmp_path)
    with pytest.raises(UserError, match="val_size"):
        data.load("mnist", tmp_path, val_size=500)


def test_synthetic_deterministic_and_balanced():
    a = data.make_synthetic(n_train=500, n_test=100, seed=3)
    b = data.make_synthetic(n_train=500, n_test=100, seed=3)
    c = data.make_synthetic(n_train=500, n_test=100, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert np.bincount(a[1], minlength=10).min() >= 40
    x, _, _, _ = data.make_synthetic((3, 32, 32), n_train=50, n_test=10)
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.uint8


def test_synthetic_needs_spatial_features():
    """A linear model on pixels stays far below what LeNet-5 reaches (see test_train)."""
    d = data.load("synthetic")
    torch.manual_seed(0)
    lin = torch.nn.Linear(784, 10)
    opt = torch.optim.Adam(lin.parameters(), 1e-3)
    x, y = d.x_train.flatten(1), d.y_train
    for _ in range(4):
        for idx in torch.randperm(len(y)).split(100):
            opt.zero_grad()
            F.cross_entropy(lin(x[idx]), y[idx]).backward()
            opt.step()
    acc = (lin(d.x_test.flatten(1)).argmax(1) == d.y_test).float().mean().item()
    assert acc < 0.7, f"linear model reached {acc:.3f}: the synthetic classes are too easy"


def test_default_dataset_falls_back_to_synthetic(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data.formats.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(data.formats.urllib.error.URLError("offline")))
    assert data.default_dataset(tmp_path) == "synthetic"
    assert "synthetic" in capsys.readouterr().err


def test_default_dataset_uses_mnist_when_present(mnist_dir):
    assert data.default_dataset(mnist_dir) == "mnist"


def test_real_mnist_structure(mnist_dir):
    x_tr, y_tr, x_te, y_te, _ = data.load_raw("mnist", mnist_dir)
    assert x_tr.shape == (60000, 1, 28, 28) and x_te.shape == (10000, 1, 28, 28)
    # label histogram published in shared/data/README.md
    assert np.bincount(y_te).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_cifar_structure(cifar_dir):
    x_tr, y_tr, x_te, y_te, _ = data.load_raw("cifar10", cifar_dir)
    assert x_tr.shape == (50000, 3, 32, 32) and x_te.shape == (10000, 3, 32, 32)
    assert y_tr[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert y_te[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_idx_files_directly_in_data_dir(tmp_path, small_counts):
    arrays = make_idx_dir(tmp_path / "tmp")
    (tmp_path / "tmp" / "mnist").rename(tmp_path / "flat")
    x_tr, *_ = data.load_raw("fashion-mnist", tmp_path / "flat", download_ok=False)
    np.testing.assert_array_equal(x_tr[:, 0], arrays["train"][0])
