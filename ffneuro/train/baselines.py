"""Backprop baselines in the same harness as FF, for honest comparison (SPEC §2, Table 1).

- ``bp``: the classic MLP with a C-way softmax output, trained end to end by backprop;
  for a stack with conv units, the same CNN (each conv unit's convolution, ReLU, max-pool
  and batch norm, then the dense units) with a C-way linear output.
- ``bp-pairwise``: the pos/neg discriminator — the same input encoding as FF (the label
  overlaid or concatenated), one logit out, trained by backprop with binary
  cross-entropy on positive (true label) and negative (random wrong label) pairs; it
  predicts the label whose pair scores highest, like FF's multi-pass inference.

Same hidden widths, data, optimiser, batch size, epochs and seed as the FF config; the run
dir has the same config.json and metrics.json keys (``test_error``, ``epochs``,
``wall_s``, ``history``) so ``ffneuro compare`` lines them up with FF runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ffneuro import __version__
from ffneuro.runs import files as runio
from ffneuro.data.augment import batch_transform
from ffneuro.config import RunConfig
from ffneuro.config.sections import UnitsConfig
from ffneuro.data.loaders import Dataset, load_dataset
from ffneuro.functional.encoding import LabelEncoding, choose_encoding, random_wrong_labels
from ffneuro.train.schedules import lr_factor
from ffneuro.network import sample_shape
from ffneuro.units.conv import BN_EPS
from ffneuro.units.optim import make_optimizer, set_lr
from ffneuro.units.stack import unit_shapes

BASELINES = ("bp", "bp-pairwise")


def cnn(units: UnitsConfig, in_shape: tuple[int, ...], out: int) -> nn.Sequential:
    """The network of a (conv, …, dense) stack as one backprop model: every unit's
    synapse and dynamics in the same order, and a linear C-way output."""
    plan = units.plan()
    shapes = unit_shapes(plan, in_shape)
    layers: list[nn.Module] = []
    for spec, shape_in, shape_out in zip(plan, shapes, shapes[1:]):
        if spec.kind == "conv":
            if units.batch_norm and units.batch_norm_at == "input":
                layers.append(nn.BatchNorm2d(shape_in[0], eps=BN_EPS))
            layers += [nn.Conv2d(shape_in[0], spec.size, spec.kernel, spec.stride, spec.padding, groups=spec.groups),
                       nn.ReLU()]
            if spec.pool > 1:
                layers.append(nn.MaxPool2d(spec.pool))
            if units.batch_norm and units.batch_norm_at == "output":
                layers.append(nn.BatchNorm2d(spec.size, eps=BN_EPS))
        else:
            if len(shape_in) > 1:
                layers.append(nn.Flatten())
            layers += [nn.Linear(math.prod(shape_in), spec.size), nn.ReLU()]
    if len(shapes[-1]) > 1:
        layers.append(nn.Flatten())
    return nn.Sequential(*layers, nn.Linear(math.prod(shapes[-1]), out))


def mlp(widths: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out))


@torch.no_grad()
def predict(model: nn.Module, cfg: RunConfig, enc: LabelEncoding | None, x: torch.Tensor,
            batch: int = 2000) -> torch.Tensor:
    preds = []
    for s in range(0, x.shape[0], batch):
        xb = x[s:s + batch]
        if enc is None:
            preds.append(model(xb).argmax(dim=1))
        else:
            scores = torch.stack([model(enc.encode(xb, torch.full((xb.shape[0],), c, dtype=torch.long))).squeeze(1)
                                  for c in range(enc.num_classes)], dim=1)
            preds.append(scores.argmax(dim=1))
    return torch.cat(preds)


def step_loss(model: nn.Module, enc: LabelEncoding | None, x: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    if enc is None:
        return F.cross_entropy(model(x), y)
    y_neg = random_wrong_labels(y, enc.num_classes, generator)
    logits = model(torch.cat([enc.encode(x, y), enc.encode(x, y_neg)])).squeeze(1)
    target = torch.cat([torch.ones(x.shape[0]), torch.zeros(x.shape[0])])
    return F.binary_cross_entropy_with_logits(logits, target)


def train_baseline(cfg: RunConfig, *, out: Path | None = None, data: Dataset | None = None,
                   progress: bool = True) -> dict:
    """Train a backprop baseline (``cfg.loop.algo`` in BASELINES) and return its metrics."""
    torch.manual_seed(cfg.loop.seed)
    data = data if data is not None else load_dataset(cfg.data.name, val_fraction=cfg.data.val_fraction, seed=cfg.loop.seed)
    gen = torch.Generator().manual_seed(cfg.loop.seed)
    c, d = data.num_classes, data.x_train.shape[1]
    enc = None
    images = cfg.units.plan()[0].kind == "conv"
    shape = sample_shape(data.feature_shape, images)
    if images and cfg.loop.algo == "bp-pairwise":
        raise ValueError("loop.algo = bp-pairwise needs a dense stack (its label is overlaid on flat inputs)")
    if images:
        model = cnn(cfg.units, shape, c)
    elif cfg.loop.algo == "bp-pairwise":
        mode = choose_encoding(cfg.data.label_encoding, data.x_train, c)
        scale = cfg.data.label_scale if cfg.data.label_scale is not None else float(data.x_train.max())
        enc = LabelEncoding(mode, c, scale)
        model = mlp([enc.input_features(d), *cfg.units.layers], 1)
    else:
        model = mlp([d, *cfg.units.layers], c)
    opt = make_optimizer(model.parameters(), cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay)
    x, y = data.x_train.reshape(-1, *shape), data.y_train
    x_test = data.x_test.reshape(-1, *shape)
    if cfg.data.standardize:
        mean, std = float(data.x_train.mean()), float(data.x_train.std())
        x, x_test = (x - mean) / std, (x_test - mean) / std
    jitter = batch_transform(cfg.data.augment_shift, data)
    history, train_s = [], 0.0
    for epoch in range(cfg.loop.epochs):
        set_lr(opt, cfg.optim.lr * lr_factor(epoch, cfg.loop.epochs, cfg.optim.lr_schedule, cfg.optim.milestones, cfg.optim.lr_gamma))
        perm = torch.randperm(x.shape[0], generator=gen)
        t0, total, count = time.perf_counter(), 0.0, 0
        model.train()
        for s in tqdm(range(0, x.shape[0], cfg.loop.batch_size), desc=f"epoch {epoch + 1}/{cfg.loop.epochs}",
                      disable=not progress, leave=False, unit="batch", mininterval=0.5):
            idx = perm[s:s + cfg.loop.batch_size]
            loss = step_loss(model, enc, jitter(x[idx], gen), y[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()), count + 1
        train_s += time.perf_counter() - t0
        record = {"epoch": epoch + 1, "train_s": round(train_s, 3), "loss": {"network": total / max(count, 1)}}
        if epoch + 1 == cfg.loop.epochs or (cfg.loop.eval_every and (epoch + 1) % cfg.loop.eval_every == 0):
            model.eval()
            err = float((predict(model, cfg, enc, x_test) != data.y_test).float().mean() * 100)
            record["test_error"] = {cfg.loop.algo: err}
        history.append(record)
    metrics = {"test_error": history[-1]["test_error"], "epochs": cfg.loop.epochs, "wall_s": round(train_s, 3),
               "parameters": sum(p.numel() for p in model.parameters()),
               "dataset": data.name, "n_train": int(x.shape[0]), "n_test": int(data.x_test.shape[0]),
               "profile": None, "history": history}
    if out is not None:
        out = Path(out)
        runio.write_json(out / runio.CONFIG, {
            "ffneuro_version": __version__, "config": cfg.to_dict(), "dataset": data.name, "source": data.source,
            "num_classes": c, "layer_sizes": [d, *(math.prod(s) for s in unit_shapes(cfg.units.plan(), shape)[1:])],
            "feature_shape": list(data.feature_shape), "n_train": int(x.shape[0]), "profile_name": None,
            "parameters": {"total": sum(p.numel() for p in model.parameters())}})
        runio.save_checkpoint(out / runio.CHECKPOINT, {f"model.{k}": v for k, v in model.state_dict().items()},
                              {"state": {"epoch": cfg.loop.epochs, "train_s": train_s, "history": history}})
        runio.write_json(out / runio.METRICS, metrics)
    return metrics
