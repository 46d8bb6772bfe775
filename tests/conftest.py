"""Shared fixtures: the real data directory (skips when absent) and small datasets; the
`real_slurm` marker on every test that needs the local SLURM (`.ci/run` runs them alone)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path | None:
    """$SPECTRAL_BENCH_DATA, else ../shared/data beside the checkout, if it holds MNIST."""
    for cand in (os.environ.get("SPECTRAL_BENCH_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return Path(cand)
    return None


@pytest.fixture
def mnist_dir():
    d = real_data_dir()
    if d is None:
        pytest.skip("real MNIST not found (set SPECTRAL_BENCH_DATA to a folder with mnist/)")
    return d


@pytest.fixture
def cifar_dir():
    d = real_data_dir()
    if d is None or not (d / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.skip("real CIFAR-10 not found (set SPECTRAL_BENCH_DATA to a folder with "
                    "cifar-10-batches-py/)")
    return d


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Never touch the user's cache or ./results from tests."""
    monkeypatch.setenv("SPECTRAL_BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost (restored afterwards).

    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    """Tests that use the real SLURM (the `slurm` fixture, tests/test_schedule.py) carry the
    `real_slurm` marker: .ci/run runs them with `-m real_slurm` once SLURM is installed."""
    for item in items:
        if "slurm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_slurm)
