"""The CPU allocator policy (harness.allocator): applied by `activate` on the CPU, recorded,
and it does what it is for: a freed large block is reused without fresh page faults."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from harness import allocator
from harness.device import activate
from harness.env import environment

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# a step's pattern: large tensors (64 MiB: above glibc's largest mmap threshold, 32 MiB)
# allocated, written and freed, again and again; the heap settles after a few steps
PROBE = """
import json, resource, torch
from harness import allocator
from harness.device import activate
activate(torch.device("cpu"), "fp32")
n = 16 * 2**20
def step():
    x = torch.ones(n); y = torch.ones(n // 3); del x; z = torch.ones(n); del y, z
for _ in range(6):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
print(json.dumps({"faults": faults, "state": allocator.state()}))
"""


def probe(env_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop(allocator.ENV, None)
    if env_value is not None:
        env[allocator.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the malloc policy exists only on Linux with glibc")
def test_tuned_malloc_reuses_freed_blocks_without_page_faults():
    tuned, default = probe(None), probe("default")
    assert tuned["state"]["policy"] == "glibc-keep"
    assert tuned["state"]["settings"] == {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}
    assert default["state"]["policy"] == "default"
    pages = 16 * 2**20 * 4 / 4096              # of one 64 MiB tensor; a step makes two
    # glibc's defaults: each 64 MiB block is mmapped and unmapped, so every step touches
    # fresh pages; tuned: the heap keeps them
    assert default["faults"] > 0.5 * pages
    assert tuned["faults"] < 0.01 * pages


def test_activate_on_cpu_applies_and_records_the_policy():
    activate(torch.device("cpu"), "fp32")
    state = allocator.state()
    assert state["policy"] in ("glibc-keep", "default", "partial")
    assert state == allocator.tune()           # once per process: the same record
    assert environment(torch.device("cpu"))["allocator"] == state
    if GLIBC and os.environ.get(allocator.ENV, "") != "default":
        assert state["policy"] == "glibc-keep"
