"""What a pipeline can run, and how: the refusals, the split of units into stages, and
how stale the later stages' copies may be under CFF γ over later units."""

from __future__ import annotations

import os

from ffneuro.config import RunConfig
from ffneuro.network import FFNetwork

REFRESH_ENV = "FFNEURO_PIPELINE_GAMMA_REFRESH"   # CFF γ over later units: batches between refreshes of
                                                # their copies (default: the number of stages)


class PipelineError(ValueError):
    """A pipeline that cannot run as asked (one-line message)."""


class PeerLost(RuntimeError):
    """This stage stopped because another stage failed (not the cause)."""


def check_supported(cfg: RunConfig, stages: int, device: str = "auto") -> None:
    """Refuse, in one line, a pipeline this module does not run exactly as documented."""
    n = cfg.units.n_units
    if not 1 <= stages <= n:
        raise PipelineError(f"--stages {stages}: must be between 1 and {n} (the network has {n} units; "
                            "a stage holds at least one)")
    if cfg.loop.algo not in ("ff", "cff"):
        raise PipelineError(f"--stages with loop.algo = {cfg.loop.algo}: a backprop baseline trains end to end "
                            "in one process")
    if cfg.loop.schedule == "layer":
        raise PipelineError("--stages with loop.schedule = layer: one unit learns at a time, so there is nothing "
                            "to run in parallel (use network or alternate)")
    if cfg.loop.schedule == "chunks":
        raise PipelineError("--stages with loop.schedule = chunks: a chunk's loss is backpropagated across its "
                            "units, which a stage boundary would cut (use network or alternate)")
    if cfg.loop.negatives == "hard":
        raise PipelineError("--stages with loop.negatives = hard: hard negatives need the head's scores from the "
                            "last stage before the first stage's step (use random)")
    if cfg.units.loss == "cwc":
        raise PipelineError("--stages with units.loss = cwc: the channel-wise competitive step is not pipelined")
    if cfg.hardware.profile is not None:
        raise PipelineError("--stages with a hardware profile: the chip datapath (calibration, integer "
                            "activities) is not pipelined; train it in one process")
    if device not in ("auto", "cpu"):
        raise PipelineError(f"--stages with --device {device}: stages run on CPU (gloo)")


def split_stages(costs: list[int], stages: int) -> list[range]:
    """Consecutive units per stage such that the largest stage's cost is smallest (cost:
    a unit's weights; ties go to the split with the smaller first stage, so stage 0,
    which also draws the data, stays light).

    >>> split_stages([785_000, 1_001_000, 1_001_000, 1_031_000], 2)
    [range(0, 2), range(2, 4)]
    >>> split_stages([10, 10, 10], 3)
    [range(0, 1), range(1, 2), range(2, 3)]
    """
    n = len(costs)
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][j]: the smallest largest stage for the first j units in k stages; cut[k][j]: where the last begins
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for j in range(k, n + 1):
            for i in range(j - 1, k - 2, -1):
                v = max(best[k - 1][i], prefix[j] - prefix[i])
                if v < best[k][j]:
                    best[k][j], cut[k][j] = v, i
    bounds, j = [], n
    for k in range(stages, 0, -1):
        bounds.append(range(cut[k][j], j))
        j = cut[k][j]
    return bounds[::-1]


def unit_costs(net: FFNetwork) -> list[int]:
    """Each unit's weights; the head's are counted with the last unit (the last stage trains it)."""
    p = net.trainable_parameters()
    costs = [p[f"unit{i + 1}"] for i in range(len(net.layers))]
    costs[-1] += p.get("head", 0)
    return costs


def gamma_refresh(stages: int) -> int:
    """R, the batches between refreshes of the later stages' copies: $FFNEURO_PIPELINE_GAMMA_REFRESH,
    else the number of stages (the last stage trails the first by about that many batches,
    so a smaller R would make the first wait for it)."""
    text = os.environ.get(REFRESH_ENV, "")
    try:
        every = int(text) if text else stages
    except ValueError:
        raise PipelineError(f"{REFRESH_ENV}={text!r}: must be a whole number of batches >= 1") from None
    if every < 1:
        raise PipelineError(f"{REFRESH_ENV}={text!r}: must be a whole number of batches >= 1")
    return every
