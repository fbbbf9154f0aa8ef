"""One stage of the pipeline: its units learn on every batch that arrives and hand the
batch on; rank 0 also draws the data and evaluates and checkpoints at every epoch's end."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

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
from ffneuro.train.pipeline.plan import PeerLost, gamma_refresh, split_stages, unit_costs
from ffneuro.train.pipeline.wire import (TAG_REFRESH, Link, Message, broadcast_bytes, broadcast_json, recv_bytes,
                                         send_bytes)
from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices
from ffneuro.train.schedules import active_units
from ffneuro.train.step import _fork, event_counter, learning_through, scout_goodness, stacked_goodness

log = logging.getLogger(__name__)


def run_units(net: FFNetwork, lo: int, hi: int, h: torch.Tensor, through=None):
    """``FFNetwork.stream`` from the middle: units lo..hi−1 on the activity ``h`` that unit
    lo−1 handed on (a later stage's half of the one loop)."""
    for i in range(lo, hi):
        unit = net.layers[i]
        out = through(i, unit, h) if through is not None else unit(h)
        yield Passage(i, unit, h, out)
        h = out


def float_state(units: list) -> list[torch.Tensor]:
    """The floating-point tensors of ``units``' state dicts, in order (a weight refresh)."""
    return [t for u in units for t in u.state_dict().values() if t.is_floating_point()]


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
        self.refresh_out = []              # no gloo work outlives the process group (see launch.leave)
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
