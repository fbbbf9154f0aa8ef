"""Evaluation of a trained network: multi-pass (summed goodness per candidate label),
one-pass (the head), and the layer-collaboration view (each unit alone, cumulative)."""

from __future__ import annotations

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


def errors_from_goodness(table: torch.Tensor, y: torch.Tensor, layers: list[int]) -> float:
    """Error (%) of multi-pass inference summing the goodness of ``layers`` (0-based);
    ties go to the lowest label."""
    pred = multipass_scores(table, layers).argmax(dim=1)
    return float((pred != y.to(pred.device)).float().mean() * 100)


@torch.no_grad()
def evaluate(net: FFNetwork, x: torch.Tensor, y: torch.Tensor, inference_layers: list[int]) -> dict:
    """Test errors (%) for every inference mode plus the layer-collaboration analysis:
    each unit alone and cumulative groups {1}, {1,2}, … (SPEC §2, Fig. 2)."""
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


def evaluate_run(run_dir: Path, data: str | None = None) -> dict:
    """`ffneuro eval`: errors of a trained run on its test set (or on ``data``'s)."""
    from ffneuro.data.loaders import load_dataset
    from ffneuro.runs.load import load_run

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
