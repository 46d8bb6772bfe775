"""Small helpers shared by the tests."""

import functools
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import methods
from harness.ops import UnsupportedOperatorError, count_ops
from harness.spec import RunSpec


# Float results of FFT, BLAS and oneDNN kernels are compared with this tolerance, never
# with ==. Their last bits depend on the CPU (vector width, which elements of a batch land
# in a SIMD remainder loop, the kernel's blocking): two identical batch elements of one
# FFT differed by 1.1e-16 on an AMD EPYC and not on an Intel Xeon. Bitwise equality is
# asserted only where it holds by construction: a copy or an index operation, or the
# same computation repeated on the same inputs in one process (determinism, resume).
KERNEL_TOL = {torch.float64: (1e-12, 1e-12), torch.complex128: (1e-12, 1e-12),
              torch.float32: (1e-5, 1e-6), torch.complex64: (1e-5, 1e-6)}   # (rtol, atol)


def assert_kernel_close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """`actual` equals `expected` to the rounding of FFT/BLAS/oneDNN kernels (KERNEL_TOL)."""
    rtol, atol = KERNEL_TOL[actual.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=msg or None)


def rand(*shape, seed=0, complex_=False) -> torch.Tensor:
    """A float64 (or complex128) standard-normal tensor, reproducible by seed."""
    g = np.random.default_rng(seed)
    a = g.standard_normal(shape)
    if complex_:
        a = a + 1j * g.standard_normal(shape)
    return torch.from_numpy(a)


# Independent references for the spectral primitives (tests/test_fourier.py, test_cemnet.py):
# F.conv2d on a circularly padded input, numpy FFTs, float64 gradcheck.
def circ_corr_tl(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """CNN cross-correlation with circular wrap, kernel anchored top-left (F.conv2d)."""
    kh, kw = w.shape[-2:]
    return F.conv2d(F.pad(x, (0, kw - 1, 0, kh - 1), mode="circular"), w)


def rev(a: torch.Tensor) -> torch.Tensor:
    """a[(-i) mod H, (-j) mod W]."""
    return torch.roll(torch.flip(a, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def np_kernel_spectrum(w: torch.Tensor, size) -> np.ndarray:
    """numpy fft2 of the (Cout, Cin, k, k) kernel zero-padded top-left, as (Cin, Cout, H, W)."""
    wn = w.detach().numpy().transpose(1, 0, 2, 3)
    padded = np.zeros(wn.shape[:2] + tuple(size))
    padded[..., :wn.shape[-2], :wn.shape[-1]] = wn
    return np.fft.fft2(padded)


def np_maxpool2(y: np.ndarray) -> np.ndarray:
    b, c, h, w = y.shape
    y = y[..., :h // 2 * 2, :w // 2 * 2]
    return y.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def gradcheck(fn, inputs, **kw):
    """float64 gradcheck; fast mode (random projections of the Jacobian) keeps it quick."""
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True, **kw)


def crandn(*shape):
    return torch.randn(*shape, dtype=torch.complex128)


def _hermitian(z: np.ndarray) -> bool:
    zr = np.roll(np.flip(z, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))
    return np.allclose(zr, np.conj(z), atol=1e-10)


# methods.cnn's networks, for methods that replace only their convolutions:
# (cin, cout, k, map side) of each conv, and the parameters of everything else (BatchNorm
# gamma/beta, FC weights and biases), from the layer sizes as in tests/test_cnn.py.
CNN_CONVS = {
    "lenet5": [(1, 6, 5, 28), (6, 16, 5, 14)],
    "vgg-small": [(3, 64, 3, 32), (64, 128, 3, 16), (128, 256, 3, 8), (256, 512, 3, 4),
                  (512, 512, 3, 2)],
}
CNN_SKELETON_PARAMS = {
    "lenet5": 2 * (6 + 16) + (784 * 120 + 120 + 240) + (120 * 84 + 84 + 168) + 84 * 10 + 10,
    "vgg-small": 2 * (64 + 128 + 256 + 512 + 512) + (512 * 512 + 512 + 1024) + 512 * 10 + 10,
}
CNN_SHAPES = {"lenet5": (1, 28, 28), "vgg-small": (3, 32, 32)}


class InProcessExecutor:
    """submitit.LocalExecutor's interface, running each job in this process at submit."""

    submitted: list[dict] = []

    def __init__(self, folder, python=None):
        self.folder, self.params = Path(str(folder).replace("%j", "inproc")), {"python": python}

    def update_parameters(self, **kw):
        self.params.update(kw)

    def submit(self, fn, *args):
        InProcessExecutor.submitted.append(dict(self.params))
        job = types.SimpleNamespace(job_id=str(len(InProcessExecutor.submitted)),
                                    paths=types.SimpleNamespace(stdout=self.folder / "log.out"),
                                    done=lambda: True, cancel=lambda: None)
        try:
            value = fn(*args)
            job.result = lambda: value
        except Exception as exc:  # noqa: BLE001 - re-raised by result(), as submitit does
            def fail(exc=exc):
                raise exc
            job.result = fail
        return job


# Registered models at their natural input size, and their op counts (cached: the counts
# of one (method, arch) serve tests/test_ops.py and tests/test_registry_contract.py).
def natural_shape(arch: str) -> tuple[int, int, int]:
    """MNIST shape for the LeNet family, CIFAR-10 shape for everything else (VGG)."""
    return (1, 28, 28) if arch.startswith("lenet") else (3, 32, 32)


def build(method: str, arch: str):
    shape = natural_shape(arch)
    torch.manual_seed(0)
    return methods.build(RunSpec(method, arch, "test"), shape, 10), shape


@functools.lru_cache(maxsize=None)
def counted(method: str, arch: str) -> dict:
    """count_ops of a registered model. Counts depend only on shapes and dtypes, so the
    model is first built on the meta device (skipping the initialisation arithmetic, the
    slow part for big spectral models) and given uninitialised CPU storage; a model that
    cannot be built or counted that way is built normally."""
    shape = natural_shape(arch)
    try:
        with torch.device("meta"):
            model = methods.build(RunSpec(method, arch, "test"), shape, 10)
        return count_ops(model.to_empty(device="cpu"), shape)
    except UnsupportedOperatorError:
        raise
    except Exception:   # noqa: BLE001 - fall back to the ordinary build
        model, shape = build(method, arch)
        return count_ops(model, shape)


# A simulated GPU for the GPU code paths on a machine without one (tests/test_gpu_paths.py,
# tests/test_graph.py): torch.cuda's device queries answer for a 2-GPU machine, set_device
# performs torch's real index check, synchronize is counted, memory statistics read 0.
SIMULATED_GPU = "Simulated H200"


def install_fake_cuda(monkeypatch) -> types.SimpleNamespace:
    from torch.cuda._utils import _get_device_index

    state = types.SimpleNamespace(current=0, set_calls=[], syncs=0)

    def set_device(device):
        state.current = _get_device_index(device)   # torch's own check: needs an index
        state.set_calls.append(state.current)

    def get_device_properties(device):
        return types.SimpleNamespace(name=SIMULATED_GPU, total_memory=141 * 2**30)

    def synchronize(device=None):
        state.syncs += 1

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cuda, "current_device", lambda: state.current)
    monkeypatch.setattr(cuda, "set_device", set_device)
    monkeypatch.setattr(cuda, "get_device_name", lambda device=None: SIMULATED_GPU)
    monkeypatch.setattr(cuda, "get_device_properties", get_device_properties)
    monkeypatch.setattr(cuda, "synchronize", synchronize)
    monkeypatch.setattr(cuda, "memory_reserved", lambda device=None: 0)
    return state
