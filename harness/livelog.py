"""Live training curves: `--log tensorboard` writes each epoch's numbers as TensorBoard
scalars while the run trains (`tensorboard --logdir results/`).

Logging is an observer, not part of the run: it is a command-line flag, never a spec key,
so it leaves the run id, the fingerprint and the numbers alone, and a run logged once and
resumed without it is still the same run. Events go to `<run dir>/tensorboard/`, one
event file per session (TensorBoard joins them by epoch); the scalars are those of
history.csv: train/loss, train/acc, val/loss, val/acc, lr and time/train_s per epoch.

torch.utils.tensorboard needs the `tensorboard` package, an optional extra
(`pip install -e '.[tensorboard]'`); without it `--log tensorboard` is refused in one
line before the run starts.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError

KINDS = ("tensorboard",)
SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss",
           "val_acc": "val/acc", "lr": "lr", "train_s": "time/train_s"}


def check(kind: str | None) -> None:
    """Refuse an unknown kind, or tensorboard when its package is missing (one line)."""
    if kind is None:
        return
    if kind not in KINDS:
        raise UserError(f"--log {kind}: unknown; use --log tensorboard (or leave it out)")
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError("--log tensorboard needs the tensorboard package: "
                        "pip install -e '.[tensorboard]' (or pip install tensorboard)") from None


class TensorBoardLog:
    """An `on_epoch` observer writing each history row as scalars at step = epoch."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def __call__(self, row: dict) -> None:
        for key, tag in SCALARS.items():
            value = row.get(key)
            if isinstance(value, (int, float)):
                self.writer.add_scalar(tag, value, global_step=int(row["epoch"]))
        self.writer.flush()     # live: visible after every epoch, not only at the end

    def close(self) -> None:
        self.writer.close()
