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
    """The units updated in each stage: all at once (``network``, ``alternate``) or one at
    a time (``layer``).

    >>> stages("network", 3), stages("layer", 2)
    ([[0, 1, 2]], [[0], [1]])
    """
    return [[i] for i in range(n_units)] if schedule == "layer" else [list(range(n_units))]


def active_units(stage: list[int], *, epoch: int, batch: int, schedule: str, unit_epochs: tuple[int, ...] = (),
                 chunk: int = 1) -> list[int]:
    """The units of ``stage`` that learn on mini-batch ``batch`` of 0-based ``epoch``.

    ``unit_epochs[i]``: unit i learns in epochs 0..unit_epochs[i]−1 only (CwComp's
    interleaved layer training, ILT). ``alternate``: the still-learning units split into
    chunks of ``chunk`` consecutive units, and batch t updates chunk t mod K (each unit
    still strictly local; seed 002's chunked updates, where gradient flows inside a chunk,
    are ``chunks``: see ``chunks_of``).

    >>> active_units([0, 1, 2], epoch=0, batch=4, schedule="alternate", chunk=2)
    [0, 1]
    >>> active_units([0, 1, 2], epoch=0, batch=5, schedule="alternate", chunk=2)
    [2]
    >>> active_units([0, 1, 2], epoch=3, batch=0, schedule="network", unit_epochs=(3, 4, 4))
    [1, 2]
    """
    units = [i for i in stage if i >= len(unit_epochs) or epoch < unit_epochs[i]]
    if schedule == "alternate" and units:
        chunks = [units[k:k + chunk] for k in range(0, len(units), chunk)]
        return chunks[batch % len(chunks)]
    return units


def chunks_of(units: list[int], chunk: int, batch: int) -> list[list[int]]:
    """Seed 002's chunked local updates (``loop.schedule = chunks``): the learning units
    (ascending) grouped into chunks of ``chunk`` consecutive units, inside which each unit's
    loss is backpropagated through the chunk's earlier units (and no further). On odd
    batches the boundaries shift by ``chunk // 2``, so that no boundary stays fixed (the
    chunks alternate between iterations). A unit whose predecessor does not learn starts
    a chunk; ``chunk = 1`` is every unit on its own (the ``network`` schedule).

    >>> chunks_of([0, 1, 2, 3], 2, batch=0), chunks_of([0, 1, 2, 3], 2, batch=1)
    ([[0, 1], [2, 3]], [[0], [1, 2], [3]])
    >>> chunks_of([0, 1, 3, 4], 2, batch=0), chunks_of([0, 1, 2], 1, batch=1)
    ([[0, 1], [3], [4]], [[0], [1], [2]])
    """
    shift = chunk // 2 if batch % 2 else 0
    groups: list[list[int]] = []
    for u in units:
        if groups and u == groups[-1][-1] + 1 and (u + shift) % chunk != 0:
            groups[-1].append(u)
        else:
            groups.append([u])
    return groups
