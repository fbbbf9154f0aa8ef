"""Pipeline-parallel FF training on torch.distributed: each stage (one or more consecutive
units) is a process that learns its own units on every batch and hands the batch's
detached activities on to the next stage, so several batches are in flight at once.

    stage 1 (rank 0)                      stage 2                      stage S (last)
    data order, jitter, negatives,  ──▶   its units: neutral pass,  ──▶  …  its units, then
    its units: neutral pass, scout,       scout, local steps              the one-pass head
    local steps                           (updates its own units)
        ▲          at the end of every epoch: each stage's units, optimiser and unit<i>
        └───────── streams to rank 0, which evaluates, checkpoints and writes the run dir

Per batch, each stage sends the next one message (``Message``): the labels, the neutral
pass's activity (for the head) and the head's inputs so far, the learning pass's
positive+negative activity, and under CFF the goodness of every unit so far. At most
``DEPTH`` messages per link are in flight, so memory does not grow.

What is exact. With γ over earlier units (or plain FF) every unit sees the same inputs,
in the same order, from the same weights and random streams as in one process, so the
weights are **bit for bit** those of the single-process run with one thread per stage
(the float kernels of a different thread count may reorder sums). CFF's γ over later or
all units needs the goodness of units that have not yet seen the batch: here a stage
computes it from its own copies of the later stages' units, refreshed every R batches
(``gamma_refresh``: the number of stages by default; the later stage sends its weights
after finishing batch g − R, the earlier stage loads them before batch g), so those
members of γ come from weights R − 1 to 2R − 2 batches older than the single process's
frozen copy (the initial weights before batch R). R = 1 is the single-process rule (to
float reordering), with the stages taking turns. See docs/pipeline.md.

Start: ``ffneuro train --stages N`` (``launch``: N local processes with an env
rendezvous on a free port) or ``torchrun --nproc-per-node N --no-python ffneuro train --stages N``
(``run_stage`` in each torchrun process; several machines with ``--nnodes`` and a
rendezvous endpoint). A failing stage brings the others down: its one-line error is
reported and the rest are stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from safetensors.torch import load as tensors_from_bytes, save as tensors_to_bytes
from tqdm.auto import tqdm

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.augment import batch_transform
from ffneuro.data.loaders import load_dataset
from ffneuro.evaluate import evaluate
from ffneuro.functional.encoding import random_wrong_labels
from ffneuro.hw.events import EventLedger
from ffneuro.network import FFNetwork, Passage, default_inference_layers
from ffneuro.rng import Streams, generator
from ffneuro.runs import files as runio
from ffneuro.train.loop import (CHECKPOINT_LAYOUT, STATISTICS_SAMPLES, TrainState, build_network, check_finite,
                                check_resources, checkpoint_tensors, input_code, restore, set_epoch_lr,
                                total_epochs, train)
from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices
from ffneuro.train.schedules import active_units
from ffneuro.train.step import _fork, event_counter, learning_through, scout_goodness, stacked_goodness

log = logging.getLogger(__name__)

DEPTH = 4                 # batches in flight per link
REFRESH_ENV = "FFNEURO_PIPELINE_GAMMA_REFRESH"   # CFF γ over later units: batches between refreshes of
                                                # their copies (default: the number of stages)
TIMEOUT_S = float(os.environ.get("FFNEURO_PIPELINE_TIMEOUT", 1800))   # a collective or recv waits this long
ERROR_FILE_ENV = "FFNEURO_PIPELINE_ERROR"                              # where a local stage writes its error
TAG_BATCH, TAG_REFRESH, TAG_STATE = 0, 1, 2


class PipelineError(ValueError):
    """A pipeline that cannot run as asked (one-line message)."""


class PeerLost(RuntimeError):
    """This stage stopped because another stage failed (not the cause)."""


# ----------------------------------------------------------------------------------------
# What can be pipelined, and where the stages split
# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# Messages between stages
# ----------------------------------------------------------------------------------------
NEUTRAL, HEAD, TRAIN, SEEN = 1, 2, 3, 4


@dataclass
class Message:
    """One batch as it leaves a stage: labels, the neutral activity of its last unit and
    the head's inputs so far (with a head), the learning pass's activity (when a later unit
    still takes part), and the (positive, negative) goodness of every unit so far (CFF)."""

    y: torch.Tensor
    neutral: torch.Tensor | None = None
    head: list[torch.Tensor] = field(default_factory=list)
    train: torch.Tensor | None = None
    seen: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(header int64: batch, count, then kind, ndim, shape of each tensor, then the
        labels; payload float32: the tensors flattened, in order)."""
        parts = ([(NEUTRAL, self.neutral)] if self.neutral is not None else []) + [(HEAD, h) for h in self.head] \
            + ([(TRAIN, self.train)] if self.train is not None else []) \
            + [(SEEN, g) for pair in self.seen for g in pair]
        header = [self.y.shape[0], len(parts)]
        for kind, t in parts:
            if t.dtype != torch.float32:
                raise PipelineError(f"a stage's activity has dtype {t.dtype}; the pipeline sends float32 only")
            header += [kind, t.dim(), *t.shape]
        head = torch.tensor(header + self.y.tolist(), dtype=torch.int64)
        payload = torch.cat([t.reshape(-1) for _, t in parts]) if parts else torch.empty(0)
        return head, payload

    @classmethod
    def decode(cls, header: torch.Tensor, payload: torch.Tensor) -> "Message":
        h = header.tolist()
        b, count, pos, off = h[0], h[1], 2, 0
        msg = cls(y=torch.empty(0, dtype=torch.long))
        seen: list[torch.Tensor] = []
        for _ in range(count):
            kind, nd = h[pos], h[pos + 1]
            shape = h[pos + 2:pos + 2 + nd]
            pos += 2 + nd
            size = 1
            for s in shape:
                size *= s
            t = payload[off:off + size].view(shape)
            off += size
            if kind == NEUTRAL:
                msg.neutral = t
            elif kind == HEAD:
                msg.head.append(t)
            elif kind == TRAIN:
                msg.train = t
            else:
                seen.append(t)
        msg.y = torch.tensor(h[pos:pos + b], dtype=torch.long)
        msg.seen = list(zip(seen[0::2], seen[1::2]))
        return msg


class Link:
    """Messages from one stage to the next: sent asynchronously, at most ``depth`` in flight."""

    def __init__(self, peer: int, depth: int = DEPTH):
        self.peer, self.depth = peer, depth
        self.pending: deque = deque()
        self.wait_s = 0.0                    # time spent waiting for the peer (a full pipe, or no batch yet)

    def send(self, msg: Message) -> None:
        header, payload = msg.encode()
        sizes = torch.tensor([header.numel(), payload.numel()], dtype=torch.int64)
        works = [dist.isend(t, self.peer, tag=TAG_BATCH) for t in (sizes, header, payload)]
        self.pending.append((works, (sizes, header, payload)))
        while len(self.pending) > self.depth:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        t0 = time.perf_counter()
        for w in self.pending.popleft()[0]:
            w.wait()
        self.wait_s += time.perf_counter() - t0

    def flush(self) -> None:
        while self.pending:
            self._wait_oldest()

    def recv(self) -> Message:
        sizes = torch.empty(2, dtype=torch.int64)
        t0 = time.perf_counter()
        dist.recv(sizes, self.peer, tag=TAG_BATCH)
        self.wait_s += time.perf_counter() - t0
        header = torch.empty(int(sizes[0]), dtype=torch.int64)
        payload = torch.empty(int(sizes[1]), dtype=torch.float32)
        dist.recv(header, self.peer, tag=TAG_BATCH)
        dist.recv(payload, self.peer, tag=TAG_BATCH)
        return Message.decode(header, payload)


def send_bytes(data: bytes, dst: int, tag: int = TAG_STATE) -> None:
    dist.send(torch.tensor([len(data)], dtype=torch.int64), dst, tag=tag)
    if data:
        dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8), dst, tag=tag)


def recv_bytes(src: int, tag: int = TAG_STATE) -> bytes:
    n = torch.empty(1, dtype=torch.int64)
    dist.recv(n, src, tag=tag)
    buf = torch.empty(int(n), dtype=torch.uint8)
    if int(n):
        dist.recv(buf, src, tag=tag)
    return buf.numpy().tobytes()


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """``data`` from rank ``src`` to every rank (the others pass None)."""
    n = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
    dist.broadcast(n, src)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(int(n), dtype=torch.uint8)
    if int(n):
        dist.broadcast(buf, src)
    return buf.numpy().tobytes()


def broadcast_json(obj, src: int = 0):
    return json.loads(broadcast_bytes(json.dumps(obj).encode() if dist.get_rank() == src else None, src))


def run_units(net: FFNetwork, lo: int, hi: int, h: torch.Tensor, through=None):
    """``FFNetwork.stream`` from the middle: units lo..hi−1 on the activity ``h`` that unit
    lo−1 handed on (a later stage's half of the one loop)."""
    for i in range(lo, hi):
        unit = net.layers[i]
        out = through(i, unit, h) if through is not None else unit(h)
        yield Passage(i, unit, h, out)
        h = out


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


def float_state(units: list) -> list[torch.Tensor]:
    """The floating-point tensors of ``units``' state dicts, in order (a weight refresh)."""
    return [t for u in units for t in u.state_dict().values() if t.is_floating_point()]


# ----------------------------------------------------------------------------------------
# One stage
# ----------------------------------------------------------------------------------------
class Stage:
    """Rank ``rank`` of ``world``: builds the whole network (same seed, same initial weights
    as rank 0's), learns its own units on every batch, and at every epoch's end hands their
    state to rank 0, which evaluates and checkpoints as the single-process trainer does."""

    def __init__(self, cfg: RunConfig, out: Path, *, resume: bool, overwrite: bool, progress: bool,
                 count_events: bool):
        self.cfg = cfg.validate()
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.first, self.last = self.rank == 0, self.rank == self.world - 1
        self.out, self.progress = out, progress
        seed = cfg.loop.seed
        torch.manual_seed(seed)
        self.streams = Streams(seed, cfg.units.n_units)
        self.bs = cfg.loop.batch_size
        info = None
        if self.first:
            runio.prepare_run_dir(out, resume=resume, overwrite=overwrite)
            self.data = load_dataset(cfg.data.name, val_fraction=cfg.data.val_fraction, seed=seed)
            code = input_code(cfg, self.data)
            check_resources(cfg, self.data, code, None, None, self.bs, False)
            self.net = build_network(cfg, self.data, self.streams, None, code)
            info = {"feature_shape": list(self.data.feature_shape), "num_classes": self.data.num_classes,
                    "mode": code.mode, "mean": code.mean, "std": code.std, "label_scale": code.label_scale,
                    "n": int(self.data.x_train.shape[0])}
        info = broadcast_json(info)
        if not self.first:
            self.net = FFNetwork.from_config(cfg, tuple(info["feature_shape"]), info["num_classes"], info["mode"],
                                             info["mean"], info["std"], generators=self.streams.units,
                                             label_scale=info["label_scale"])
        self.n = info["n"]
        self.bounds = split_stages(unit_costs(self.net), self.world)
        self.units = self.bounds[self.rank]
        self.ledger = EventLedger() if count_events else None
        self.state = TrainState()
        self._share_start(resume)
        self.nb = -(-self.n // self.bs)                     # batches per epoch
        self.inbound = Link(self.rank - 1) if not self.first else None
        self.outbound = Link(self.rank + 1) if not self.last else None
        self.stale = cfg.loop.algo == "cff" and cfg.cff.gamma != "earlier"
        self.every = gamma_refresh(self.world)
        self.refresh_out: list = []
        self.g0 = self.state.epoch * self.nb              # the first global batch this process trains
        self.loop_s = self.loop_cpu_s = 0.0                 # wall and CPU time in the batch loops (this process)
        self.timing: list[dict] = []                        # rank 0: every stage's, from the last gather

    def _share_start(self, resume: bool) -> None:
        """Every rank starts from rank 0's weights, optimisers and streams: its initial
        network (the head's initial weights come from the global generator, which loading
        the data may have advanced), or the checkpoint it resumes. A resumed stage keeps
        the events of its own units; rank 0 also keeps the sample counts."""
        payload = head = None
        if self.first:
            saved = runio.load_resumable(self.out) if resume else None
            if saved is not None:
                tensors, meta = saved
                head = {"optimizers": meta["optimizers"], "state": meta["state"], "events": meta.get("events")}
            else:
                tensors, head = {f"model.{k}": v for k, v in self.net.state_dict().items()}, {"state": None}
            payload = tensors_to_bytes({k: v.contiguous() for k, v in tensors.items()})
            head = json.dumps(head).encode()
        tensors = tensors_from_bytes(broadcast_bytes(payload))
        meta = json.loads(broadcast_bytes(head))
        if meta["state"] is None:
            self.net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            return
        self.state = restore(self.net, self.streams, tensors, meta, "the resumed checkpoint")
        if self.ledger is not None and meta.get("events"):
            full = EventLedger.from_dict(meta["events"])
            self.ledger = EventLedger(counts={k: v for k, v in full.counts.items() if k[1] in self.units},
                                      samples=full.samples if self.first else {p: 0 for p in full.samples})

    # -- a batch ---------------------------------------------------------------------------
    def batch(self, e: int, t: int, xb: torch.Tensor | None, y: torch.Tensor | None,
              msg: Message | None) -> dict[int, float]:
        """This stage's share of one training step (``train.step.train_step``) on batch t of
        0-based epoch e: stage 0 gets the data ``xb`` (and draws the negatives), a later
        stage the previous stage's ``msg``. Returns its units' losses."""
        net, cfg, lo, hi = self.net, self.cfg, self.units.start, self.units.stop
        lp = cfg.loop
        y = msg.y if msg is not None else y
        b, n = y.shape[0], len(net.layers)
        active = active_units(list(range(n)), epoch=e, batch=t, schedule=lp.schedule, unit_epochs=lp.unit_epochs,
                              chunk=lp.chunk)
        out = Message(y=y)
        # 1. Neutral pass through this stage's units; the last stage trains the head.
        if net.head is not None:
            count = event_counter(self.ledger, "train", net, head=True)
            out.head = list(msg.head) if msg is not None else []
            with torch.no_grad():
                passes = net.stream(xb, None, generator=self.streams["encoder"], upto=hi) if self.first \
                    else run_units(net, lo, hi, msg.neutral)
                for p in passes:
                    if count is not None:
                        count(p)
                    if p.index in net.head_idx:
                        out.head.append(p.unit.head_activity(p.h_out))
                    out.neutral = p.h_out
            if self.last:
                net.head.local_step(out.head, y)
        # 2. Negatives (stage 0 owns the stream), and CFF's frozen copy.
        labels = [y, random_wrong_labels(y, net.num_classes, self.streams["negatives"])] if self.first else None
        seen = list(msg.seen) if msg is not None else []
        scout = self._scout(xb, labels, msg, seen) if self.stale else None
        # 3. The learning pass through this stage's units (the pass ends after the last active unit).
        losses: dict[int, float] = {}
        through = learning_through(cfg, n, active, self.streams, self.ledger, b, self.bs, scout, seen, losses)
        upto = max(active, default=-1) + 1
        end = min(hi, upto)
        if self.first:
            passes = net.stream(xb, labels, generator=self.streams["encoder"], through=through, upto=end)
        else:
            passes = run_units(net, lo, end, msg.train, through) if end > lo else ()
        for p in passes:
            if self.ledger is not None:
                self.ledger.add("train", p.index, p.unit.forward_events(p.h_in, p.h_out))
            out.train = p.h_out
        if upto <= hi:
            out.train = None                         # no later unit takes part in this batch
        if cfg.loop.algo == "cff":
            out.seen = seen
        if self.outbound is not None:
            self.outbound.send(out)
        return losses

    def _scout(self, xb, labels, msg: Message | None, seen: list) -> tuple[torch.Tensor, torch.Tensor] | None:
        """γ's frozen copy (L, B): earlier stages' units from the goodness they sent, this
        stage's units exactly (weights before this step), later stages' units from this
        stage's refreshed copies of them (see the module docstring). Only this stage's
        units' scout events are counted."""
        net, lo, hi = self.net, self.units.start, self.units.stop
        count = event_counter(self.ledger, "train", net, head=False)
        own = (lambda p: count(p) if p.index < hi else None) if count is not None else None
        if self.first:
            return scout_goodness(net, xb, labels, _fork(self.streams["encoder"]), own)
        if msg.train is None:                        # none of this stage's units learns on this batch
            return None
        with torch.no_grad():
            return stacked_goodness(run_units(net, lo, len(net.layers), msg.train), own,
                                    [torch.cat(pair) for pair in seen])

    # -- γ over later units: refreshing this stage's copies of them ------------------------
    def refresh(self, g: int) -> None:
        """Before global batch g (every R batches): load the later stages' units as they
        were after batch g − R."""
        if not self.stale or g % self.every or g < self.every + self.g0:
            return
        for r in range(self.rank + 1, self.world):
            tensors = float_state([self.net.layers[i] for i in self.bounds[r]])
            flat = torch.empty(sum(t.numel() for t in tensors))
            dist.recv(flat, r, tag=TAG_REFRESH)
            with torch.no_grad():
                off = 0
                for t in tensors:
                    t.copy_(flat[off:off + t.numel()].view_as(t))
                    off += t.numel()

    def after(self, g: int, total: int) -> None:
        """After finishing global batch g (every R batches, when a refresh will read it):
        send this stage's units to every earlier stage."""
        if not self.stale or self.first or g % self.every or g + self.every >= total:
            return
        flat = torch.cat([t.reshape(-1) for t in float_state([self.net.layers[i] for i in self.units])])
        self.refresh_out = [(w, f) for w, f in self.refresh_out if not w.is_completed()]
        self.refresh_out += [(dist.isend(flat, r, tag=TAG_REFRESH), flat) for r in range(self.rank)]

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict | None:
        cfg = self.cfg
        total = total_epochs(cfg)
        if self.first:
            self._prepare_data()
        for e in range(self.state.epoch, total):
            self.net.train()
            set_epoch_lr(self.net, cfg, e)
            t0, c0 = time.perf_counter(), time.process_time()
            sums: dict[int, float] = {}
            counts: dict[int, int] = {}
            perm = torch.randperm(self.n, generator=self.streams["order"]) if self.first else None
            bar = tqdm(range(self.nb), desc=f"epoch {e + 1}/{total}", disable=not (self.progress and self.first),
                       leave=False, unit="batch", mininterval=0.5)
            for t in bar:
                g = e * self.nb + t
                self.refresh(g)
                xb = y = msg = None
                if self.first:
                    idx = perm[t * self.bs:(t + 1) * self.bs]
                    xb, y = self.jitter(self.x_train[idx], self.streams["augment"]), self.y_train[idx]
                else:
                    msg = self.inbound.recv()
                for i, v in self.batch(e, t, xb, y, msg).items():
                    sums[i] = sums.get(i, 0.0) + v
                    counts[i] = counts.get(i, 0) + 1
                if self.first and self.ledger is not None:
                    self.ledger.add_samples("train", xb.shape[0])
                self.after(g, total * self.nb)
            if self.outbound is not None:
                self.outbound.flush()
            self.loop_s += time.perf_counter() - t0
            self.loop_cpu_s += time.process_time() - c0
            self._close_epoch(e, sums, counts, t0)
        for w, _ in self.refresh_out:
            w.wait()
        self.refresh_out = []              # no gloo work outlives the process group (see _stage_main)
        return self._finish()

    def _prepare_data(self) -> None:
        net, data = self.net, self.data
        self.x_train, self.y_train = net.prepare_input(data.x_train), data.y_train
        self.x_test, self.y_test = net.prepare_input(data.x_test), data.y_test
        self.val = (net.prepare_input(data.x_val), data.y_val) if data.x_val is not None else None
        fill = net.prepare_input(torch.zeros(1, self.x_train[0].numel())).flatten()[0].item()
        self.jitter = batch_transform(self.cfg.data.augment_shift, data, fill=fill)
        self.probe = None
        if self.cfg.loop.entropy_probe:
            gen = self.streams.probe()
            idx = probe_indices(self.x_test.shape[0], self.cfg.loop.entropy_probe, gen)
            y_p = self.y_test[idx]
            self.probe = (self.x_test[idx], y_p, random_wrong_labels(y_p, net.num_classes, gen))
        runio.write_json(self.out / runio.CONFIG, {
            "ffneuro_version": __version__, "config": self.cfg.to_dict(), "dataset": data.name,
            "source": data.source, "num_classes": data.num_classes, "layer_sizes": net.layer_sizes,
            "feature_shape": list(data.feature_shape), "parameters": net.trainable_parameters(),
            "resources": [r.to_dict() for r in net.resources()], "n_train": self.n,
            "label_encoding": net.encoding.mode, "label_scale": net.label_scale, "batch_size_applied": self.bs,
            "profile_name": None, "profile": None})

    def _own_state(self, sums: dict, counts: dict) -> tuple[bytes, bytes]:
        """This stage's units (and the head, on the last stage): weights, optimiser state,
        unit<i> streams, losses and events, for rank 0."""
        tensors: dict[str, torch.Tensor] = {}
        scalars = {}
        names = [*self.units, *(["head"] if self.last and self.net.head is not None else [])]
        for name in names:
            unit = self.net.head if name == "head" else self.net.layers[name]
            prefix = "head" if name == "head" else f"layers.{name}"
            tensors.update({f"model.{prefix}.{k}": v.contiguous() for k, v in unit.state_dict().items()})
            if getattr(unit, "optimizer", None) is not None:
                t, s = runio.optimizer_to_flat(unit.optimizer, f"opt.{name}")
                tensors.update(t)
                scalars[str(name)] = s
            if name != "head":
                tensors[f"rng.unit{name}"] = self.streams.unit(name).get_state()
        info = {"names": [str(x) for x in names], "optimizers": scalars, "sums": sums, "counts": counts,
                "timing": self._timing(),
                "events": [[*k, v] for k, v in self.ledger.counts.items()] if self.ledger is not None else []}
        return tensors_to_bytes(tensors), json.dumps(info).encode()

    def _gather(self, sums: dict, counts: dict) -> None:
        """Rank 0 takes in every other stage's units, losses and events."""
        if not self.first:
            blob, info = self._own_state(sums, counts)
            send_bytes(blob, 0)
            send_bytes(info, 0)
            return
        self.timing = [self._timing()]
        for r in range(1, self.world):
            tensors = tensors_from_bytes(recv_bytes(r))
            info = json.loads(recv_bytes(r))
            for name in info["names"]:
                unit = self.net.head if name == "head" else self.net.layers[int(name)]
                prefix = "model.head." if name == "head" else f"model.layers.{name}."
                unit.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
                if name in info["optimizers"]:
                    runio.optimizer_from_flat(unit.optimizer, f"opt.{name}", tensors, info["optimizers"][name])
                if name != "head":
                    self.streams.unit(int(name)).set_state(tensors[f"rng.unit{name}"])
            self.timing.append(info["timing"])
            sums.update({int(k): v for k, v in info["sums"].items()})
            counts.update({int(k): v for k, v in info["counts"].items()})
            if self.ledger is not None:          # each layer's counts live on one stage: a disjoint union
                self.ledger.counts.update({(p, layer, kind): v for p, layer, kind, v in info["events"]})

    def _timing(self) -> dict:
        """This stage's units and its time so far in the batch loops: waiting for the
        previous stage (``wait_in_s``), for the next one to take a batch (``wait_out_s``),
        and the rest (``busy_s``: its own work, sends and receives included); ``loop_cpu_s``
        is the CPU time the process used in them (its communication threads included)."""
        w_in = self.inbound.wait_s if self.inbound is not None else 0.0
        w_out = self.outbound.wait_s if self.outbound is not None else 0.0
        return {"units": [self.units.start + 1, self.units.stop], "loop_s": round(self.loop_s, 3),
                "loop_cpu_s": round(self.loop_cpu_s, 3),
                "wait_in_s": round(w_in, 3), "wait_out_s": round(w_out, 3),
                "busy_s": round(self.loop_s - w_in - w_out, 3)}

    def _close_epoch(self, e: int, sums: dict, counts: dict, t0: float) -> None:
        """The single-process trainer's end of an epoch, on rank 0 with every stage's units:
        checks, batch-norm statistics, entropy probe, evaluation and the checkpoint. The
        other stages wait for its verdict (stop on an error there)."""
        self._gather(sums, counts)
        error = None
        if self.first:
            try:
                self.state.train_s += time.perf_counter() - t0
                self._record(e, sums, counts)
            except Exception as exc:        # reported by this process; the others are told to stop
                error = exc
        flag = torch.tensor([1 if error is not None else 0])
        dist.broadcast(flag, 0)
        if error is not None:
            raise error
        if int(flag):
            raise PeerLost("stopped: stage 1 failed at the end of an epoch")

    def _record(self, e: int, sums: dict, counts: dict) -> None:
        net, cfg, epoch = self.net, self.cfg, e
        check_finite(net, {i: sums[i] / counts[i] for i in sums}, epoch + 1)
        stats = torch.randperm(self.n, generator=generator(cfg.loop.seed, f"statistics{epoch}"))[:STATISTICS_SAMPLES]
        net.refresh_statistics(self.x_train, self.y_train, stats)
        self.state.epoch = epoch + 1
        record = {"epoch": self.state.epoch, "train_s": round(self.state.train_s, 3),
                  "loss": {f"layer{i + 1}": sums[i] / counts[i] for i in sorted(sums)}}
        if self.probe is not None:
            net.eval()
            seen = probe_goodness(net, *self.probe)
            record["entropy"] = entropy_record(seen.g_pos, seen.g_neg)
            record["silent_units"] = seen.silent
        if self.state.epoch == total_epochs(cfg) or (cfg.loop.eval_every and self.state.epoch % cfg.loop.eval_every == 0):
            net.eval()
            layers = default_inference_layers(cfg)
            record.update(evaluate(net, self.x_test, self.y_test, layers))
            if self.val is not None:
                record["val_error"] = evaluate(net, *self.val, layers)["test_error"]
        self.state.history.append(record)
        log.info("epoch %d: %s", self.state.epoch, record)
        tensors, scalars = checkpoint_tensors(net, self.streams)
        runio.save_checkpoint(self.out / runio.CHECKPOINT, tensors, {
            "layout": CHECKPOINT_LAYOUT, "optimizers": scalars,
            "events": self.ledger.to_dict() if self.ledger is not None else None,
            "state": {"epoch": self.state.epoch, "train_s": self.state.train_s, "history": self.state.history}})

    def _finish(self) -> dict:
        """Rank 0 writes metrics.json (and events.json) exactly as the single-process trainer
        would for the same checkpoint: by letting it resume the finished run, which
        evaluates and counts without training. Every rank returns the metrics."""
        metrics = None
        if self.first:
            metrics = train(self.cfg, out=self.out, resume=True, progress=False, data=self.data, device="cpu",
                            count_events=self.ledger is not None)
            metrics["pipeline"] = {"stages": self.world, "per_stage": self.timing}
            runio.write_json(self.out / runio.METRICS, metrics)
        return broadcast_json(metrics)


# ----------------------------------------------------------------------------------------
# Starting the stages
# ----------------------------------------------------------------------------------------
def launched() -> bool:
    """Whether this process is one of a group torchrun (or ``launch``) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def run_stage(cfg: RunConfig, stages: int, *, out: Path | None, resume: bool = False, overwrite: bool = False,
              progress: bool = True, threads: int = 1, count_events: bool = False) -> dict:
    """This process's stage of a pipeline whose rendezvous is in the environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT: torchrun's). Returns the run's metrics on every rank.
    Without ``out``, rank 0 trains into a temporary run dir it removes at the end."""
    world = int(os.environ["WORLD_SIZE"])
    if world != stages:
        raise PipelineError(f"--stages {stages}, but the launcher started {world} processes (give the same number)")
    check_supported(cfg, stages)
    torch.set_num_threads(max(1, threads))
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world,
                            timeout=timedelta(seconds=TIMEOUT_S))
    tmp = tempfile.TemporaryDirectory(prefix="ffneuro-pipeline-") if out is None else None
    try:
        run_dir = Path(tmp.name) / "run" if tmp is not None else Path(out)
        try:
            metrics = Stage(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                            count_events=count_events).run()
            dist.barrier()                 # no rank tears its connections down while another still uses them
            return metrics
        except RuntimeError as exc:        # gloo: a peer's connection closed or a wait timed out
            if isinstance(exc, PeerLost) or "Connection" in str(exc) or "Timed out" in str(exc) or "closed" in str(exc):
                raise PeerLost(f"stage {dist.get_rank() + 1} lost a peer stage ({str(exc).splitlines()[0][:160]})") \
                    from None
            raise
    finally:
        if tmp is not None:
            tmp.cleanup()
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cfg: RunConfig, stages: int, *, out: Path | None, resume: bool = False, overwrite: bool = False,
           progress: bool = True, threads: int = 1, count_events: bool = False, poll_s: float = 0.2) -> dict:
    """Run ``stages`` local stage processes (``python -m ffneuro.train.pipeline JOB``) with an
    env rendezvous on a free port, wait for them and return the metrics. When one fails,
    the others are stopped and its one-line error is raised as ``PipelineError``."""
    check_supported(cfg, stages)
    with tempfile.TemporaryDirectory(prefix="ffneuro-pipeline-") as tmp:
        tmp = Path(tmp)
        job = {"config": cfg.to_dict(), "stages": stages, "out": str(out) if out is not None else None,
               "resume": resume, "overwrite": overwrite, "progress": progress, "threads": threads,
               "count_events": count_events, "result": str(tmp / "metrics.json")}
        runio.write_json(tmp / "job.json", job)
        base = {**os.environ, "WORLD_SIZE": str(stages), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        procs, forwarders = [], []
        try:
            for r in range(stages):
                env = {**base, "RANK": str(r), "LOCAL_RANK": str(r), ERROR_FILE_ENV: str(tmp / f"error{r}.txt")}
                procs.append(subprocess.Popen([sys.executable, "-m", "ffneuro.train.pipeline", str(tmp / "job.json")],
                                              env=env, stderr=subprocess.PIPE))
                forwarders.append(threading.Thread(target=forward_stderr, args=(procs[-1].stderr, sys.stderr),
                                                   daemon=True, name=f"ffneuro-stage{r}-stderr"))
                forwarders[-1].start()
            while any(p.poll() is None for p in procs) and all(p.returncode in (None, 0) for p in procs):
                time.sleep(poll_s)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for t in forwarders:           # every stage's last words are out before the launcher's
                t.join(timeout=5)
        failed = [r for r, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise PipelineError(first_error(tmp, {r: procs[r].returncode for r in failed}))
        return json.loads((tmp / "metrics.json").read_text())


# What the C++ runtime prints when a stage's gloo threads are torn down while the stage
# exits on an error its launcher already reports in one line (seen about once in ten
# divergence runs): not a second error, so it is not passed on.
RUNTIME_NOISE = (b"terminate called without an active exception\n",)


def forward_stderr(source, target) -> None:
    """Copy a stage's stderr to ``target`` as it comes (raw chunks, so progress bars that
    redraw with \\r keep drawing), without the runtime's teardown noise."""
    out = getattr(target, "buffer", target)
    for chunk in iter(lambda: os.read(source.fileno(), 65536), b""):
        for noise in RUNTIME_NOISE:
            chunk = chunk.replace(noise, b"")
        if chunk:
            out.write(chunk)
            target.flush()


def first_error(tmp: Path, failed: dict[int, int]) -> str:
    """The error that stopped the pipeline: a stage's own failure before one that only
    lost its peer; a stage stopped without a word (killed) is named by its rank."""
    errors = []
    for r in failed:
        path = tmp / f"error{r}.txt"
        text = path.read_text().strip() if path.exists() else ""
        errors.append((text.startswith("peer:"), r, text.removeprefix("peer:")))
    errors.sort(key=lambda e: (e[0], not e[2], e[1]))
    _, r, text = errors[0]
    code = failed[r]
    how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
        else f"exited with code {code}"
    return text or f"stage {r + 1} of the pipeline {how} without an error message"


def leave(code: int) -> NoReturn:
    """End a stage process (ours or torchrun's) with ``code`` but without the interpreter's
    teardown. Everything a stage writes is fsynced before it returns; at teardown gloo's
    worker threads can still hold work objects, and destroying them while the interpreter
    finalises aborts a process whose run succeeded (SIGABRT, "terminate called without an
    active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """A local stage ends when the process that launched it is gone (killed, say), rather
    than train on as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="ffneuro-parent-watch").start()


def _stage_main(job_path: str) -> int:
    """Entry of a local stage process: run the job, write rank 0's metrics, and on failure
    write one line for the launcher (``peer:`` first when another stage was the cause)."""
    job = json.loads(Path(job_path).read_text())
    err = os.environ.get(ERROR_FILE_ENV)
    _exit_with_parent()
    try:
        metrics = run_stage(RunConfig.from_dict(job["config"]), job["stages"],
                            out=Path(job["out"]) if job["out"] else None, resume=job["resume"],
                            overwrite=job["overwrite"], progress=job["progress"], threads=job["threads"],
                            count_events=job["count_events"])
        if int(os.environ["RANK"]) == 0:
            runio.write_json(Path(job["result"]), metrics)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:              # one line for the launcher, never a traceback
        line = (str(exc).splitlines() or [type(exc).__name__])[0]
        if os.environ.get("FFNEURO_DEBUG"):
            log.exception("stage failed")
        if err:
            Path(err).write_text(("peer:" if isinstance(exc, PeerLost) else "") + line + "\n")
        else:
            log.error("error: %s", line)     # no handler configured here: logging's last resort prints the line
        return 1


if __name__ == "__main__":
    leave(_stage_main(sys.argv[1]))
