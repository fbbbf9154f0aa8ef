"""The convolutional ReLU unit: graded neurons behind a convolution synapse
(``units/synapse.py``), learning by their own local objective.

``h = bn(pool(relu(conv(n(x)))))``: ``n`` the FF normalisation of the whole input map
(SPEC §1; ``none`` for CwComp's stacks, which normalise outputs instead), an optional
``pool``×``pool`` max-pool and, with ``batch_norm``, a batch normalisation of each output
channel after pooling (CwComp's order). The goodness is that of the unit's output
activity ``h``: Σh² over all positions and channels for the FF losses, or the channel-wise
group goodness for the competitive loss (``units.base.local_objective``).

Batch norm on a chip: at inference a batch-normalised channel is ``a_c · x + b_c`` with
``a_c = γ_c / sqrt(σ²_c + ε)`` and ``b_c = β_c − a_c μ_c`` from the running statistics, a
per-channel scale and bias the output stage applies after pooling. In training ffneuro
uses the batch statistics (the unit's own activity, never another unit's), as CwComp.

Shapes: x (N, C_in, H, W) → h (N, C_out, H', W'); a flat (N, C_in·H·W) input is read as
maps of ``in_shape``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffneuro.functional.goodness import goodness, normalize
from ffneuro.hw.chip import ChipSpec
from ffneuro.units.base import ExportTables, Resources, StepResult, UnitSpec, local_objective
from ffneuro.units.dense import relu
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.units.synapse import ConvSynapse, SynapticUnit

BN_EPS = 1e-4      # CwComp's batch-norm ε


class FFConv(SynapticUnit, nn.Module):
    """A convolutional ReLU unit trained by its own local objective (the unit contract of
    units/base.py).

    Example::

        unit = FFConv((3, 32, 32), 20, UnitSpec(loss="cwc", norm="none"), kernel=3, padding=1,
                      batch_norm=True, generator=torch.Generator().manual_seed(0))
        h = unit(x)                                  # (N, 20, 32, 32)
        r = unit.local_step(x, targets=y)            # one local update; r.h feeds the next unit
    """

    def __init__(self, in_shape: tuple[int, int, int], out_channels: int, spec: UnitSpec, *,
                 generator: torch.Generator, kernel: int = 3, stride: int = 1, padding: int = 0,
                 groups: int = 1, pool: int = 1, batch_norm: bool = False, chip: ChipSpec | None = None,
                 onchip_lr: float = 2.0 ** -2):
        super().__init__()
        if chip is not None:
            raise ValueError("conv units are not yet simulated under a fixed-point profile: train them in "
                             "float (no --profile) for now")
        c, h, w = in_shape
        if c % groups:
            raise ValueError(f"groups = {groups} must divide the {c} input channels of a conv unit")
        self.spec = spec
        self.chip = chip
        self.lr = spec.lr
        self.onchip_lr = onchip_lr
        self.pool = pool
        self.in_shape = (c, h, w)
        fan_in = (c // groups) * kernel * kernel
        # PyTorch's default conv initialisation bound 1/sqrt(fan_in), drawn from the unit's stream.
        bound = 1.0 / math.sqrt(fan_in)
        weight = (torch.rand(out_channels, c // groups, kernel, kernel, generator=generator) * 2 - 1) * bound
        self.synapse = ConvSynapse(weight, stride=stride, padding=padding, groups=groups)
        ho, wo = self.synapse.out_size(h), self.synapse.out_size(w)
        if ho < pool or wo < pool:
            raise ValueError(f"a conv unit with kernel {kernel}, stride {stride}, padding {padding} and pool "
                             f"{pool} does not fit input maps of {h}x{w}")
        self.conv_shape = (out_channels, ho, wo)
        self.out_shape = (out_channels, ho // pool, wo // pool)
        self.in_features = c * h * w
        self.out_features = math.prod(self.out_shape)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS) if batch_norm else None
        self.optimizer = make_optimizer(self.parameters(), spec.optimizer, spec.lr, spec.momentum,
                                        spec.weight_decay)

    # -- inference -------------------------------------------------------------------
    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.dim() == 4 else x.reshape(x.shape[0], *self.in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Activity h (N, C_out, H', W') for input maps x (N, C_in, H, W)."""
        h = relu(self.synapse.current(normalize(self.maps(x), self.spec.norm)), self.spec.relu_grad)
        if self.pool > 1:
            h = F.max_pool2d(h, self.pool)
        return self.bn(h) if self.bn is not None else h

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """Goodness (N,) of the whole output map (Σh² over channels and positions, or the
        configured kind)."""
        return goodness(h.flatten(1), self.spec.goodness)

    # -- learning --------------------------------------------------------------------
    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None:
        self.lr = lr
        if onchip_lr is not None:
            self.onchip_lr = onchip_lr
        set_lr(self.optimizer, lr)

    @property
    def calibrated(self) -> bool:
        return False

    def calibrate(self, x: torch.Tensor) -> None:
        raise ValueError("conv units are not yet simulated under a fixed-point profile")

    def local_step(self, x: torch.Tensor, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   targets: torch.Tensor | None = None) -> StepResult:
        """One local update. With ``targets`` (channel-wise competition) x holds N samples;
        otherwise the B positives then the B negatives. Only this unit's parameters (and
        its batch-norm scale and shift) receive gradient: the input carries no graph."""
        h = self(x.detach())
        loss, g_pos, g_neg = local_objective(self.spec, h, self.goodness, targets, gamma_pos, gamma_neg)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)   # streaming: only the new weights outlive the step
        return StepResult(h.detach(), float(loss.detach()), g_pos.detach(), g_neg.detach())

    # -- what the rest of ffneuro asks of a unit -------------------------------------
    @staticmethod
    def default_theta(goodness_kind: str, width: int) -> float:
        """θ by default: as for dense units, from the number of outputs (C·H'·W')."""
        return {"sumsq": float(width), "meansq": 1.0, "sum": float(width), "neg-sumsq": -width / 4.0}[goodness_kind]

    def head_activity(self, h: torch.Tensor) -> torch.Tensor:
        """The activity (N, C·H'·W') the one-pass head reads: the output map, flattened."""
        return h.flatten(1)

    def integer_goodness(self, h: torch.Tensor) -> torch.Tensor:
        raise ValueError("conv units have no integer datapath yet")

    def forward_events(self, x_in: torch.Tensor, h_out: torch.Tensor) -> dict[str, float]:
        raise ValueError("conv units have no event model yet: estimate dense and spiking stacks only")

    def update_events(self, x_in: torch.Tensor, batch: int, update_batch: int) -> dict[str, float]:
        raise ValueError("conv units have no event model yet: estimate dense and spiking stacks only")

    def resources(self) -> Resources:
        """Kernels as synapses (shared by every output position); one neuron per conv
        output position and channel (before pooling)."""
        return Resources(fan_in=self.synapse.fan_in, fan_out=self.synapse.fan_out, synapses=self.synapse.synapses,
                         neurons=math.prod(self.conv_shape))

    def export_tables(self) -> ExportTables:
        raise ValueError("conv units have no integer export yet")

    def nir_nodes(self, index: int) -> list:
        raise ValueError("NIR has no ReLU node: export graded units with --format hdf5")
