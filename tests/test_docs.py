"""The generated docs are up to date with what generates them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_results_doc_matches_the_committed_bench_files():
    """docs/results.md is generated from bench/*.json (scripts/results_doc.py); a new or
    changed bench file without the regenerated page fails here."""
    r = subprocess.run([sys.executable, "scripts/results_doc.py", "--check"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_conv_doc_parameter_table_matches_the_presets():
    """docs/conv.md's table of trainable parameters per preset is what the code builds."""
    import re

    import torch

    from ffneuro.config.run import preset
    from ffneuro.network import FFNetwork

    rows = [line for line in (REPO / "docs" / "conv.md").read_text().splitlines()
            if line.startswith(("| `ff-", "| `cwcomp"))]
    assert len(rows) == 6
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = cells[0].strip("`")
        net = FFNetwork.from_config(preset(name), (3, 32, 32), 10, "none", generators=torch.Generator().manual_seed(0))
        counts = net.trainable_parameters()
        units = [int(v.replace(",", "")) for v in re.findall(r"[\d,]+", cells[2])]
        assert units == [counts[f"unit{i + 1}"] for i in range(len(net.layers))], name
        assert int(cells[3].replace(",", "")) == counts["head"] and int(cells[4].replace(",", "")) == counts["total"]
