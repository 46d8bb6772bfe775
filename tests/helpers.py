"""Small helpers shared by the tests."""

import types
from pathlib import Path

import numpy as np
import torch


def rand(*shape, seed=0, complex_=False) -> torch.Tensor:
    """A float64 (or complex128) standard-normal tensor, reproducible by seed."""
    g = np.random.default_rng(seed)
    a = g.standard_normal(shape)
    if complex_:
        a = a + 1j * g.standard_normal(shape)
    return torch.from_numpy(a)


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

    def __init__(self, folder):
        self.folder, self.params = Path(str(folder).replace("%j", "inproc")), {}

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
