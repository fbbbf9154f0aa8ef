"""The spiking unit: leaky integrate-and-fire neurons (snntorch's ``Leaky``) behind a
dense synapse, as a local plasticity unit (the contract of units/base.py), and the spike
encoder that is the input stage of a spiking stack (SPEC §4).

A spike train is a tensor ``(T, N, features)`` of 0/1 values: T time steps, N samples;
the encoders themselves are pure functions in functional/lif.py.

The neuron (snntorch ``Leaky`` with ``reset_mechanism = "zero"``, ``reset_delay =
False``; the form NIR's LIF node and snntorch's NIR importer use), per step t::

    U'[t] = β · U[t−1] + W · x[t] + b
    S[t]  = H(U'[t] − θ_s)
    U[t]  = U'[t] · (1 − S[t])          (reset to zero; "subtract": U'[t] − S[t] θ_s)

The goodness of a layer is computed on its firing rates r = (1/T) Σ_t S[t]
(``spike_goodness = "rate"``) or on its spike counts c = Σ_t S[t] = T·r (``"count"``: the
same goodness T² larger for ``sumsq``, so with θ scaled by T² the loss is the rate loss
with a T² sharper sigmoid); ``sumsq`` gives Σ_j r_j². Not on the membrane: the snntorch FF
tutorial scores one step's membrane and reports 70 % test error, and a membrane goodness
measured here (``scripts/bench_spiking.py --goodness-study``, docs/results.md) did worse than rates.
Learning is local: the unit backpropagates its own loss through its own T steps with a
surrogate gradient for H (``bptt``: BPTT within the layer; it holds T steps of membrane
and input spikes per sample, which ``estimate.sram_report(learning_history_steps=T)``
charges), or learns online (``eligibility``: running sums of presynaptic traces and
surrogate slopes, memory independent of T; see ``FFSpiking._eligibility_step``). Its
output spikes are handed on detached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import snntorch as snn
import torch
import torch.nn as nn
import torch.nn.functional as F
from snntorch import surrogate

from ffneuro.functional.encoding import CodedBatch
from ffneuro.functional.fixed import DECAY_FRAC_BITS, int_goodness, int_spike_encode
from ffneuro.functional.goodness import goodness, group_goodness
from ffneuro.functional.lif import (ATAN_ALPHA, FAST_SIGMOID_SLOPE, encode, lif_step, rate_encode,  # noqa: F401
                                    spike_activity, surrogate_slope)
from ffneuro.functional.quant import FixedPoint
from ffneuro.hw.events import conv_forward_events, conv_update_events, spike_forward_events, spike_update_events
from ffneuro.units.base import ExportTables, LocalLoss, Resources, StepResult, UnitSpec, format_attrs, local_objective
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.units.synapse import ConvSynapse, DenseSynapse, SynapticUnit



# Rate goodness has far smaller gradients than the goodness of RMS-normalised graded
# activity, so the chip rate of a spiking unit is scaled up. Measured on the digits
# (200×200, T = 8, cmos-45nm, 5 epochs, eligibility rule) at onchip_lr × gain / fan-in:
# gain 8 → 89.7 %, 64 → 21.1 %, 256 → 7.5 % multi-pass error (float: 6.4 %).
SPIKING_CHIP_LR_GAIN = 256.0
TUNED_BATCH_RULE = "mean"   # the hardware.batch_rule SPIKING_CHIP_LR_GAIN was tuned under
SPIKE_THETA = 0.05        # default θ of a spiking unit per neuron, on firing rates (tuned on the digits)
NIR_DT = 1e-4             # snntorch's NIR time step: β = 1 − dt/τ


def batch_rule_note(neuron: str, rule: str, chip_batch: int) -> str | None:
    """Why a network of ``neuron`` units on a chip that holds ``chip_batch`` samples per
    update may learn badly under batch rule ``rule`` (None when nothing is wrong): the
    spiking chip rate was tuned under ``mean``, and ``sqrt`` or ``sum`` scale it by √B or B."""
    if neuron != "lif" or chip_batch <= 1 or rule == TUNED_BATCH_RULE:
        return None
    factor = f"√{chip_batch}" if rule == "sqrt" else str(chip_batch)
    return (f"spiking units on a chip holding {chip_batch} samples per update: their chip rate was tuned with "
            f"hardware.batch_rule = {TUNED_BATCH_RULE}, and {rule} multiplies it by {factor} "
            f"(set hardware.batch_rule={TUNED_BATCH_RULE})")


# ----------------------------------------------------------------------------------------
# The unit
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LIFSpec:
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "zero"
    surrogate: str = "fast_sigmoid"
    learning: str = "bptt"          # bptt (through the unit's own T steps) | eligibility (online traces)
    goodness_on: str = "rate"       # rate (mean_t S) | count (Σ_t S): what the goodness is computed on

    def neuron(self) -> snn.Leaky:
        """snntorch's ``Leaky`` with these parameters (no reset delay: the form of NIR's LIF)."""
        grad = (surrogate.fast_sigmoid(slope=FAST_SIGMOID_SLOPE) if self.surrogate == "fast_sigmoid"
                else surrogate.atan(alpha=ATAN_ALPHA))
        return snn.Leaky(beta=self.beta, threshold=self.threshold, spike_grad=grad,
                         reset_mechanism=self.reset, reset_delay=False)


@dataclass(frozen=True)
class ConvGeometry:
    """The conv synapse of a spiking conv unit: input maps ``in_shape`` (C, H, W), a
    ``kernel``×``kernel`` convolution (``stride``, zero ``padding``, ``groups``) and a
    ``pool``×``pool`` max-pool of the output spikes (an OR over the window: spikes stay
    binary)."""

    in_shape: tuple[int, int, int]
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    groups: int = 1
    pool: int = 1


class FFSpiking(SynapticUnit, nn.Module):
    """A layer of LIF neurons behind a dense or conv synapse (``conv``), trained by its
    own FF objective on its firing rates (or spike counts), with its own optimizer.

    Per step (``lif_step``; for the default reset "zero" computed by snntorch's ``Leaky``)::

        U'[t] = β · U[t−1] + W · x[t] + b,   S[t] = H(U'[t] − θ_s),   U[t] = U'[t] · (1 − S[t])

    (reset "subtract": U[t] = U'[t] − S[t] · θ_s). H has a surrogate gradient
    (``LIFSpec.surrogate``). Goodness: ``goodness(spike_activity(S, goodness_on))``.

    Shapes: x (T, N, in_features) spikes (or currents) → S (T, N, out_features) spikes;
    with a conv synapse x (T, N, C, H, W) → S (T, N, C_out, H', W'); ``goodness`` (N,);
    ``local_step`` takes the B positives then the B negatives (T, 2B, …).

    Example (runs as is)::

        >>> from ffneuro.units.base import UnitSpec
        >>> g = torch.Generator().manual_seed(0)
        >>> unit = FFSpiking(20, 8, UnitSpec(theta=0.4), LIFSpec(beta=0.9, threshold=1.0), generator=g, steps=8)
        >>> x = rate_encode(torch.rand(6, 20, generator=g), 8, g)     # (T, 2B, in): 3 positives, 3 negatives
        >>> s = unit(x); s.shape, unit.goodness(s).shape
        (torch.Size([8, 6, 8]), torch.Size([6]))
        >>> r = unit.local_step(x)                                     # one local update; r.h feeds the next unit
        >>> r.h.requires_grad, r.g_pos.shape
        (False, torch.Size([3]))
    """

    def __init__(self, in_features: int, out_features: int, spec: UnitSpec, lif: LIFSpec, *,
                 generator: torch.Generator, chip=None, steps: int = 8, onchip_lr: float = 2.0 ** -2,
                 binary_input: bool = True, conv: ConvGeometry | None = None):
        super().__init__()
        self.binary_input = binary_input     # its inputs are spikes (accumulate-only synops), not currents
        self.spec = spec
        self.lif_spec = lif
        self.chip = chip
        self.onchip_lr = onchip_lr
        self.steps = steps                   # T: the goodness of spike counts is scaled by 1/T²
        self.pool = 1
        if conv is None:
            w = torch.randn(out_features, in_features, generator=generator) * (2.0 / math.sqrt(in_features))
            self.synapse = DenseSynapse(w)
            self.in_shape, self.conv_shape = (in_features,), (out_features,)
        else:                                # a conv synapse: out_features is the number of output channels
            c, h, wd = conv.in_shape
            fan_in = c // conv.groups * conv.kernel ** 2
            w = torch.randn(out_features, c // conv.groups, conv.kernel, conv.kernel, generator=generator)
            self.synapse = ConvSynapse(w * (2.0 / math.sqrt(fan_in)), stride=conv.stride, padding=conv.padding,
                                       groups=conv.groups)
            self.pool = conv.pool
            self.in_shape = tuple(conv.in_shape)
            self.conv_shape = (out_features, self.synapse.out_size(h), self.synapse.out_size(wd))
        self.out_shape = self.conv_shape if self.pool == 1 else (
            self.conv_shape[0], self.conv_shape[1] // self.pool, self.conv_shape[2] // self.pool)
        self.in_features = math.prod(self.in_shape)
        self.out_features = math.prod(self.out_shape)
        with torch.device("cpu"):       # snntorch reads its scalar buffers while it builds: keep them real
            self.lif = lif.neuron()          # even when the network is sized on the meta device
        self.optimizer = make_optimizer([self.weight, self.bias], spec.optimizer, spec.lr, spec.momentum,
                                        spec.weight_decay)

    # -- fixed point -----------------------------------------------------------------
    def int_params(self) -> dict[str, int]:
        """Bias, threshold and decay in the chip's integer form: membrane in weight LSBs,
        β with DECAY_FRAC_BITS fractional bits."""
        step = float(self.w_step)
        lim = 2 ** (self.chip.state_bits - 1) - 1
        return {"threshold": max(1, int(math.floor(self.lif_spec.threshold / step + 0.5))),
                "decay": int(math.floor(self.lif_spec.beta * 2 ** DECAY_FRAC_BITS + 0.5)),
                "state_limit": lim}

    def bias_fmt(self, w_step: float | None = None) -> FixedPoint:
        """The bias lives in membrane units (weight LSBs), at the state width."""
        return FixedPoint(self.chip.state_bits, True, float(self.w_step) if w_step is None else w_step)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Quantise weights and bias to the chip's formats."""
        self.synapse.calibrate(self.chip, self.bias_fmt)

    @torch.no_grad()
    def _chip_update(self, generator: torch.Generator | None, samples: int) -> None:
        """The chip's learning rule, as for dense units (onchip.py): plain SGD at
        onchip_lr × SPIKING_CHIP_LR_GAIN / fan-in, rounded and clipped to the learning
        precision, saturating."""
        self.synapse.chip_update(self.onchip_lr * SPIKING_CHIP_LR_GAIN / self.synapse.fan_in, self.chip,
                                 self.bias_fmt(), generator, samples=samples)

    def _apply_update(self, generator: torch.Generator | None, samples: int) -> None:
        """Apply the gradients left in ``.grad`` (the mean over ``samples`` samples)."""
        if self.calibrated:
            self._chip_update(generator, samples)
        else:
            self.optimizer.step()
        self.weight.grad = self.bias.grad = None

    @torch.no_grad()
    def int_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The chip's integer LIF: U' = clamp(floor(β_q·U / 2^F) + W_q·x[t] + b_q), S = U' ≥ θ_q,
        U = U'·(1 − S) (zero) or U' − S·θ_q (subtract). x (T, N, in) binary spikes."""
        p = self.int_params()
        b = self.synapse.int_bias(float(self.w_step)).clamp(-p["state_limit"], p["state_limit"])
        cur = self.synapse.int_current(x.reshape(-1, *self.in_shape), self.chip).to(torch.int64)
        cur = (cur + b.to(torch.int64).view(-1, *([1] * (len(self.conv_shape) - 1)))).view(
            x.shape[0], x.shape[1], *self.conv_shape)
        u = torch.zeros(x.shape[1], *self.conv_shape, dtype=torch.int64)
        out = []
        for t in range(x.shape[0]):
            u = torch.div(u * p["decay"], 2 ** DECAY_FRAC_BITS, rounding_mode="floor") + cur[t]
            u = u.clamp(-p["state_limit"], p["state_limit"])
            spk = u >= p["threshold"]
            u = torch.where(spk, u - p["threshold"], u) if self.lif_spec.reset == "subtract" else torch.where(spk, 0, u)
            out.append(spk.to(torch.float32))
        return self._pool(torch.stack(out))

    def _pool(self, s: torch.Tensor) -> torch.Tensor:
        """Max-pool of spike trains (T, N, C, H, W) per step: a spike if any in the window."""
        if self.pool == 1:
            return s
        t, n = s.shape[:2]
        return F.max_pool2d(s.reshape(t * n, *self.conv_shape), self.pool).view(t, n, *self.out_shape)

    def _current(self, x: torch.Tensor) -> torch.Tensor:
        """The input currents (T, N, *conv_shape) of all T steps at once."""
        t, n = x.shape[:2]
        return self.synapse.current(x.reshape(t * n, *self.in_shape)).view(t, n, *self.conv_shape)

    def goodness_scale(self) -> float:
        """Real goodness (of rates or counts) per unit of the integer goodness of spike counts."""
        t = float(self.steps) if self.lif_spec.goodness_on == "rate" else 1.0
        return {"sumsq": 1 / t ** 2, "meansq": 1 / (t ** 2 * self.out_features), "sum": 1 / t,
                "neg-sumsq": -1 / t ** 2}[self.spec.goodness]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes (T, N, out_features) for an input spike train x (T, N, in_features): the
        integer LIF on a calibrated chip, else the float one."""
        if self.calibrated:
            return self.int_forward(x)
        return self.float_forward(x)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros(x.shape[1], *self.conv_shape, dtype=x.dtype, device=x.device)
        cur = self._current(x)                 # all T steps' input currents at once
        lif = self.lif_spec
        if lif.reset == "zero":
            step = self.lif                                  # snntorch's Leaky (equal to lif_step, tested)
        else:                                                # see lif_step: snntorch's subtract differs
            def step(c, m):
                return lif_step(m, c, lif.beta, lif.threshold, lif.reset, self.lif.spike_grad)
        out = []
        for t in range(x.shape[0]):
            spk, mem = step(cur[t], mem)
            out.append(spk)
        return self._pool(torch.stack(out))

    def goodness(self, s: torch.Tensor) -> torch.Tensor:
        """Goodness (N,) of the firing rates (or spike counts) of a spike train (T, N, units);
        on the chip the exact integer goodness of the spike counts times ``goodness_scale``."""
        if self.calibrated:
            return self.integer_goodness(s).to(torch.float64) * self.goodness_scale()
        return goodness(spike_activity(s, self.lif_spec.goodness_on).flatten(1), self.spec.goodness)

    def set_lr(self, lr: float, onchip_lr: float | None = None) -> None:
        set_lr(self.optimizer, lr)
        if onchip_lr is not None:
            self.onchip_lr = onchip_lr

    @torch.no_grad()
    def _traces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the T steps without a graph, keeping only running sums per sample (the rule's
        state is independent of T; this simulation still computes all T input currents at
        once for speed): the output spikes (handed on), the surrogate slope ψ(U' − θ)
        averaged over steps (N, out), and the presynaptic traces ε[t] = β ε[t−1] + x[t]
        averaged over steps, for the inputs (N, in) and the bias (scalar)."""
        lif = self.lif_spec
        beta, thr = lif.beta, lif.threshold
        n, t_steps = x.shape[1], x.shape[0]
        cur = self.synapse.current(x)
        mem = torch.zeros(n, self.out_features)
        eps, eps_sum = torch.zeros(n, self.in_features), torch.zeros(n, self.in_features)
        eps_b, eps_b_sum = 0.0, 0.0
        psi_sum = torch.zeros(n, self.out_features)
        out = []
        for t in range(t_steps):
            psi_sum += surrogate_slope(beta * mem + cur[t] - thr, lif.surrogate)
            spk, mem = lif_step(mem, cur[t], beta, thr, lif.reset)
            eps = beta * eps + x[t]
            eps_sum += eps
            eps_b = beta * eps_b + 1.0
            eps_b_sum += eps_b
            out.append(spk)
        return torch.stack(out), psi_sum / t_steps, eps_sum / t_steps, eps_b_sum / t_steps

    def _rate_goodness(self, r: torch.Tensor) -> torch.Tensor:
        return goodness(r.flatten(1), self.spec.goodness)

    def _eligibility_step(self, x: torch.Tensor, gamma_pos, gamma_neg, generator: torch.Generator | None = None,
                          targets: torch.Tensor | None = None) -> StepResult:
        """The online rule: dr_j/dW_ji ≈ mean_t ψ_j · mean_t ε_i (a factorised e-prop-style
        estimate that ignores the reset's dependence on W), so the weight gradient is
        (dL/dr ⊙ ψ̄)ᵀ · ε̄ from quantities accumulated step by step."""
        s, psi, eps, eps_b = self._traces(x)
        if self.calibrated:               # the chip's own spikes; the traces come from the float twin
            s = self.int_forward(x)
        r = spike_activity(s, self.lif_spec.goodness_on).requires_grad_(True)
        loss, g_pos, g_neg = local_objective(self.spec, r, self._rate_goodness, targets, gamma_pos, gamma_neg)
        (d_r,) = torch.autograd.grad(loss, r)
        delta = d_r * psi * (1.0 if self.lif_spec.goodness_on == "rate" else float(x.shape[0]))  # counts = T·rates
        self.weight.grad = delta.t() @ eps
        self.bias.grad = delta.sum(dim=0) * eps_b
        self._apply_update(generator, x.shape[1] if targets is not None else x.shape[1] // 2)
        return StepResult(s, float(loss.detach()), g_pos.detach(), g_neg.detach())

    def local_step(self, x: torch.Tensor, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   targets: torch.Tensor | None = None) -> StepResult:
        """One local update from x (T, 2B, in): the B positives then the B negatives (with
        ``targets``, channel-wise competition on the rates: x (T, B, in))."""
        x = x.detach()
        if self.lif_spec.learning == "eligibility":
            return self._eligibility_step(x, gamma_pos, gamma_neg, generator, targets)
        s = self.float_forward(x)
        if self.calibrated:               # values: the chip's integer spikes; gradient: the float twin's
            s = s + (self.int_forward(x) - s).detach()
        loss, g_pos, g_neg = self._objective(s, gamma_pos, gamma_neg, targets)
        loss.backward()
        self.apply_update(generator, x.shape[1] if targets is not None else x.shape[1] // 2)
        return StepResult(s.detach(), float(loss.detach()), g_pos.detach(), g_neg.detach())

    def _objective(self, s: torch.Tensor, gamma_pos: torch.Tensor | None, gamma_neg: torch.Tensor | None,
                   targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return local_objective(self.spec, spike_activity(s, self.lif_spec.goodness_on), self._rate_goodness,
                               targets, gamma_pos, gamma_neg)

    def local_loss(self, x: torch.Tensor, gamma_pos: torch.Tensor | None = None,
                   gamma_neg: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> LocalLoss:
        """The local loss on spikes x (T, N, in) as given (graph kept: the surrogate gradient
        passes back through them), without updating, for chunked local updates. Float units
        learning through time (``bptt``) only: eligibility traces keep no graph to pass
        back, and a chip learns each unit by its own rule."""
        if self.lif_spec.learning == "eligibility":
            raise ValueError("units.spike_learning = eligibility learns online without a graph: chunked updates "
                             "need bptt")
        if self.calibrated:
            raise ValueError("a unit on a chip learns by its own fixed-point rule: chunked updates need float units")
        s = self.float_forward(x)
        loss, g_pos, g_neg = self._objective(s, gamma_pos, gamma_neg, targets)
        return LocalLoss(loss, s, g_pos.detach(), g_neg.detach())

    def apply_update(self, generator: torch.Generator | None = None, samples: int = 1) -> None:
        """Apply the gradients left in ``.grad`` (the mean over ``samples`` samples): the
        optimiser, or on a chip its fixed-point rule; then drop them."""
        self._apply_update(generator, samples)

    # -- what the rest of ffneuro asks of a unit -------------------------------------
    @staticmethod
    def default_theta(goodness_kind: str, width: int, steps: int, on: str) -> float:
        """θ by default on firing rates r in [0, 1] (Σr² ≤ width): SPIKE_THETA per unit;
        on spike counts c = T·r the same θ in count units (× T, or × T² for squares)."""
        base = {"sumsq": width * SPIKE_THETA, "meansq": SPIKE_THETA, "sum": width * SPIKE_THETA,
                "neg-sumsq": -width * SPIKE_THETA / 4.0}[goodness_kind]
        if on == "count":
            base *= steps if goodness_kind == "sum" else steps ** 2
        return base

    def head_activity(self, s: torch.Tensor) -> torch.Tensor:
        """The activity (N, width) the one-pass head reads: spike counts over the T steps."""
        return s.sum(dim=0).flatten(1)

    def begin_statistics(self) -> bool:
        """No running statistics to re-estimate."""
        return False

    def end_statistics(self) -> None:
        pass

    def class_goodness(self, s: torch.Tensor, classes: int) -> torch.Tensor:
        """Goodness G (N, classes) of each class's group of units: of the firing rates (or
        spike counts), as the competitive loss sees them."""
        return group_goodness(spike_activity(s, self.lif_spec.goodness_on), classes)

    def integer_goodness(self, s: torch.Tensor) -> torch.Tensor:
        """The chip's exact integer goodness (N,) of the spike counts."""
        return int_goodness(s.sum(dim=0).flatten(1), self.spec.goodness)

    def forward_events(self, x_in: torch.Tensor, s_out: torch.Tensor) -> dict[str, float]:
        """Events of the T steps: synops per input spike (or current), a neuron update
        per unit and step, a route per output spike, the goodness once per sample."""
        if isinstance(self.synapse, ConvSynapse):      # every step a conv pass; the goodness once per sample
            t, n = x_in.shape[:2]
            counts = conv_forward_events(x_in.reshape(t * n, *self.in_shape), s_out.reshape(t * n, *self.out_shape),
                                         binary_input=self.binary_input, binary_output=True, **self.synapse.geometry())
            counts["goodness_op"] = float(n * self.out_features)
            return counts
        return spike_forward_events(x_in.flatten(2), s_out, binary_input=self.binary_input)   # maps in: flat

    def update_events(self, x_in: torch.Tensor, batch: int, update_batch: int) -> dict[str, float]:
        """The update's events by learning rule, from the input trains of the ``batch``
        positives then negatives."""
        if isinstance(self.synapse, ConvSynapse):
            # BPTT through the T steps: the conv rule on every step's input (sample-major,
            # so an applied batch is update_batch samples × T steps), history written and read
            t = x_in.shape[0]

            def trains(x):
                return x.transpose(0, 1).reshape(-1, *self.in_shape)
            x_neg = trains(x_in[:, batch:]) if x_in.shape[1] > batch else None
            counts = conv_update_events(trains(x_in[:, :batch]), x_neg, neurons=math.prod(self.conv_shape),
                                        batch_size=update_batch * t, **self.synapse.geometry())
            counts["state_access"] *= 2
            return counts
        x_in = x_in.flatten(2)       # a dense unit after a conv unit reads its maps flattened
        x_neg = x_in[:, batch:] if x_in.shape[1] > batch else torch.zeros_like(x_in)
        return spike_update_events(x_in[:, :batch], x_neg, self.out_features, update_batch,
                                   rule=self.lif_spec.learning)

    def resources(self) -> Resources:
        """BPTT through the unit's own T steps keeps T steps of membrane and input spikes
        per sample until the update; the eligibility rule keeps running sums only."""
        history = self.steps if self.lif_spec.learning == "bptt" else 0
        if isinstance(self.synapse, ConvSynapse):
            return self.synapse.resources(self.in_shape, self.conv_shape, history_steps=history,
                                          time_steps=self.steps)
        return Resources(fan_in=self.synapse.fan_in, fan_out=self.out_features, synapses=self.synapse.synapses,
                         neurons=self.out_features, history_steps=history, time_steps=self.steps)

    def export_tables(self) -> ExportTables:
        """The integer LIF: weights, biases in membrane units, threshold and fixed-point
        decay (docs/hdf5-schema.md, kind ``lif``)."""
        if isinstance(self.synapse, ConvSynapse):
            raise ValueError("spiking conv units have no integer HDF5 export yet: export them to NIR "
                             "(--format nir) or export graded conv units")
        p = self.int_params()
        wf = self.weight_fmt()
        attrs = {"in_features": self.in_features, "out_features": self.out_features, **format_attrs("weight", wf),
                 "state_bits": self.chip.state_bits, "threshold": p["threshold"], "decay": p["decay"],
                 "decay_frac_bits": DECAY_FRAC_BITS, "reset": self.lif_spec.reset, "steps": self.steps,
                 "membrane_scale": wf.step, "goodness": self.spec.goodness, "goodness_scale": self.goodness_scale()}
        b = self.synapse.int_bias(wf.step).clamp(-p["state_limit"], p["state_limit"])
        return ExportTables("lif", attrs, {
            "weight": self.synapse.weight_table(self.chip),
            "bias": (b, -p["state_limit"], p["state_limit"],
                     "integer bias (out_features,) in membrane units (weight LSBs), added every step")})

    def nir_nodes(self, index: int) -> list:
        """NIR's Affine (a conv synapse: Conv2d) → LIF (continuous time, snntorch's dt; see
        export/nir.py)."""
        import nir
        import numpy as np

        if self.lif_spec.reset != "zero":
            raise ValueError(f"reset = {self.lif_spec.reset!r}: NIR's LIF resets to zero; train with "
                             "--set units.reset=zero")
        if isinstance(self.synapse, ConvSynapse):
            if self.pool > 1:
                raise ValueError("NIR has no max-pool node: export spiking conv stacks without pooling (pool 1)")
            sy = self.synapse
            shape = self.conv_shape
            tau = np.full(shape, NIR_DT / (1.0 - self.lif_spec.beta), dtype=np.float32)
            return [(f"conv{index}", nir.Conv2d(input_shape=tuple(self.in_shape[1:]),
                                                weight=self.weight.detach().numpy().astype(np.float32),
                                                stride=sy.stride, padding=sy.padding, dilation=1, groups=sy.groups,
                                                bias=self.bias.detach().numpy().astype(np.float32))),
                    (f"lif{index}", nir.LIF(tau=tau, r=tau / NIR_DT, v_leak=np.zeros(shape, dtype=np.float32),
                                            v_threshold=np.full(shape, self.lif_spec.threshold, dtype=np.float32),
                                            v_reset=np.zeros(shape, dtype=np.float32)))]
        n = self.out_features
        tau = np.full(n, NIR_DT / (1.0 - self.lif_spec.beta), dtype=np.float32)
        return [(f"fc{index}", nir.Affine(weight=self.weight.detach().numpy().astype(np.float32),
                                          bias=self.bias.detach().numpy().astype(np.float32))),
                (f"lif{index}", nir.LIF(tau=tau, r=tau / NIR_DT, v_leak=np.zeros(n, dtype=np.float32),
                                        v_threshold=np.full(n, self.lif_spec.threshold, dtype=np.float32),
                                        v_reset=np.zeros(n, dtype=np.float32)))]


class SpikeEncoder:
    """The input stage of a spiking stack: encoded input (N, D) → spike train (T, N, D).
    In float the configured encoder (rate codes draw from the given generator); on a chip
    the input is integer and the encoder deterministic (``int_spike_encode``)."""

    def __init__(self, kind: str, steps: int, chip=None):
        self.kind, self.steps, self.chip = kind, steps, chip

    def __call__(self, x: torch.Tensor | CodedBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.dense() if isinstance(x, CodedBatch) else x
        if self.chip is not None:
            return int_spike_encode(self.kind, x, self.steps)
        return encode(self.kind, x, self.steps, generator)

    def export_attrs(self) -> dict:
        return {"spike_encoding": self.kind, "steps": self.steps}
