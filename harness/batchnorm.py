"""Have the BatchNorm running statistics that evaluation uses settled?

In training, BatchNorm normalizes with the batch's own statistics; in evaluation (the
validation and test passes) with running averages updated once per training step:
`running = (1 - momentum) * running + momentum * batch`. After `t` steps the initial values
(mean 0, variance 1) still weigh `(1 - momentum) ** t` in them. With PyTorch's default
momentum 0.1 that drops below 5% after 29 steps; with the CEMNet paper's 0.01 (Keras'
0.99) it takes 299 steps, more than half a full MNIST epoch at batch 100. A short check
(50 steps: `--subset 5000 --epochs 1`) then evaluates with statistics that are still 61%
the initial ones, far from those of CEMNet's spectra, so its validation and test accuracy
say little about the model (its training accuracy, with batch statistics, is unaffected).

`unsettled(model, threshold)` reads each BatchNorm layer's own step count
(`num_batches_tracked`, a buffer: it survives a resume) and momentum, and returns what a
warning needs when the largest initial weight exceeds `threshold`. The default, 5%
(about three time constants, `(1 - m) ** (3 / m)` ≈ e^-3), is where the initial values
no longer dominate any statistic; below it the running averages still lag the weights'
last ~1/m steps, which is ordinary BatchNorm behaviour and not flagged. Layers without
running statistics, or with a cumulative average (momentum None), cannot be unsettled.
"""

from __future__ import annotations

import math

import torch.nn as nn

THRESHOLD = 0.05


def unsettled(model: nn.Module, threshold: float = THRESHOLD) -> dict | None:
    """None when every BatchNorm layer's running statistics have settled, else
    {"initial_weight": the largest weight of the initial statistics, "layers": how many are
    unsettled, "momentum": their smallest momentum, "steps": their fewest updates,
    "steps_needed": updates at that momentum for the weight to drop below `threshold`}."""
    worst = None
    layers = 0
    for m in model.modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or not m.track_running_stats \
                or m.momentum is None or m.num_batches_tracked is None:
            continue
        steps = int(m.num_batches_tracked)
        weight = (1.0 - m.momentum) ** steps
        if weight <= threshold:
            continue
        layers += 1
        if worst is None or weight > worst["initial_weight"]:
            worst = {"initial_weight": weight, "momentum": m.momentum, "steps": steps,
                     "steps_needed": math.ceil(math.log(threshold) / math.log(1.0 - m.momentum))}
    if worst is None:
        return None
    return {**worst, "layers": layers, "threshold": threshold}


def warning_text(info: dict, steps_per_epoch: int) -> str:
    """One line: what is wrong and what to do."""
    epochs = math.ceil(info["steps_needed"] / max(1, steps_per_epoch))
    return (f"BatchNorm running statistics have not settled: after {info['steps']} training "
            f"step{'' if info['steps'] == 1 else 's'} at momentum {info['momentum']:g}, the initial "
            f"statistics still weigh {100 * info['initial_weight']:.0f}% in "
            f"{info['layers']} layer{'' if info['layers'] == 1 else 's'}, so the validation and test "
            f"numbers understate the model; train at least {info['steps_needed']} steps (here "
            f"{epochs} epoch{'' if epochs == 1 else 's'}, or a larger --subset)")
