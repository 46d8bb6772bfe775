"""The CPU memory-allocator policy: one process-wide malloc setting for every method.

PyTorch's CPU tensors come from the C library's `malloc`. glibc serves large blocks with
`mmap` and gives them back with `munmap` when they are freed, and it trims the top of
its heap back to the system once enough of it is free; either way, the next step's
tensors of that size land on fresh pages, and every 4 KiB page costs a page fault on
first touch. A training step frees and allocates the same activation-sized blocks every
step, so on the CPU a step can spend much of its time in page faults (the CEMNet
LeNet-5 step had ~1,500 minor faults per step, the VGG-small one ~24,000, the CNN's
~3,000; `python -m measure.steps` records `faults_per_step` in every row). A GPU run
does not meet this: PyTorch's CUDA caching allocator keeps freed blocks.

`tune()` therefore sets, through glibc's `mallopt` (Linux with glibc only; elsewhere a
no-op, recorded as such):
- M_MMAP_MAX = 0: no block is served by `mmap` (each one comes from the heap, which
  keeps its pages after a free);
- M_TRIM_THRESHOLD = -1: the heap is never trimmed.
The process then keeps, after a step, the memory the step needed at its peak (what the
CUDA caching allocator does on a GPU) and reuses it on the next step. It is applied the
same way for every method when a run or the step benchmark starts on the CPU
(`harness.device.activate`), once per process (settings cannot be undone), and recorded
in the run record (`environment.allocator`) and in the step benchmark's rows.
`SPECTRAL_BENCH_MALLOC=default` leaves glibc's defaults (to measure the difference:
docs/speed.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV = "SPECTRAL_BENCH_MALLOC"
# glibc's mallopt parameter numbers (malloc.h) and the values set
SETTINGS = (("M_MMAP_MAX", -4, 0), ("M_TRIM_THRESHOLD", -1, -1))

_state: dict | None = None


def tune() -> dict:
    """Apply the policy once in this process (later calls return what was done) and
    return its record: {"policy": "glibc-keep" | "default", "why": ..., "settings": {...}}."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get(ENV, "").strip().lower() == "default":
        _state = {"policy": "default", "why": f"{ENV}=default", "settings": {}}
        return _state
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        _state = {"policy": "default", "why": "not Linux with glibc (no mallopt)",
                  "settings": {}}
        return _state
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError) as exc:
        _state = {"policy": "default", "why": f"libc.so.6 has no mallopt ({exc})",
                  "settings": {}}
        return _state
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = {name: value for name, param, value in SETTINGS if mallopt(param, value) == 1}
    failed = [name for name, _, _ in SETTINGS if name not in done]
    _state = {"policy": "glibc-keep" if not failed else "partial",
              "why": f"mallopt refused {', '.join(failed)}" if failed else "",
              "settings": done}
    return _state


def state() -> dict:
    """What this process runs with (the record's `environment.allocator`)."""
    return _state if _state is not None else {"policy": "default", "why": "not applied",
                                              "settings": {}}
