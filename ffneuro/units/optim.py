"""Per-unit optimisers: each unit owns its optimiser (no state is shared across units),
so a unit could run in its own process."""

from __future__ import annotations

import torch


def fusable(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused optimiser kernels take these parameters: floating point, all
    on the CPU or all on one CUDA device (not the meta device of a shape-only build)."""
    devices = {p.device.type for p in params}
    return bool(params) and all(p.is_floating_point() for p in params) and len(devices) == 1 and \
        devices <= {"cpu", "cuda"}


def make_optimizer(params, kind: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """The unit's optimiser. Where torch has a fused kernel for the parameters' device, it
    is used: one pass over each parameter per step instead of one per elementwise op (at
    batch 1 the unfused Adam step cost more than the layer's matrix products)."""
    params = list(params)
    fused = True if fusable(params) else None
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer {kind!r} (allowed: adam, sgd)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
