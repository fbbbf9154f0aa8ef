"""The streaming FF trainer: one loop, readable top to bottom.

Data flows sample-batch by sample-batch through the layer units. A unit's activities are
used for its own update and handed on detached; nothing is kept for a backward pass, so
peak memory does not grow with depth (only the unit being updated holds a graph).

    dataset ─ coded(x, [y⁺, y⁻]) ─▶ unit 1 ─▶ unit 2 ─▶ … ─▶ unit L   (positives and negatives
            │                                                       travel as one stacked batch)
            └ encode(x, neutral) ─▶ units (no grad) ─▶ head (one-pass; scores for hard negatives)

Schedules: ``network`` updates every unit on every batch (Algorithm 2 of Lorberbom et
al.); ``layer`` trains unit 1 for all epochs, then unit 2, … (classical FF; earlier units
frozen). CFF adds γ_i, the other units' goodness from a frozen copy (a no-grad scout
pass with the weights as they were at the start of the step), to unit i's goodness.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ffneuro import __version__
from ffneuro.runs import files as runio
from ffneuro.analysis.report import entropy_record, probe_goodness, probe_indices
from ffneuro.data.augment import batch_transform
from ffneuro.train.baselines import BASELINES, train_baseline
from ffneuro.config import RunConfig
from ffneuro.data.loaders import Dataset, load_dataset
from ffneuro.functional.encoding import CodedBatch, choose_encoding, hard_wrong_labels, random_wrong_labels
from ffneuro.hw.estimate import learning_history_steps
from ffneuro.hw.events import (EventLedger, forward_events, head_events, spike_forward_events, spike_update_events,
                            update_events)
from ffneuro.network import FFNetwork, default_inference_layers, gamma_members
from ffneuro.functional.fixed import ChipSpec, chip_spec
from ffneuro.units.optim import lr_factor

log = logging.getLogger(__name__)

INFER_EVENT_SAMPLES = 1000   # test samples whose inference events are counted after training


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
# Evaluation
# ----------------------------------------------------------------------------------------
def errors_from_goodness(table: torch.Tensor, y: torch.Tensor, layers: list[int]) -> float:
    """Error (%) of multi-pass inference summing the goodness of ``layers`` (0-based);
    ties go to the lowest label."""
    pred = multipass_scores(table, layers).argmax(dim=1)
    return float((pred != y.to(pred.device)).float().mean() * 100)


@torch.no_grad()
def evaluate(net: FFNetwork, x: torch.Tensor, y: torch.Tensor, inference_layers: list[int]) -> dict:
    """Test errors (%) for every inference mode plus the layer-collaboration analysis:
    each layer alone and cumulative groups {1}, {1,2}, … (SPEC §2, Fig. 2)."""
    table = net.goodness_table(x)
    n_layers = table.shape[2]
    out = {
        "test_error": {"multi_pass": errors_from_goodness(table, y, inference_layers)},
        "per_layer_error": [errors_from_goodness(table, y, [i]) for i in range(n_layers)],
        "cumulative_error": [errors_from_goodness(table, y, list(range(k + 1))) for k in range(n_layers)],
    }
    if net.head is not None:
        pred = net.head_logits(x).argmax(dim=1)
        out["test_error"]["one_pass"] = float((pred != y).float().mean() * 100)
    return out


# ----------------------------------------------------------------------------------------
# Building a run
# ----------------------------------------------------------------------------------------
def build_network(cfg: RunConfig, data: Dataset, generator: torch.Generator,
                  chip: ChipSpec | None = None) -> FFNetwork:
    mean = float(data.x_train.mean()) if cfg.data.standardize else 0.0
    std = float(data.x_train.std()) if cfg.data.standardize else 1.0
    x_std = (data.x_train - mean) / std
    mode = choose_encoding(cfg.data.label_encoding, x_std, data.num_classes)
    scale = cfg.data.label_scale if cfg.data.label_scale is not None else float(x_std.max())
    return FFNetwork(cfg, data.x_train.shape[1], data.num_classes, mode, mean, std, generator=generator,
                     chip=chip, label_scale=scale)


@torch.no_grad()
def calibrate(net: FFNetwork, x: torch.Tensor, y: torch.Tensor) -> None:
    """Enter the chip's number formats, layer by layer, on one batch of positive data."""
    h = net.encoding.encode(x, y)
    if net.spiking:
        h = net.to_spikes(h, torch.Generator().manual_seed(0))
    for layer in net.layers:
        layer.calibrate(h)
        h = layer(h)
    if net.head is not None:
        net.head.calibrate(net.neutral_activities(x))


def stages(cfg: RunConfig) -> list[list[int]]:
    """The units updated in each stage: all at once (network) or one at a time (layer)."""
    n = len(cfg.units.layers)
    return [list(range(n))] if cfg.loop.schedule == "network" else [[i] for i in range(n)]


def total_epochs(cfg: RunConfig) -> int:
    return cfg.loop.epochs * len(stages(cfg))


# ----------------------------------------------------------------------------------------
# One training step (one mini-batch)
# ----------------------------------------------------------------------------------------
def event_counter(ledger: EventLedger | None, phase: str, net: FFNetwork, head: bool):
    """An ``on_layer`` callback that counts a pass's events into ``ledger`` (or None)."""
    if ledger is None:
        return None

    def on_layer(i: int, h_in: torch.Tensor, h_out: torch.Tensor) -> None:
        ledger.add(phase, i, layer_events(net, i, h_in, h_out))
        if head and i in net.head_idx:
            ledger.add(phase, i, head_events(sample_rows(h_out), net.num_classes))
    return on_layer


def dense(x: torch.Tensor | CodedBatch) -> torch.Tensor:
    return x.dense() if isinstance(x, CodedBatch) else x


def sample_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of one sample each: a spike train (T, N, D) becomes its counts (N, D)."""
    return x.sum(dim=0) if x.dim() == 3 else x


def layer_events(net: FFNetwork, i: int, h_in: torch.Tensor, h_out: torch.Tensor) -> dict[str, float]:
    """Forward events of unit i: per time step for a spiking unit, else per sample."""
    if net.spiking:
        return spike_forward_events(h_in, h_out, binary_input=spike_input(net, i))
    return forward_events(h_in, h_out, binary_input=False)


def spike_input(net: FFNetwork, i: int) -> bool:
    """Unit i's inputs are binary spikes (accumulate-only synops), not graded values."""
    return net.spiking and not (i == 0 and net.spike_encoding == "direct")


@torch.no_grad()
def scout_goodness(net: FFNetwork, x: torch.Tensor | CodedBatch,
                   on_layer=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CFF's frozen copy: goodness (L, B) of every unit for positives and negatives
    (``x``: the first unit's input, positives then negatives), computed without gradient
    from the weights as they are before this step's updates. Only the goodness vectors
    are kept, never the activities."""
    gs = []
    h = x
    for i, layer in enumerate(net.layers):
        out = layer(h)
        if on_layer is not None:
            on_layer(i, dense(h), out)
        gs.append(layer.goodness(out))
        h = out
    g = torch.stack(gs)
    b = g.shape[1] // 2
    return g[:, :b], g[:, b:]


def train_step(net: FFNetwork, cfg: RunConfig, x: torch.Tensor, y: torch.Tensor, active: list[int],
               generator: torch.Generator, ledger: EventLedger | None = None, update_batch: int = 1) -> dict:
    """Stream one mini-batch through the units, updating those in ``active``.

    Positives and negatives travel together: B positives then B negatives. The first
    unit gets them factored (same samples, two label codes), so it multiplies the data
    part once. With a ``ledger``, every pass's events are counted from the real tensors
    (non-zero inputs × fan-out): the neutral pass and head, the CFF scout pass, both FF
    passes and each unit's update. ``update_batch`` is the number of samples per applied
    update.
    """
    stats: dict = {}
    # 1. Neutral pass: trains the one-pass head and supplies scores for hard negatives.
    scores = None
    if net.head is not None:
        acts = net.neutral_activities(x, event_counter(ledger, "train", net, head=True), generator)
        scores, stats["head_loss"] = net.head.local_step(acts, y)
    # 2. Negative labels: never the true label.
    if cfg.loop.negatives == "hard":
        y_neg = hard_wrong_labels(y, scores, generator)
    else:
        y_neg = random_wrong_labels(y, net.num_classes, generator)
    h: torch.Tensor | CodedBatch = net.encoding.coded(x, [y, y_neg])
    if net.spiking:                       # the spike encoder is part of the data path
        h = net.to_spikes(h.dense(), generator)
    b = x.shape[0]
    # 3. CFF: γ from a frozen copy. 'earlier' needs no scout: earlier units' goodness in
    #    this very pass is computed before their own update, i.e. by the frozen copy.
    n = len(net.layers)
    scout = None
    if cfg.loop.algo == "cff" and cfg.cff.gamma != "earlier":
        scout = scout_goodness(net, h, event_counter(ledger, "train", net, head=False))
    gp_seen, gn_seen = [], []
    losses = []
    # 4. Stream through the units. The last active unit ends the pass: nothing later learns.
    for i in range(max(active) + 1):
        layer = net.layers[i]
        x_in = dense(h) if ledger is not None else None
        if i not in active:
            with torch.no_grad():
                out = layer(h)
                g = layer.goodness(out)
            gp, gn = g[:b], g[b:]
        else:
            gam_p = gam_n = None
            if cfg.loop.algo == "cff":
                members = gamma_members(cfg.cff.gamma, i, n)
                if scout is not None:
                    gam_p, gam_n = scout[0][members].sum(0), scout[1][members].sum(0)
                elif members:
                    gam_p, gam_n = torch.stack(gp_seen).sum(0), torch.stack(gn_seen).sum(0)
            r = layer.local_step(h, gam_p, gam_n, generator)
            losses.append(r.loss)
            out, gp, gn = r.h, r.g_pos, r.g_neg
            if ledger is not None and net.spiking:          # per input spike / per step, by rule
                ledger.add("train", i, spike_update_events(x_in[:, :b], x_in[:, b:], layer.out_features,
                                                           update_batch, rule=cfg.units.spike_learning))
            elif ledger is not None:
                xs = sample_rows(x_in)
                ledger.add("train", i, update_events(xs[:b], xs[b:], layer.out_features, update_batch))
        if ledger is not None:
            ledger.add("train", i, layer_events(net, i, x_in, out))
        if cfg.loop.algo == "cff":
            gp_seen.append(gp)
            gn_seen.append(gn)
        h = out
    stats["loss"] = losses
    return stats


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------
def checkpoint_tensors(net: FFNetwork, generator: torch.Generator) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    scalars = {}
    units = list(enumerate(net.layers)) + ([("head", net.head)] if net.head is not None else [])
    for name, unit in units:
        t, s = runio.optimizer_to_flat(unit.optimizer, f"opt.{name}")
        tensors.update(t)
        scalars[str(name)] = s
    tensors["rng.train"] = generator.get_state()
    return tensors, scalars


def restore(net: FFNetwork, generator: torch.Generator, tensors: dict, meta: dict) -> TrainState:
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    units = list(enumerate(net.layers)) + ([("head", net.head)] if net.head is not None else [])
    for name, unit in units:
        runio.optimizer_from_flat(unit.optimizer, f"opt.{name}", tensors, meta["optimizers"][str(name)])
    generator.set_state(tensors["rng.train"])
    st = meta["state"]
    return TrainState(epoch=st["epoch"], train_s=st["train_s"], history=st["history"])


def set_epoch_lr(net: FFNetwork, cfg: RunConfig, epoch_in_stage: int) -> float:
    f = lr_factor(epoch_in_stage, cfg.loop.epochs, cfg.optim.lr_schedule, cfg.optim.milestones, cfg.optim.lr_gamma)
    for layer in net.layers:
        layer.set_lr(cfg.optim.lr * f, cfg.hardware.onchip_lr * f)
    if net.head is not None:
        net.head.set_lr(cfg.optim.head_lr * f)
    return f


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def check_budget(profile, layer_sizes: list[int], simulate_anyway: bool, history_steps: int = 0) -> dict:
    """Memory check before training: the per-layer SRAM table against the chip's budget
    (``history_steps``: see ``estimate.learning_history_steps``)."""
    from ffneuro.hw.estimate import format_memory, optimizer_slots, sram_report

    report = sram_report(layer_sizes, profile, optimizer_slots=optimizer_slots(profile),
                         learning_history_steps=history_steps)
    if not report["fits"] and not simulate_anyway:
        table = "\n".join(format_memory(report["layers"], report))
        raise BudgetError(f"model {layer_sizes} does not fit profile {profile.name!r} "
                          f"({report['cores_used']} cores needed, {profile.memory.cores} available); "
                          "pass --simulate-anyway to train regardless", table)
    return report


@torch.no_grad()
def count_inference(net: FFNetwork, x: torch.Tensor, ledger: EventLedger) -> str:
    """Count inference events on real test samples: one-pass (neutral pass + head) when
    the run has a head, else multi-pass (all C label passes). Returns the mode counted."""
    if net.head is not None:
        net.neutral_activities(x, event_counter(ledger, "infer", net, head=True))
        ledger.add_samples("infer", x.shape[0])
        return "one-pass"
    on_layer = event_counter(ledger, "infer", net, head=False)
    gen = torch.Generator().manual_seed(0)
    for c in range(net.num_classes):
        h = net.encoding.encode(x, torch.full((x.shape[0],), c, dtype=torch.long))
        if net.spiking:
            h = net.to_spikes(h, gen)
        for i, layer in enumerate(net.layers):
            out = layer(h)
            on_layer(i, h, out)
            h = out
    ledger.add_samples("infer", x.shape[0])
    return "multi-pass"


def train(cfg: RunConfig, *, out: Path | None = None, resume: bool = False, progress: bool = True,
          data: Dataset | None = None, stop_after: int | None = None, profile=None, device: str = "auto",
          simulate_anyway: bool = False, count_events: bool | None = None, on_epoch=None) -> dict:
    """Train (or resume) a run and return its metrics dict.

    ``profile``: a hardware profile (name, path or Profile): weights, activities and updates
    then follow the chip's formats and learning rule, the batch is capped at the chip's
    streaming limit, the model is checked against its memory before training, and the
    run's events are counted and turned into an energy/SRAM estimate. ``out``: run dir
    (config, checkpoint after every epoch, metrics). ``stop_after``: stop after this many
    epochs in total (simulates an interruption; used by tests). ``count_events``: count
    events (default: when a profile is given). ``on_epoch(record)`` is called after every
    epoch with that epoch's history record (benchmarks use it to save partial curves).
    """
    from ffneuro.hw.profiles import load_profile, profile_to_dict

    cfg = cfg.validate()
    if cfg.loop.algo in BASELINES:
        if profile is not None:
            raise ValueError(f"--algo {cfg.loop.algo} is a backprop baseline: it does not train under a profile")
        if resume:
            raise ValueError(f"--algo {cfg.loop.algo} is a backprop baseline: it cannot --resume (train it again)")
        return train_baseline(cfg, out=out, data=data, progress=progress)
    dev = resolve_device(device)
    prof = load_profile(profile) if isinstance(profile, (str, Path)) else profile
    chip = chip_spec(prof)
    torch.manual_seed(cfg.loop.seed)
    data = data if data is not None else load_dataset(cfg.data.name, val_fraction=cfg.data.val_fraction, seed=cfg.loop.seed)
    gen = torch.Generator().manual_seed(cfg.loop.seed)
    net = build_network(cfg, data, gen, chip)
    history_steps = learning_history_steps(cfg.flat())
    budget = check_budget(prof, net.layer_sizes, simulate_anyway, history_steps) if prof is not None else None
    bs = min(cfg.loop.batch_size, prof.streaming.max_batch) if prof is not None else cfg.loop.batch_size
    count_events = (prof is not None) if count_events is None else count_events
    ledger = EventLedger() if count_events else None
    state = TrainState()
    resumed = False
    if out is not None:
        out = Path(out)
        if resume and (out / runio.CHECKPOINT).exists():
            tensors, meta = runio.load_checkpoint(out / runio.CHECKPOINT)
            state = restore(net, gen, tensors, meta)
            if ledger is not None and meta.get("events"):
                ledger = EventLedger.from_dict(meta["events"])
            resumed = True
        runio.write_json(out / runio.CONFIG, {
            "ffneuro_version": __version__, "config": cfg.to_dict(), "dataset": data.name,
            "source": data.source, "num_classes": data.num_classes, "layer_sizes": net.layer_sizes,
            "n_train": int(data.x_train.shape[0]),
            "label_encoding": net.encoding.mode, "label_scale": net.label_scale, "batch_size_applied": bs,
            "profile_name": prof.name if prof is not None else None,
            "profile": profile_to_dict(prof) if prof is not None else None})
    net.to(dev)
    x_train, y_train = net.prepare_input(data.x_train.to(dev)), data.y_train.to(dev)
    x_test, y_test = net.prepare_input(data.x_test.to(dev)), data.y_test.to(dev)
    inference_layers = default_inference_layers(cfg)
    jitter = batch_transform(cfg.data.augment_shift, data, fill=net.prepare_input(torch.zeros(1, 1, device=dev)).item())
    n = x_train.shape[0]
    total = total_epochs(cfg)
    last_eval: dict = {}
    if chip is not None and not resumed:
        calib = torch.randperm(n, generator=gen)[: max(bs, 256)]
        calibrate(net, x_train[calib], y_train[calib])
    probe = None
    if cfg.loop.entropy_probe:                       # a fixed held-out probe for the entropy log
        idx = probe_indices(x_test.shape[0], cfg.loop.entropy_probe, cfg.loop.seed)
        y_p = y_test[idx]
        probe = (x_test[idx], y_p, random_wrong_labels(y_p, net.num_classes, torch.Generator().manual_seed(cfg.loop.seed)))

    for s_idx, active in enumerate(stages(cfg)):
        for e in range(cfg.loop.epochs):
            epoch = s_idx * cfg.loop.epochs + e
            if epoch < state.epoch:
                continue                           # already done (resume)
            if stop_after is not None and epoch >= stop_after:
                break
            net.train()
            set_epoch_lr(net, cfg, e)
            perm = torch.randperm(n, generator=gen).to(dev)
            sums, count = None, 0
            t0 = time.perf_counter()
            bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{total}", disable=not progress,
                       leave=False, unit="batch", mininterval=0.5)
            for start in bar:
                idx = perm[start:start + bs]
                st = train_step(net, cfg, jitter(x_train[idx], gen), y_train[idx], active, gen, ledger, bs)
                if ledger is not None:
                    ledger.add_samples("train", idx.shape[0])
                sums = st["loss"] if sums is None else [a + b for a, b in zip(sums, st["loss"])]
                count += 1
                if count % 20 == 0:
                    bar.set_postfix({f"L{active[0] + i + 1}": f"{v / count:.3f}" for i, v in enumerate(sums)})
            state.train_s += time.perf_counter() - t0
            state.epoch = epoch + 1
            record = {"epoch": state.epoch, "train_s": round(state.train_s, 3),
                      "loss": {f"layer{active[0] + i + 1}": v / max(count, 1) for i, v in enumerate(sums or [])}}
            if probe is not None:
                net.eval()
                seen = probe_goodness(net, *probe)
                record["entropy"] = entropy_record(seen.g_pos, seen.g_neg)
                record["silent_units"] = seen.silent
            is_last = state.epoch == total
            if is_last or (cfg.loop.eval_every and state.epoch % cfg.loop.eval_every == 0):
                net.eval()
                last_eval = evaluate(net, x_test, y_test, inference_layers)
                record.update(last_eval)
                if data.x_val is not None:
                    record["val_error"] = evaluate(net, net.prepare_input(data.x_val.to(dev)), data.y_val.to(dev),
                                                   inference_layers)["test_error"]
            state.history.append(record)
            log.info("epoch %d: %s", state.epoch, record)
            if on_epoch is not None:
                on_epoch(record)
            if out is not None:
                tensors, scalars = checkpoint_tensors(net, gen)
                runio.save_checkpoint(out / runio.CHECKPOINT, tensors, {
                    "optimizers": scalars,
                    "events": ledger.to_dict() if ledger is not None else None,
                    "state": {"epoch": state.epoch, "train_s": state.train_s, "history": state.history}})

    net.eval()
    if not last_eval or "test_error" not in state.history[-1]:
        last_eval = evaluate(net, x_test, y_test, inference_layers)
    metrics = {
        **last_eval,
        "inference_layers": [i + 1 for i in inference_layers],
        "epochs": state.epoch,
        "wall_s": round(state.train_s, 3),
        "dataset": data.name,
        "n_train": int(n),
        "n_test": int(x_test.shape[0]),
        "batch_size_applied": bs,
        "profile": prof.name if prof is not None else None,
        "history": state.history,
    }
    if ledger is not None:
        metrics["inference_events_mode"] = count_inference(net, x_test[:INFER_EVENT_SAMPLES], ledger)
    if prof is not None and ledger is not None:
        from ffneuro.hw.estimate import estimate, optimizer_slots

        metrics["estimate"] = estimate(
            prof, layer_sizes=net.layer_sizes,
            events={"train": ledger.per_sample("train"), "infer": ledger.per_sample("infer")},
            num_classes=net.num_classes, source="measured", optimizer_slots=optimizer_slots(prof), n_train=n,
            learning_history_steps=history_steps)
    if budget is not None:
        metrics["sram_fits"] = budget["fits"]
    if out is not None:
        if ledger is not None:
            runio.write_json(out / "events.json", ledger.to_dict())
        if "estimate" in metrics:
            runio.write_json(out / "estimate.json", metrics["estimate"])
        runio.write_json(out / runio.METRICS, metrics)
    return metrics


def load_run(run_dir: Path, profile: str | None = None) -> tuple[RunConfig, dict, FFNetwork]:
    """Rebuild a trained network from a run dir (config.json + checkpoint), no pickle.

    ``profile``: rebuild under this profile instead of the run's own. Its units are then
    *not* calibrated (their trained weights are the run's, off any grid): call
    ``calibrate`` on data to quantise them (post-training quantisation).
    """
    from ffneuro.hw.profiles import load_profile

    saved = runio.read_json(Path(run_dir) / runio.CONFIG)
    cfg = RunConfig.from_dict(saved["config"])
    if cfg.loop.algo in BASELINES:
        raise ValueError(f"{run_dir}: a backprop baseline ({cfg.loop.algo}); its errors are in metrics.json "
                         "(`ffneuro compare` reads them)")
    tensors, meta = runio.load_checkpoint(Path(run_dir) / runio.CHECKPOINT)
    own = saved.get("profile_name")
    name = own if profile is None else profile
    prof = load_profile(name) if name else None
    net = FFNetwork(cfg, saved["layer_sizes"][0] - (saved["num_classes"] if saved["label_encoding"] == "concat" else 0),
                    saved["num_classes"], saved["label_encoding"], 0.0, 1.0,
                    generator=torch.Generator().manual_seed(0), chip=chip_spec(prof),
                    label_scale=saved["label_scale"])
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if own and name != own:
        # The run was trained under another profile: keep its real-valued weights, drop its
        # number formats.
        state = {k: v for k, v in state.items() if not k.endswith(("w_step", "x_step", "x_signed"))}
    net.load_state_dict(state, strict=not (own and name != own))
    net.eval()
    return cfg, saved, net


def multipass_scores(table: torch.Tensor, layers: list[int]) -> torch.Tensor:
    """Multi-pass scores (N, C): the goodness of ``layers`` (0-based) added one by one in
    order (the golden replay does the same, so chip scores match bit for bit)."""
    score = table[:, :, layers[0]].clone()
    for i in layers[1:]:
        score += table[:, :, i]
    return score


def evaluate_run(run_dir: Path, data: str | None = None) -> dict:
    """`ffneuro eval`: errors of a trained run on its test set (or on ``data``'s)."""
    cfg, saved, net = load_run(run_dir)
    ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed)
    expected = saved["layer_sizes"][0]
    if net.encoding.input_features(ds.x_test.shape[1]) != expected:
        raise ValueError(f"{data or cfg.data.name}: {ds.x_test.shape[1]} features per sample, "
                         f"but the run was trained on inputs of {expected} (with labels)")
    x = net.prepare_input(ds.x_test)
    out = evaluate(net, x, ds.y_test, default_inference_layers(cfg))
    return {**out, "dataset": ds.name, "n_test": int(x.shape[0]), "run_dir": str(run_dir),
            "inference_layers": [i + 1 for i in default_inference_layers(cfg)],
            "profile": saved.get("profile_name")}
