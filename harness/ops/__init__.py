"""Operation counts (forward and backward) that see what spectral methods really spend.

fvcore and `torch.utils.flop_counter` count every FFT as 0, count a complex MAC as one
real MAC and ignore element-wise products. This package counts with our own rules in
both tools, under one convention (`CONVENTION`, id `sb-macs-v2`; docs/ops.md quotes it),
split along fvcore's own lines:

    convention.py  the convention: text, id, categories, FFT/einsum costs, shared
                   element-wise rules, zero-cost ops, the paper's figure (no torch)
    handles.py     the rules as fvcore JIT handles and FlopCounterMode mappings
    count.py       the engine: count_ops (model), count_module_ops (layer), the cross-check
                   of the two forward counts, the per-sample split, the `ops` command

    count_ops(model, input_shape)
      forward:  fvcore JitModelAnalysis (TorchScript trace) + handles.jit_handles
      backward: FlopCounterMode + handles.make_flop_counter (also a second forward,
                cross-checked against fvcore's: `crosscheck_fwd`)
      batch 2:  every figure split into per_sample + batch_fixed
      -> a JSON-serializable dict, stored as `ops` in the run record

The engine's names load torch and fvcore on first use (reports read the convention
without them); `from harness.ops import count_ops` works as before.
"""

from __future__ import annotations

import importlib

from harness.ops.convention import (CATEGORIES, COMPLEX, CONV_LINEAR, CONVENTION, CONVENTION_ID,
                                    CONVENTION_SUMMARY, ELEMENTWISE, FFT, FFT_FUNCTIONS, OTHER,
                                    PAPER_READINGS, PAPER_RULE, SHARED_RULES,
                                    ZERO_COST_OPS, UnsupportedOperatorError, einsum_macs, fft_macs,
                                    fft_plan, is_zero_cost, paper_figure)

_ENGINE = {name: "harness.ops.count" for name in (
    "count_ops", "count_module_ops", "count_params", "tool_versions", "format_table",
    "ops_command")}

__all__ = ["CATEGORIES", "COMPLEX", "CONV_LINEAR", "CONVENTION", "CONVENTION_ID",
           "CONVENTION_SUMMARY", "ELEMENTWISE", "FFT", "FFT_FUNCTIONS", "OTHER", "PAPER_READINGS",
           "PAPER_RULE", "SHARED_RULES", "ZERO_COST_OPS", "UnsupportedOperatorError",
           "einsum_macs", "fft_macs", "fft_plan", "is_zero_cost", "paper_figure", *_ENGINE]


def __getattr__(name: str):
    if name in _ENGINE:
        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module 'harness.ops' has no attribute {name!r}")
