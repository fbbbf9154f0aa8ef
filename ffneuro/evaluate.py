"""Evaluation of a trained network: multi-pass (summed goodness per candidate label),
one-pass (the head), and the layer-collaboration view (each unit alone, cumulative)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ffneuro.network import FFNetwork, default_inference_layers


def multipass_scores(table: torch.Tensor, layers: list[int]) -> torch.Tensor:
    """Multi-pass scores (N, C): the goodness of ``layers`` (0-based) added one by one in
    order (the golden replay does the same, so chip scores match bit for bit)."""
    score = table[:, :, layers[0]].clone()
    for i in layers[1:]:
        score += table[:, :, i]
    return score


def early_exit(table: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Early-exit inference (seed 002 §II-B d; LightFF): exit depths (N,) and scores (N, C).

    The candidates are the cumulative groups {1}, {1, 2}, …, {1..L} of the layer-collaboration
    view: after unit k the score is the goodness of units 1..k added in order (as
    ``multipass_scores`` adds them, so a chip's scores stay bit-exact). A sample leaves at the
    first k whose leader s1 beats the runner-up s2 by at least ``threshold`` of the spread
    of its scores, ``s1 − s2 >= threshold · (s1 − s_min)`` with ``s1 > s_min`` (float64; the
    spread, not s1, because most of a label-coded pass's goodness does not depend on the
    label); the last unit always answers. Thresholds run from 0 (leave after unit 1) to 1
    (leave only when every other label ties for last).
    The depth is the number of units the sample ran (1..L); its prediction is the first
    argmax of the score it left with. Each decision reads only units 1..k, so running every
    unit and choosing afterwards gives what stopping would. The golden replay implements the
    same rule (``export.golden.early_exit``)."""
    n, c, n_layers = table.shape
    depth = torch.full((n,), n_layers, dtype=torch.long)
    score = torch.empty(n, c, dtype=table.dtype)
    open_ = torch.ones(n, dtype=torch.bool)
    cum = table[:, :, 0].clone()
    for k in range(n_layers):
        if k:
            cum += table[:, :, k]
        if k == n_layers - 1:
            leave = open_
        else:
            c64 = cum.to(torch.float64)
            top, low = c64.topk(2, dim=1).values, c64.min(dim=1).values
            spread = top[:, 0] - low
            leave = open_ & (spread > 0) & (top[:, 0] - top[:, 1] >= threshold * spread)
        depth[leave] = k + 1
        score[leave] = cum[leave]
        open_ &= ~leave
    return depth, score


def early_exit_summary(table: torch.Tensor, y: torch.Tensor, threshold: float) -> dict:
    """Error (%) of early-exit inference, the mean depth and the fraction of samples that
    left after each unit."""
    depth, score = early_exit(table, threshold)
    n_layers = table.shape[2]
    counts = torch.bincount(depth - 1, minlength=n_layers).tolist()
    return {"threshold": float(threshold),
            "error": float((score.argmax(dim=1) != y.to(depth.device)).float().mean() * 100),
            "mean_depth": float(depth.float().mean()),
            "exit_fraction": [k / depth.numel() for k in counts]}


def errors_from_goodness(table: torch.Tensor, y: torch.Tensor, layers: list[int]) -> float:
    """Error (%) of multi-pass inference summing the goodness of ``layers`` (0-based);
    ties go to the lowest label."""
    pred = multipass_scores(table, layers).argmax(dim=1)
    return float((pred != y.to(pred.device)).float().mean() * 100)


@torch.no_grad()
def evaluate(net: FFNetwork, x: torch.Tensor, y: torch.Tensor, inference_layers: list[int],
             exit_threshold: float | None = None) -> dict:
    """Test errors (%) for every inference mode plus the layer-collaboration analysis:
    each unit alone and cumulative groups {1}, {1,2}, … (SPEC §2, Fig. 2); with an
    ``exit_threshold``, early-exit inference too (``test_error["early_exit"]`` and the
    exit depths under ``early_exit``)."""
    table = net.goodness_table(x)
    n_layers = table.shape[2]
    out = {
        "test_error": {"multi_pass": errors_from_goodness(table, y, inference_layers)},
        "per_layer_error": [errors_from_goodness(table, y, [i]) for i in range(n_layers)],
        "cumulative_error": [errors_from_goodness(table, y, list(range(k + 1))) for k in range(n_layers)],
    }
    if exit_threshold is not None:
        out["early_exit"] = early_exit_summary(table, y, exit_threshold)
        out["test_error"]["early_exit"] = out["early_exit"]["error"]
    if net.head is not None:
        pred = net.head_logits(x).argmax(dim=1)
        out["test_error"]["one_pass"] = float((pred != y).float().mean() * 100)
    return out


def evaluate_run(run_dir: Path, data: str | None = None) -> dict:
    """`ffneuro eval`: errors of a trained run on its test set (or on ``data``'s)."""
    from ffneuro.data.loaders import load_dataset
    from ffneuro.runs.load import load_run

    cfg, saved, net = load_run(run_dir)
    ds = load_dataset(data or cfg.data.name, seed=cfg.loop.seed)
    expected = math.prod(net.data_shape)      # one data sample, before the label code
    if ds.x_test.shape[1] != expected:
        raise ValueError(f"{data or cfg.data.name}: {ds.x_test.shape[1]} features per sample, "
                         f"but the run was trained on samples of {expected}")
    x = net.prepare_input(ds.x_test)
    out = evaluate(net, x, ds.y_test, default_inference_layers(cfg), cfg.inference.exit_threshold)
    return {**out, "dataset": ds.name, "n_test": int(x.shape[0]), "run_dir": str(run_dir),
            "inference_layers": [i + 1 for i in default_inference_layers(cfg)],
            "profile": saved.get("profile_name")}
