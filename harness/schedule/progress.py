"""A local sweep's progress: a line per finished epoch of each run, with an ETA.

Each task appends an `epoch` line to its run's attempts.jsonl after every epoch
(harness.schedule.job); the sweep reads the lines written since it started (at most once a
second per running run, only the file's tail) and prints the new ones. The ETA assumes the
epochs still to run take as long, on average, as those this sweep has run so far (all
slots together): a rough guide when methods differ in cost, never a measurement.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from harness import store
from harness.schedule.job import read_attempts
from harness.text import duration

READ_EVERY_S = 1.0


class Progress:
    def __init__(self, root: Path, specs: list, out: Callable[[str], None], describe=None):
        self.root, self.out = Path(root), out
        self.describe = describe or (lambda spec: f"{spec.method}/{spec.arch}")
        self.epochs = {s.run_id: s.epochs for s in specs}   # every run this sweep will run
        self.base: dict[str, int] = {}    # epochs a run had before this sweep (a resume)
        self.last: dict[str, int] = {}    # its latest epoch seen
        self.read_at: dict[str, float] = {}
        self.t_wall, self.t0 = time.time(), time.monotonic()

    def poll(self, specs: list, force: bool = False) -> None:
        """Print the epochs the running `specs` finished since the last look."""
        now = time.monotonic()
        for spec in specs:
            if not force and now - self.read_at.get(spec.run_id, -READ_EVERY_S) < READ_EVERY_S:
                continue
            self.read_at[spec.run_id] = now
            lines = [a for a in read_attempts(store.run_dir(self.root, spec))
                     if a.get("event") == "epoch" and _number(a.get("t")) and a["t"] >= self.t_wall
                     and _whole(a.get("epoch"))]
            for a in lines:
                if a["epoch"] <= self.last.get(spec.run_id, 0):
                    continue
                self.base.setdefault(spec.run_id, a["epoch"] - 1)
                self.last[spec.run_id] = a["epoch"]
                acc = a.get("val_acc")
                self.out(f"  {spec.run_id} {self.describe(spec)} seed {spec.seed}: epoch {a['epoch']}/"
                         f"{spec.epochs}" + (f", val acc {100 * acc:.2f}%" if _number(acc) else "")
                         + self.eta())

    def finished(self, spec) -> None:
        """The run ended (done, failed or elsewhere): nothing of it is left to run."""
        self.poll([spec], force=True)
        self.base.setdefault(spec.run_id, self.last.get(spec.run_id, spec.epochs))
        self.last[spec.run_id] = max(self.last.get(spec.run_id, 0), spec.epochs)

    def eta(self) -> str:
        """'; sweep 12/40 epochs, about 3 min left' (from the epochs run since the sweep began)."""
        run_here = sum(self.last[r] - self.base[r] for r in self.last if r in self.base)
        total = sum(self.epochs.values())
        left = sum(max(0, n - self.last.get(r, 0)) for r, n in self.epochs.items())
        text = f"; sweep {total - left}/{total} epochs"
        if run_here > 0 and left > 0:
            text += f", about {duration((time.monotonic() - self.t0) / run_here * left)} left"
        return text


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
