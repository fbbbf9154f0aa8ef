"""One training step (one mini-batch), streamed through the units.

    batch ─ neutral code ─▶ units (no grad) ─▶ head: one local step (and scores for hard negatives)
          ─ codes [y⁺, y⁻] ─▶ unit 1 ─▶ unit 2 ─▶ … ─▶ unit L   (positives and negatives travel as one
                                                                   stacked batch; each active unit
                                                                   takes its local step on the way)

CFF adds γ_i, the other units' goodness from a frozen copy (a no-grad scout pass with
the weights as they were at the start of the step), to unit i's goodness. Every pass's
events are counted by the units themselves when a ledger is given.

Chunked local updates (``loop.schedule = chunks``, seed 002): the same pass, but each
active unit only computes its loss on the way (``local_loss``, graph kept); at the last
unit of a chunk the chunk's summed loss is backpropagated through the chunk's units and
each applies its update, and the activity handed to the next chunk is detached. No
gradient crosses a chunk boundary (``Learner``).

Channel-wise competition (``units.loss = cwc``) needs no negative data and no label in
the input: one pass, each active unit's local step takes the true labels, and the head
learns from the same pass's activities::

    batch ─▶ unit 1 ─▶ unit 2 ─▶ … ─▶ unit L ─▶ head (last two units' activities)
             (each active unit: competitive loss on its class groups, one local step)
"""

from __future__ import annotations

import torch

from ffneuro.config import RunConfig
from ffneuro.functional.cff import gamma_members
from ffneuro.functional.encoding import hard_wrong_labels, random_wrong_labels
from ffneuro.hw.events import EventLedger, head_events
from ffneuro.network import FFNetwork, Passage
from ffneuro.rng import Streams
from ffneuro.units.base import StepResult


def event_counter(ledger: EventLedger | None, phase: str, net: FFNetwork, head: bool):
    """An ``on_unit(passage)`` callback that counts a pass's forward events (and the
    head's share) into ``ledger``; None without a ledger."""
    if ledger is None:
        return None

    def on_unit(p: Passage) -> None:
        ledger.add(phase, p.index, p.unit.forward_events(p.h_in, p.h_out))
        if head and p.index in net.head_idx:
            ledger.add(phase, p.index, head_events(p.unit.head_activity(p.h_out), net.num_classes))
    return on_unit


@torch.no_grad()
def scout_goodness(net: FFNetwork, x: torch.Tensor, labels: list[torch.Tensor], generator: torch.Generator,
                   on_unit=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CFF's frozen copy: goodness (L, B) of every unit for positives and negatives,
    computed without gradient from the weights as they are before this step's updates.
    Only the goodness vectors are kept, never the activities. ``generator`` must be a
    copy of the encoder stream's state so that the scout sees the same spikes as the step."""
    return stacked_goodness(net.stream(x, labels, generator=generator), on_unit)


def stacked_goodness(passages, on_unit=None, known: list[torch.Tensor] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Goodness (L, B) for positives and negatives: the rows ``known`` (each (2B,)), then
    one per unit the ``passages`` traverse (``on_unit(passage)`` sees each)."""
    gs = list(known)
    for p in passages:
        if on_unit is not None:
            on_unit(p)
        gs.append(p.unit.goodness(p.h_out))
    g = torch.stack(gs)
    b = g.shape[1] // 2
    return g[:, :b], g[:, b:]


class Learner:
    """How an active unit learns on the way through a pass: its own ``local_step`` (the
    input detached), or, given ``chunks`` (lists of consecutive unit indices), seed 002's
    chunked local updates: a chunk's first unit takes its input detached, every unit's
    ``local_loss`` keeps its graph, and the chunk's last unit backpropagates the summed
    loss through the chunk and has each unit ``apply_update``; what leaves the chunk is
    detached. ``samples``: positives per step (the chip rule's mean)."""

    def __init__(self, streams: Streams, samples: int, chunks: list[list[int]] | None = None):
        self.streams = streams
        self.samples = samples
        self.first = {c[0] for c in chunks} if chunks is not None else None
        self.last = {c[-1] for c in chunks} if chunks is not None else None
        self.pending: list[tuple[int, object, torch.Tensor]] = []

    def step(self, i: int, unit, h, gamma_pos: torch.Tensor | None = None, gamma_neg: torch.Tensor | None = None,
             targets: torch.Tensor | None = None) -> StepResult:
        if self.first is None:
            return unit.local_step(h, gamma_pos, gamma_neg, self.streams.unit(i), targets)
        if i in self.first and isinstance(h, torch.Tensor):
            h = h.detach()
        r = unit.local_loss(h, gamma_pos, gamma_neg, targets)
        self.pending.append((i, unit, r.loss))
        out = r.out
        if i in self.last:
            torch.stack([loss for _, _, loss in self.pending]).sum().backward()
            for j, u, _ in self.pending:
                u.apply_update(self.streams.unit(j), self.samples)
            self.pending.clear()
            out = out.detach()
        return StepResult(out, float(r.loss.detach()), r.g_pos, r.g_neg)


def _fork(g: torch.Generator) -> torch.Generator:
    """A generator in the same state as ``g`` (g itself does not advance)."""
    return torch.Generator().set_state(g.get_state())


def competitive_step(net: FFNetwork, x: torch.Tensor, y: torch.Tensor, active: list[int], streams: Streams,
                     ledger: EventLedger | None = None, update_batch: int = 1,
                     chunks: list[list[int]] | None = None) -> dict:
    """One mini-batch of channel-wise competitive learning (see the module docstring).
    The pass ends after the last active unit unless the head needs later activities."""
    losses: dict[int, float] = {}
    kept: list[torch.Tensor] = []
    b = x.shape[0]
    learner = Learner(streams, b, chunks)

    def through(i: int, unit, h):
        if i not in active:
            with torch.no_grad():
                return unit(h)
        r = learner.step(i, unit, h, targets=y)
        losses[i] = r.loss
        if ledger is not None:
            ledger.add("train", i, unit.update_events(h, b, update_batch))
        return r.h

    upto = None if net.head is not None else max(active, default=-1) + 1
    count = event_counter(ledger, "train", net, head=net.head is not None)
    for p in net.stream(x, None, generator=streams["encoder"], through=through, upto=upto):
        if count is not None:
            count(p)
        if net.head is not None and p.index in net.head_idx:
            kept.append(p.unit.head_activity(p.h_out).detach())
    stats: dict = {"loss": losses}
    if net.head is not None:
        _, stats["head_loss"] = net.head.local_step(kept, y)
    return stats


def learning_through(cfg: RunConfig, n: int, active: list[int], streams: Streams, ledger: EventLedger | None,
                     b: int, update_batch: int, scout: tuple[torch.Tensor, torch.Tensor] | None,
                     seen: list[tuple[torch.Tensor, torch.Tensor]], losses: dict[int, float],
                     chunks: list[list[int]] | None = None):
    """The ``through(i, unit, h)`` of the learning pass over ``n`` units: a unit in
    ``active`` adds its γ and takes its local step (its loss into ``losses``, its update
    events into ``ledger``), any other runs forward without gradient. Each unit appends
    its (positive, negative) goodness to ``seen``, which must hold the goodness of every
    unit before the first one traversed (empty when the pass starts at unit 0). γ comes
    from the ``scout`` table (L, B) when given, else from ``seen`` (γ over earlier units).
    ``chunks``: seed 002's chunked local updates (``Learner``)."""
    cff = cfg.loop.algo == "cff"
    learner = Learner(streams, b, chunks)

    def through(i: int, unit, h):
        if i not in active:
            with torch.no_grad():
                out = unit(h)
                g = unit.goodness(out)
            seen.append((g[:b], g[b:]))
            return out
        gam_p = gam_n = None
        if cff:
            members = gamma_members(cfg.cff.gamma, i, n)
            if scout is not None:
                gam_p, gam_n = scout[0][members].sum(0), scout[1][members].sum(0)
            elif members:
                gam_p = torch.stack([seen[j][0] for j in members]).sum(0)
                gam_n = torch.stack([seen[j][1] for j in members]).sum(0)
        r = learner.step(i, unit, h, gam_p, gam_n)
        losses[i] = r.loss
        seen.append((r.g_pos, r.g_neg))
        if ledger is not None:
            ledger.add("train", i, unit.update_events(h, b, update_batch))
        return r.h
    return through


def train_step(net: FFNetwork, cfg: RunConfig, x: torch.Tensor, y: torch.Tensor, active: list[int],
               streams: Streams, ledger: EventLedger | None = None, update_batch: int = 1,
               chunks: list[list[int]] | None = None) -> dict:
    """Stream one mini-batch through the units, updating those in ``active`` (each by its
    own step, or with ``chunks``, the active units' chunks, by chunked local updates).

    With a ``ledger``, every pass's events are counted from the real tensors by the units
    (the neutral pass and head, the CFF scout pass, the FF pass and each unit's update);
    ``update_batch`` is the number of samples per applied update. Returns the local loss
    of every updated unit (``loss``: {unit index: loss}) and the head's.
    """
    if net.competitive:
        return competitive_step(net, x, y, active, streams, ledger, update_batch, chunks)
    stats: dict = {}
    # 1. Neutral pass: trains the one-pass head and supplies scores for hard negatives.
    scores = None
    if net.head is not None:
        acts = net.neutral_activities(x, event_counter(ledger, "train", net, head=True), streams["encoder"])
        scores, stats["head_loss"] = net.head.local_step(acts, y)
    # 2. Negative labels: never the true label.
    if cfg.loop.negatives == "hard":
        y_neg = hard_wrong_labels(y, scores, streams["negatives"])
    else:
        y_neg = random_wrong_labels(y, net.num_classes, streams["negatives"])
    labels = [y, y_neg]
    b = x.shape[0]
    n = len(net.layers)
    cff = cfg.loop.algo == "cff"
    # 3. CFF: γ from a frozen copy. 'earlier' needs no scout: earlier units' goodness in
    #    this very pass is computed before their own update, i.e. by the frozen copy.
    scout = None
    if cff and cfg.cff.gamma != "earlier":
        scout = scout_goodness(net, x, labels, _fork(streams["encoder"]), event_counter(ledger, "train", net, False))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    losses: dict[int, float] = {}
    through = learning_through(cfg, n, active, streams, ledger, b, update_batch, scout, seen, losses, chunks)

    # 4. Stream through the units. The last active unit ends the pass: nothing later learns.
    for p in net.stream(x, labels, generator=streams["encoder"], through=through, upto=max(active, default=-1) + 1):
        if ledger is not None:
            ledger.add("train", p.index, p.unit.forward_events(p.h_in, p.h_out))
    stats["loss"] = losses
    return stats
