"""FCNN's split-complex ReLU (methods/fcnn.py `ComplexReLU`, one ReLU over the real view
since issue 26) equals the Re/Im-split form it replaces (tests/reference_layers.py), in
values and gradients, exactly (a ReLU per real number either way), on the layouts it
meets: contiguous, the permuted view `spectral_matmul` returns, and a lazily conjugated
tensor."""

from __future__ import annotations

import pytest
import torch

from methods.fcnn import ComplexReLU
from reference_layers import split_complex_relu


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "conj"])
def test_complex_relu_equals_split_form(layout):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, 5, 6, 2, generator=g, dtype=torch.float64)
    base[0, 0, 0, :3, 0] = 0.0                                       # ties at the kink
    z0 = torch.view_as_complex(base)
    z0 = {"contiguous": z0, "permuted": z0.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2),
          "conj": z0}[layout]
    za, zb = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    prep = (lambda t: t.conj()) if layout == "conj" else (lambda t: t)
    out, ref = ComplexReLU()(prep(za)), split_complex_relu(prep(zb))
    assert torch.equal(out, ref)
    grad = torch.view_as_complex(torch.randn(*out.shape, 2, generator=g, dtype=torch.float64))
    (out.conj() * grad).real.sum().backward()
    (ref.conj() * grad).real.sum().backward()
    assert torch.equal(za.grad, zb.grad)
