"""The streaming FF trainer: one loop, readable top to bottom.

Data flows batch by batch through the units (``train.step``). A unit's activities are
used for its own update and handed on detached; nothing is kept for a backward pass, so
peak memory does not grow with depth (only the unit being updated holds a graph).

Schedules: ``network`` updates every unit on every batch (Algorithm 2 of Lorberbom et
al.); ``layer`` trains unit 1 for all epochs, then unit 2, … (classical FF; earlier units
frozen). Every random draw comes from a named stream (``ffneuro.rng``), saved in the
checkpoint after every epoch so that ``--resume`` continues exactly.
"""

from __future__ import annotations


import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ffneuro import __version__
from ffneuro.config import RunConfig
from ffneuro.data.augment import batch_transform
from ffneuro.data.loaders import Dataset, load_dataset
from ffneuro.evaluate import early_exit, evaluate
from ffneuro.functional.encoding import random_wrong_labels
from ffneuro.hw.chip import ChipSpec, run_chip_spec
from ffneuro.hw.energy import estimate
from ffneuro.hw.events import EventLedger
from ffneuro.hw.mapping import format_memory, optimizer_slots, sram_report
from ffneuro.network import FFNetwork, default_inference_layers, resolve_encoding
from ffneuro.rng import Streams, generator, inference_generator
from ffneuro.runs import files as runio
from ffneuro.train.baselines import BASELINES, train_baseline
from ffneuro.train.memory import available_memory_bytes, check_host_memory, shape_only, training_memory_bytes
from ffneuro.train.probe import entropy_record, probe_goodness, probe_indices
from ffneuro.train.schedules import active_units, chunks_of, lr_factor, stages
from ffneuro.train.step import event_counter, train_step
from ffneuro.units.lif import batch_rule_note
from ffneuro.units.synapse import migrate_state

log = logging.getLogger(__name__)

INFER_EVENT_SAMPLES = 1000   # test samples whose inference events are counted after training
STATISTICS_SAMPLES = 4096    # training samples that re-estimate batch-norm statistics after every epoch
CHECKPOINT_LAYOUT = 2        # 2: named random streams (ffneuro.rng)


class DivergedError(ValueError):
    """Training produced a non-finite loss or weight."""


def check_finite(net: FFNetwork, mean_loss: dict[int, float], epoch: int) -> None:
    """Stop at the first unit whose epoch loss or weights are not finite (NaN or ±inf)."""
    for i in sorted(mean_loss):
        if not math.isfinite(mean_loss[i]):
            raise DivergedError(f"training diverged: unit {i + 1}'s loss is {mean_loss[i]} in epoch {epoch} "
                                "(try a lower optim.lr; the run dir keeps the last finite checkpoint)")
    for i, unit in _named_units(net):
        for name, p in unit.named_parameters():
            if not bool(torch.isfinite(p).all()):
                which = "the head" if i == "head" else f"unit {i + 1}"
                raise DivergedError(f"training diverged: {which}'s {name} holds non-finite values after epoch "
                                    f"{epoch} (try a lower optim.lr; the run dir keeps the last finite checkpoint)")


class BudgetError(ValueError):
    """The model does not fit the profile's memory; ``details`` holds the per-layer table."""

    def __init__(self, message: str, details: str):
        super().__init__(message)
        self.details = details


@dataclass
class TrainState:
    """Where a run is: enough to resume exactly."""

    epoch: int = 0                     # completed epochs (summed over stages)
    train_s: float = 0.0               # wall time spent training (excludes evaluation)
    history: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Building a run
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputCode:
    """How a dataset's samples enter the network: standardisation and the label code."""

    mean: float
    std: float
    mode: str
    label_scale: float


def input_code(cfg: RunConfig, data: Dataset) -> InputCode:
    mean = float(data.x_train.mean()) if cfg.data.standardize else 0.0
    std = float(data.x_train.std()) if cfg.data.standardize else 1.0
    x_std = (data.x_train - mean) / std if cfg.data.standardize else data.x_train
    mode = resolve_encoding(cfg, x_std, data.num_classes)
    scale = cfg.data.label_scale if cfg.data.label_scale is not None else float(x_std.max())
    return InputCode(mean, std, mode, scale)


def build_network(cfg: RunConfig, data: Dataset, streams: Streams, chip: ChipSpec | None = None,
                  code: InputCode | None = None) -> FFNetwork:
    code = code or input_code(cfg, data)
    return FFNetwork.from_config(cfg, data.feature_shape, data.num_classes, code.mode, code.mean, code.std,
                                 generators=streams.units, chip=chip, label_scale=code.label_scale)


def check_resources(cfg: RunConfig, data: Dataset, code: InputCode, chip: ChipSpec | None, prof, batch: int,
                    simulate_anyway: bool) -> dict | None:
    """Before any weight is allocated: the network is built on the meta device (shapes
    only), checked against the profile's memory (if any) and the machine's. Returns the
    profile's SRAM report (None without a profile)."""
    shapes = shape_only(lambda: build_network(cfg, data, Streams(cfg.loop.seed, cfg.units.n_units), chip, code))
    budget = check_budget(prof, shapes.layer_sizes, simulate_anyway, **memory_args(shapes)) if prof else None
    need = training_memory_bytes(shapes, cfg, batch, chip is not None)
    check_host_memory(need, available_memory_bytes(), f"model {shapes.layer_sizes}")
    return budget


def total_epochs(cfg: RunConfig) -> int:
    return cfg.loop.epochs * len(stages(cfg.loop.schedule, cfg.units.n_units))


def set_epoch_lr(net: FFNetwork, cfg: RunConfig, epoch_in_stage: int) -> float:
    o = cfg.optim
    f = lr_factor(epoch_in_stage, cfg.loop.epochs, o.lr_schedule, o.milestones, o.lr_gamma)
    for unit in net.layers:
        unit.set_lr(o.lr * f, cfg.hardware.onchip_lr * f)
    if net.head is not None:
        net.head.set_lr(o.head_lr * f)
    return f


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def memory_args(net: FFNetwork) -> dict:
    """What the SRAM mapping needs from the units' resources: the stored weights of each,
    their weight sharing (conv units), the most time steps of state any unit's learning
    rule keeps per sample, and the width of a learning shadow (hardware.shadow_bits)."""
    res = net.resources()
    return {"learning_history_steps": max(r.history_steps for r in res), "synapses": [r.synapses for r in res],
            "sharing": [r.to_dict() for r in res], "shadow_bits": net.chip.shadow_bits if net.chip else 0}


def check_budget(profile, layer_sizes: list[int], simulate_anyway: bool, **memory) -> dict:
    """Memory check before training: the per-unit SRAM table against the chip's budget
    (``memory``: see ``memory_args``)."""
    report = sram_report(layer_sizes, profile, optimizer_slots=optimizer_slots(profile), **memory)
    if not report["fits"] and not simulate_anyway:
        table = "\n".join(format_memory(report["layers"], report))
        raise BudgetError(f"model {layer_sizes} does not fit profile {profile.name!r} "
                          f"({report['cores_used']} cores needed, {profile.memory.cores} available); "
                          "pass --simulate-anyway to train regardless", table)
    return report


# ----------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------
def _named_units(net: FFNetwork) -> list:
    """(index or "head", unit) of every unit of ``net``, the head last."""
    return list(enumerate(net.layers)) + ([("head", net.head)] if net.head is not None else [])


def _units_with_optimizers(net: FFNetwork) -> list:
    """(name, unit) of every unit that keeps optimiser state (a torch ``optimizer``)."""
    return [(name, u) for name, u in _named_units(net) if getattr(u, "optimizer", None) is not None]


def checkpoint_tensors(net: FFNetwork, streams: Streams) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    scalars = {}
    for name, unit in _units_with_optimizers(net):
        t, s = runio.optimizer_to_flat(unit.optimizer, f"opt.{name}")
        tensors.update(t)
        scalars[str(name)] = s
    tensors.update(streams.state())
    return tensors, scalars


def restore(net: FFNetwork, streams: Streams, tensors: dict, meta: dict, source: str) -> TrainState:
    streams.restore(tensors, source)           # an older layout fails here, with one line, before any change
    try:
        net.load_state_dict(migrate_state({k[len("model."):]: v for k, v in tensors.items()
                                           if k.startswith("model.")}))
        for name, unit in _units_with_optimizers(net):
            runio.optimizer_from_flat(unit.optimizer, f"opt.{name}", tensors, meta["optimizers"][str(name)])
    except (RuntimeError, KeyError, ValueError) as e:
        raise runio.RunDirError(f"{source}: does not match the run's config.json "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    st = meta["state"]
    return TrainState(epoch=st["epoch"], train_s=st["train_s"], history=st["history"])


@torch.no_grad()
def count_early_exit(net: FFNetwork, x: torch.Tensor, depth: torch.Tensor, ledger: EventLedger) -> None:
    """Count the inference events of early exit: the samples that leave after k units run
    their C label passes (a competitive net: its one label-free pass) through units 1..k
    only (``depth`` (N,) from ``early_exit``)."""
    on_unit = event_counter(ledger, "infer", net, head=False)
    gen = inference_generator()
    for k in torch.unique(depth).tolist():
        rows = x[depth == k]
        for labels in _label_passes(net, rows.shape[0]):
            for p in net.stream(rows, labels, generator=gen, upto=k):
                on_unit(p)
    ledger.add_samples("infer", x.shape[0])


def _label_passes(net: FFNetwork, n: int) -> list:
    """The passes of multi-pass inference: one per candidate label, or the one label-free
    pass of a channel-wise competitive net."""
    if net.competitive:
        return [None]
    return [[torch.full((n,), c, dtype=torch.long)] for c in range(net.num_classes)]


@torch.no_grad()
def count_inference(net: FFNetwork, x: torch.Tensor, ledger: EventLedger, exit_threshold: float | None = None) -> str:
    """Count inference events on real test samples: early-exit multi-pass when an
    ``exit_threshold`` is set (each sample's C label passes run only the units up to its
    exit depth), else one-pass (neutral pass + head) when the run has a head, else
    multi-pass (all C label passes). Returns the mode counted."""
    if exit_threshold is not None:
        count_early_exit(net, x, early_exit(net.goodness_table(x), exit_threshold)[0], ledger)
        return "multi-pass-early-exit"
    if net.head is not None:
        net.neutral_activities(x, event_counter(ledger, "infer", net, head=True))
        ledger.add_samples("infer", x.shape[0])
        return "one-pass"
    on_unit = event_counter(ledger, "infer", net, head=False)
    gen = inference_generator()
    for labels in _label_passes(net, x.shape[0]):
        for p in net.stream(x, labels, generator=gen):
            on_unit(p)
    ledger.add_samples("infer", x.shape[0])
    return "multi-pass"


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------
def train(cfg: RunConfig, *, out: Path | None = None, resume: bool = False, progress: bool = True,
          data: Dataset | None = None, stop_after: int | None = None, profile=None, device: str = "auto",
          simulate_anyway: bool = False, count_events: bool | None = None, on_epoch=None,
          network: FFNetwork | None = None, overwrite: bool = False) -> dict:
    """Train (or resume) a run and return its metrics dict.

    ``profile``: a hardware profile (name, path or Profile; default ``cfg.hardware.profile``):
    weights, activities and updates then follow the chip's formats and learning rule, the
    batch is capped at the chip's streaming limit, the model is checked against its
    memory before training, and the run's events are counted and turned into an
    energy/SRAM estimate. ``out``: run dir (config, checkpoint after every epoch,
    metrics). ``stop_after``: stop after this many epochs in total (simulates an
    interruption). ``count_events``: count events (default: when a profile is given).
    ``on_epoch(record)`` is called after every epoch. ``network``: train this network
    instead of building one from ``cfg`` (units of a kind of one's own, for instance).
    ``overwrite``: replace the run already in ``out`` (see ``runs.files.prepare_run_dir``).

    Training stops with ``DivergedError`` at the first epoch whose loss or weights are
    not finite (the last good checkpoint stays in ``out``).
    """
    from ffneuro.hw.profiles import load_profile, profile_to_dict

    cfg = cfg.validate()
    profile = profile if profile is not None else cfg.hardware.profile
    simulate_anyway = simulate_anyway or cfg.hardware.simulate_anyway
    if out is not None:
        out = runio.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if cfg.loop.algo in BASELINES:
        if profile is not None:
            raise ValueError(f"loop.algo = {cfg.loop.algo} is a backprop baseline: it does not train under a profile")
        if resume:
            raise ValueError(f"loop.algo = {cfg.loop.algo} is a backprop baseline: it cannot --resume (train it again)")
        return train_baseline(cfg, out=out, data=data, progress=progress)
    dev = resolve_device(device)
    prof = load_profile(profile) if isinstance(profile, (str, Path)) else profile
    chip = run_chip_spec(prof, cfg.hardware.batch_rule, cfg.hardware.shadow_bits)
    if chip is not None and cfg.loop.schedule == "chunks":
        raise ValueError(f"loop.schedule = chunks backpropagates inside a chunk of units, which a chip's local "
                         f"learning rule cannot do: train without --profile {prof.name}, or use network or alternate")
    seed = cfg.loop.seed
    torch.manual_seed(seed)
    data = data if data is not None else load_dataset(cfg.data.name, val_fraction=cfg.data.val_fraction, seed=seed)
    streams = Streams(seed, cfg.units.n_units)
    bs = min(cfg.loop.batch_size, prof.streaming.max_batch) if prof is not None else cfg.loop.batch_size
    note = batch_rule_note(cfg.units.neuron, cfg.hardware.batch_rule, bs) if chip is not None else None
    if note:
        log.warning("warning: %s", note)
    if network is None:
        code = input_code(cfg, data)
        budget = check_resources(cfg, data, code, chip, prof, bs, simulate_anyway)
        net = build_network(cfg, data, streams, chip, code)
    else:
        net = network
        budget = check_budget(prof, net.layer_sizes, simulate_anyway, **memory_args(net)) if prof else None
    count_events = (prof is not None) if count_events is None else count_events
    ledger = EventLedger() if count_events else None
    state = TrainState()
    resumed = False
    if out is not None:
        out = Path(out)
        saved = runio.load_resumable(out) if resume else None
        if saved is not None:
            tensors, meta = saved
            state = restore(net, streams, tensors, meta, str(out / runio.CHECKPOINT))
            if ledger is not None and meta.get("events"):
                ledger = EventLedger.from_dict(meta["events"])
            resumed = True
        runio.write_json(out / runio.CONFIG, {
            "ffneuro_version": __version__, "config": cfg.to_dict(), "dataset": data.name,
            "source": data.source, "num_classes": data.num_classes, "layer_sizes": net.layer_sizes,
            "feature_shape": list(data.feature_shape), "parameters": net.trainable_parameters(),
            "resources": [r.to_dict() for r in net.resources()],
            "n_train": int(data.x_train.shape[0]),
            "label_encoding": net.encoding.mode, "label_scale": net.label_scale, "batch_size_applied": bs,
            "profile_name": prof.name if prof is not None else None,
            "profile": profile_to_dict(prof) if prof is not None else None})
    net.to(dev)
    x_train, y_train = net.prepare_input(data.x_train.to(dev)), data.y_train.to(dev)
    x_test, y_test = net.prepare_input(data.x_test.to(dev)), data.y_test.to(dev)
    val = (net.prepare_input(data.x_val.to(dev)), data.y_val.to(dev)) if data.x_val is not None else None
    inference_layers = default_inference_layers(cfg)
    exit_at = cfg.inference.exit_threshold
    jitter = batch_transform(cfg.data.augment_shift, data,
                             fill=net.prepare_input(torch.zeros(1, x_train[0].numel(), device=dev)).flatten()[0].item())
    n = x_train.shape[0]
    total = total_epochs(cfg)
    last_eval: dict = {}
    if chip is not None and not resumed:
        calib = torch.randperm(n, generator=streams["calibration"])[: max(bs, 256)]
        net.calibrate(x_train[calib], y_train[calib], streams["encoder"])
    probe = None
    if cfg.loop.entropy_probe and not net.competitive:   # a fixed held-out probe for the entropy log
        g = streams.probe()
        idx = probe_indices(x_test.shape[0], cfg.loop.entropy_probe, g)
        y_p = y_test[idx]
        probe = (x_test[idx], y_p, random_wrong_labels(y_p, net.num_classes, g))

    lp = cfg.loop
    for s_idx, stage in enumerate(stages(lp.schedule, len(net.layers))):
        for e in range(cfg.loop.epochs):
            epoch = s_idx * cfg.loop.epochs + e
            if epoch < state.epoch:
                continue                           # already done (resume)
            if stop_after is not None and epoch >= stop_after:
                break
            net.train()
            set_epoch_lr(net, cfg, e)
            perm = torch.randperm(n, generator=streams["order"]).to(dev)
            sums: dict[int, float] = {}
            counts: dict[int, int] = {}
            t0 = time.perf_counter()
            bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{total}", disable=not progress,
                       leave=False, unit="batch", mininterval=0.5)
            for t, start in enumerate(bar):
                idx = perm[start:start + bs]
                xb = jitter(x_train[idx], streams["augment"])
                active = active_units(stage, epoch=e, batch=t, schedule=lp.schedule, unit_epochs=lp.unit_epochs,
                                      chunk=lp.chunk)
                chunks = chunks_of(active, lp.chunk, t) if lp.schedule == "chunks" else None
                st = train_step(net, cfg, xb, y_train[idx], active, streams, ledger, bs, chunks)
                if ledger is not None:
                    ledger.add_samples("train", idx.shape[0])
                for i, v in st["loss"].items():
                    sums[i] = sums.get(i, 0.0) + v
                    counts[i] = counts.get(i, 0) + 1
                if t % 20 == 19:
                    bar.set_postfix({f"L{i + 1}": f"{sums[i] / counts[i]:.3f}" for i in sorted(sums)})
            state.train_s += time.perf_counter() - t0
            check_finite(net, {i: sums[i] / counts[i] for i in sums}, epoch + 1)
            stats = torch.randperm(n, generator=generator(seed, f"statistics{epoch}"))[:STATISTICS_SAMPLES]
            net.refresh_statistics(x_train, y_train, stats.to(dev))
            state.epoch = epoch + 1
            record = {"epoch": state.epoch, "train_s": round(state.train_s, 3),
                      "loss": {f"layer{i + 1}": sums[i] / counts[i] for i in sorted(sums)}}
            if probe is not None:
                net.eval()
                seen = probe_goodness(net, *probe)
                record["entropy"] = entropy_record(seen.g_pos, seen.g_neg)
                record["silent_units"] = seen.silent
            is_last = state.epoch == total
            if is_last or (cfg.loop.eval_every and state.epoch % cfg.loop.eval_every == 0):
                net.eval()
                last_eval = evaluate(net, x_test, y_test, inference_layers, exit_at)
                record.update(last_eval)
                if val is not None:
                    record["val_error"] = evaluate(net, *val, inference_layers, exit_at)["test_error"]
            state.history.append(record)
            log.info("epoch %d: %s", state.epoch, record)
            if on_epoch is not None:
                on_epoch(record)
            if out is not None:
                tensors, scalars = checkpoint_tensors(net, streams)
                runio.save_checkpoint(out / runio.CHECKPOINT, tensors, {
                    "layout": CHECKPOINT_LAYOUT, "optimizers": scalars,
                    "events": ledger.to_dict() if ledger is not None else None,
                    "state": {"epoch": state.epoch, "train_s": state.train_s, "history": state.history}})

    net.eval()
    if not last_eval or "test_error" not in state.history[-1]:
        last_eval = evaluate(net, x_test, y_test, inference_layers, exit_at)
        if val is not None:
            last_eval["val_error"] = evaluate(net, *val, inference_layers, exit_at)["test_error"]
    elif val is not None:
        last_eval["val_error"] = state.history[-1]["val_error"]      # evaluated with the last epoch
    metrics = {
        **last_eval,
        **({"n_val": int(val[1].shape[0])} if val is not None else {}),
        "inference_layers": [i + 1 for i in inference_layers],
        "epochs": state.epoch,
        "wall_s": round(state.train_s, 3),
        "dataset": data.name,
        "n_train": int(n),
        "n_test": int(x_test.shape[0]),
        "batch_size_applied": bs,
        "profile": prof.name if prof is not None else None,
        "parameters": net.trainable_parameters(),
        "history": state.history,
    }
    if ledger is not None:
        metrics["inference_events_mode"] = count_inference(net, x_test[:INFER_EVENT_SAMPLES], ledger, exit_at)
    if prof is not None and ledger is not None:
        metrics["estimate"] = estimate(
            prof, layer_sizes=net.layer_sizes,
            events={"train": ledger.per_sample("train"), "infer": ledger.per_sample("infer")},
            num_classes=net.num_classes, source="measured", optimizer_slots=optimizer_slots(prof), n_train=n,
            **memory_args(net))
    if budget is not None:
        metrics["sram_fits"] = budget["fits"]
    if out is not None:
        if ledger is not None:
            runio.write_json(out / "events.json", ledger.to_dict())
        if "estimate" in metrics:
            runio.write_json(out / "estimate.json", metrics["estimate"])
        runio.write_json(out / runio.METRICS, metrics)
    return metrics
