"""Rebuilding a trained network from its run dir (config.json + checkpoint), no pickle."""

from __future__ import annotations

from pathlib import Path

import torch

from ffneuro.config import RunConfig
from ffneuro.hw.chip import run_chip_spec
from ffneuro.network import FFNetwork
from ffneuro.runs import files as runio
from ffneuro.units.synapse import migrate_state

BASELINES = ("bp", "bp-pairwise")


def saved_config(run_dir: Path) -> tuple[RunConfig, dict]:
    """The run's config (older flat config.json files included) and the whole config.json."""
    if not Path(run_dir).is_dir():
        raise runio.RunDirError(f"{run_dir}: run dir not found" if not Path(run_dir).exists()
                                else f"{run_dir}: is a file, not a run dir")
    saved = runio.read_json(Path(run_dir) / runio.CONFIG)
    try:
        return RunConfig.from_dict(saved["config"], source=str(Path(run_dir) / runio.CONFIG)), saved
    except KeyError:
        raise runio.RunDirError(f"{Path(run_dir) / runio.CONFIG}: no 'config' entry (not an ffneuro run dir)") from None


def load_run(run_dir: Path, profile: str | None = None) -> tuple[RunConfig, dict, FFNetwork]:
    """(config, config.json, network) of a trained run.

    ``profile``: rebuild under this profile instead of the run's own. Its units are then
    *not* calibrated (their trained weights are the run's, off any grid): call
    ``net.calibrate`` on data to quantise them (post-training quantisation).
    """
    from ffneuro.hw.profiles import load_profile

    cfg, saved = saved_config(run_dir)
    if cfg.loop.algo in BASELINES:
        raise ValueError(f"{run_dir}: a backprop baseline ({cfg.loop.algo}); its errors are in metrics.json "
                         "(`ffneuro compare` reads them)")
    tensors, meta = runio.load_checkpoint(Path(run_dir) / runio.CHECKPOINT)
    own = saved.get("profile_name")
    name = own if profile is None else profile
    prof = load_profile(name) if name else None
    n_units = cfg.units.n_units
    data_features = (tuple(saved["feature_shape"]) if "feature_shape" in saved else
                     saved["layer_sizes"][0] - (saved["num_classes"] if saved["label_encoding"] == "concat" else 0))
    net = FFNetwork.from_config(cfg, data_features, saved["num_classes"], saved["label_encoding"],
                                generators=[torch.Generator().manual_seed(0) for _ in range(n_units)],
                                chip=run_chip_spec(prof, cfg.hardware.batch_rule,
                                                   cfg.hardware.shadow_bits if name == own else 0),
                                label_scale=saved["label_scale"])
    state = migrate_state({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if own and name != own:
        # The run was trained under another profile: keep its real-valued weights, drop its
        # number formats.
        state = {k: v for k, v in state.items() if not k.endswith(("w_step", "x_step", "x_signed"))}
    try:
        net.load_state_dict(state, strict=not (own and name != own))
    except RuntimeError as e:
        raise runio.RunDirError(f"{run_dir}: the checkpoint does not match its config.json "
                                f"({str(e).splitlines()[0]})") from None
    net.eval()
    return cfg, saved, net
