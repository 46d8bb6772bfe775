"""Small helpers shared by the spectral-operator tests."""

import numpy as np
import torch


def rand(*shape, seed=0, complex_=False) -> torch.Tensor:
    """A float64 (or complex128) standard-normal tensor, reproducible by seed."""
    g = np.random.default_rng(seed)
    a = g.standard_normal(shape)
    if complex_:
        a = a + 1j * g.standard_normal(shape)
    return torch.from_numpy(a)
