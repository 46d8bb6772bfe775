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
