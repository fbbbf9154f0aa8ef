"""Host memory of a training run, checked before the model is allocated.

The network is first built on torch's ``meta`` device (shapes only, no storage), its
working set is estimated from those shapes, and the run is refused with one line when
the estimate exceeds the memory the machine has available. The estimate is an upper
bound in spirit (every tensor a step can hold at once), not a measurement:

- weights, their gradients and the optimiser's per-weight state (Adam: 2 words, SGD with
  momentum: 1), 4 bytes each, plus buffers; a chip-trained unit also keeps its integer
  weight table (8 bytes per weight);
- training activities: the positive, negative and neutral passes of one batch through
  every unit, with a gradient and an activation mask each (×4);
- evaluation: ``EVAL_BATCH`` test samples × the C label codes through the widest unit,
  forward value and goodness input (×2).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ffneuro.config import RunConfig

FLOAT_BYTES = 4
INT_TABLE_BYTES = 8
EVAL_BATCH = 1000          # FFNetwork.goodness_table's batch
OPTIMIZER_WORDS = {"adam": 2, "sgd": 1}


class HostMemoryError(ValueError):
    """The run would need more host memory than the machine has available."""


def training_memory_bytes(net, cfg: RunConfig, batch: int, chip: bool) -> int:
    """Estimated peak host memory of training ``net`` (built on any device, ``meta``
    included) with ``cfg``'s optimiser at ``batch`` samples per step, in bytes."""
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    words = 2 + OPTIMIZER_WORDS.get(cfg.optim.optimizer, 2)
    weights_bytes = params * FLOAT_BYTES * words + buffers + (params * INT_TABLE_BYTES if chip else 0)
    widths = [math.prod(u.out_shape) for u in net.layers]
    train_bytes = 3 * batch * sum(widths) * FLOAT_BYTES * 4
    eval_bytes = EVAL_BATCH * net.num_classes * max(widths) * FLOAT_BYTES * 2
    return int(weights_bytes + max(train_bytes, eval_bytes))


def available_memory_bytes() -> int | None:
    """Memory the machine can give this process now (Linux: MemAvailable; elsewhere the
    free physical pages), or None when it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_host_memory(need_bytes: int, available_bytes: int | None, what: str) -> None:
    """Refuse (one line) when ``need_bytes`` exceeds what is available."""
    if available_bytes is not None and need_bytes > available_bytes:
        raise HostMemoryError(f"{what} needs about {need_bytes / 2**30:.1f} GiB of memory to train, "
                              f"this machine has {available_bytes / 2**30:.1f} GiB available "
                              "(use narrower units or a smaller loop.batch_size)")


def shape_only(build):
    """``build()`` with every tensor it creates on the meta device (no storage)."""
    with torch.device("meta"):
        return build()
