"""Per-unit optimisers and learning-rate schedules.

Each layer unit owns its optimiser (no state is shared across layers), so a layer could
run in its own process. Schedules are pure functions of the epoch.
"""

from __future__ import annotations

import torch


def lr_factor(epoch: int, total_epochs: int, schedule: str, milestones: tuple[int, ...] = (),
              gamma: float = 0.1) -> float:
    """Multiplier on the base learning rate for 0-based ``epoch``.

    ``constant``: 1. ``linear-decay`` (Hinton's ffcode, loeweX): 1 for the first half of
    the epochs, then ``(total − epoch) / (total − half)``, i.e. linearly towards 0 with the
    last epoch at 1/(total − half) so it still learns. ``multistep``:
    ``gamma ** (number of milestones <= epoch)``.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "linear-decay":
        half = total_epochs // 2
        if epoch < half:
            return 1.0
        return (total_epochs - epoch) / max(1, total_epochs - half)
    if schedule == "multistep":
        return gamma ** sum(1 for m in milestones if epoch >= m)
    raise ValueError(f"unknown lr schedule {schedule!r}")


def make_optimizer(params, kind: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r} (allowed: adam, sgd)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
