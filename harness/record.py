"""The run record (`result.json`, schema v1) as its readers see it: `RunRecord`.

Every field but the status is optional, so records of older versions and of runs that
failed early stay readable; numbers are checked with `is_number` (a record lies in a
results directory anyone in the group may write). The run folder that holds the record
is `harness.store.RunDir`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

STATUS_COMPLETE = "complete"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
FINISHED = (STATUS_COMPLETE, STATUS_DIVERGED)  # re-running these changes nothing


def _table(value) -> dict:
    return value if isinstance(value, dict) else {}


def is_number(value) -> bool:
    """A finite int or float (not a bool, a string or null), as records hold numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RunRecord:
    """A run record (`result.json`, schema v1) as the readers see it.

    Every field but `status` is optional: records of older versions (without
    contention, precision or a convention id, say) and of runs that failed early read as
    well, and a section that is missing or not a table reads as an empty one. `raw` is
    the record as written.
    """

    status: str
    run_id: str | None = None
    schema_version: int | None = None
    spec: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)       # the data actually used (n_train, ...)
    metrics: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    contention: dict = field(default_factory=dict)
    method_info: dict = field(default_factory=dict)
    params: int | None = None
    reason: Any = ""
    started: str | None = None
    finished: str | None = None
    diverged_epoch: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    SECTIONS = ("spec", "dataset", "metrics", "timing", "memory", "ops", "environment",
                "contention", "method_info")

    @classmethod
    def from_json(cls, d: dict) -> "RunRecord":
        if not isinstance(d, dict):
            raise ValueError(f"a run record is a JSON object, got {type(d).__name__}")
        return cls(status=d.get("status"), run_id=d.get("run_id"),
                   schema_version=d.get("schema_version"),
                   **{k: _table(d.get(k)) for k in cls.SECTIONS},
                   params=d.get("params"), reason=d.get("reason", ""), started=d.get("started"),
                   finished=d.get("finished"), diverged_epoch=d.get("diverged_epoch"), raw=d)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def is_complete(self) -> bool:
        return self.status == STATUS_COMPLETE

    @property
    def test_acc(self):
        return self.metrics.get("test_acc")

    @property
    def threads(self):
        """The thread count the run used (spec.threads is 0 for "auto", so not the count)."""
        return self.contention.get("threads") or self.environment.get("threads") \
            or self.spec.get("threads")

    # What a complete record of this harness always holds (the summary line, reports and
    # `run --suite` read them); a record claiming completion without them is not whole.
    COMPLETE_NUMBERS = (("metrics", "test_error"), ("metrics", "test_acc"), ("metrics", "epochs_done"),
                        ("timing", "train_s"), ("timing", "train_s_per_epoch"),
                        ("timing", "throughput_img_s"))

    def missing(self) -> list[str]:
        """For a complete record: the numbers it must hold but lacks (or holds as non-numbers)."""
        if not self.is_complete:
            return []
        return [f"{section}.{key}" for section, key in self.COMPLETE_NUMBERS
                if not is_number(getattr(self, section).get(key))]

    @property
    def unreliable(self) -> bool:
        return bool(self.contention.get("unreliable", False))

    @property
    def unreliable_reasons(self) -> list:
        return list(self.contention.get("reasons") or [])

    @property
    def batchnorm_unsettled(self) -> bool:
        """Evaluation used BatchNorm running statistics that had not settled (harness.batchnorm)."""
        section = self.raw.get("batchnorm") if isinstance(self.raw, dict) else None
        return isinstance(section, dict) and section.get("unsettled") is True
