"""Learning-rate schedules (pure functions of the epoch) and the stages of a schedule
(which units learn together)."""

from __future__ import annotations


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



def stages(schedule: str, n_units: int) -> list[list[int]]:
    """The units updated in each stage: all at once (``network``) or one at a time (``layer``).

    >>> stages("network", 3), stages("layer", 2)
    ([[0, 1, 2]], [[0], [1]])
    """
    return [list(range(n_units))] if schedule == "network" else [[i] for i in range(n_units)]
