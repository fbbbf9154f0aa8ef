"""Peak memory of training vs depth: streaming FF against a backprop MLP of the same shape.

Each (method, depth) runs in a fresh subprocess so its peak resident set size (ru_maxrss)
is its own, with glibc told to return freed blocks at once so RSS follows live memory. We report peak RSS minus the RSS measured after one warm-up step with no gradient
held (process, torch, data batch, weights and optimiser state already allocated), i.e.
the *working memory of training* (activations kept for backward, gradients, temporaries),
plus the weight bytes for reference.

    python scripts/bench_memory.py --out bench/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(method: str, depth: int, width: int, batch: int, steps: int) -> dict:
    from ffneuro.config import RunConfig
    from ffneuro.data.loaders import Dataset
    from ffneuro.train.loop import build_network
    from ffneuro.rng import Streams
    from ffneuro.train.step import train_step

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 784, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    if method == "backprop":
        sizes = [784] + [width] * depth
        mods = []
        for a, b in zip(sizes, sizes[1:]):
            mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*mods, torch.nn.Linear(width, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        weights = sum(p.numel() for p in model.parameters())
    else:
        head = method == "ff+head"
        cfg = RunConfig.from_flat(layers=(width,) * depth, head=head, batch_size=batch)
        ds = Dataset("synthetic", x, y, x, y, 10, (784,))
        streams = Streams(0, depth)
        net = build_network(cfg, ds, streams)

        def step():
            train_step(net, cfg, x, y, list(range(depth)), streams)
        weights = sum(p.numel() for layer in net.layers for p in layer.parameters())
    step()                       # allocate the optimisers' state once
    if method == "backprop":
        opt.zero_grad(set_to_none=True)   # FF frees each unit's gradient after its update
    base = rss_kib()
    for _ in range(steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "depth": depth, "width": width, "batch": batch,
            "weight_bytes": weights * 4, "training_peak_over_base_bytes": max(0, peak - base) * 1024,
            "peak_rss_bytes": peak * 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="2,4,8,16")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="bench/memory.json")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "DEPTH"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.width, args.batch, args.steps)))
        return
    # Large blocks straight from mmap and back on free, so RSS follows live memory (glibc
    # otherwise keeps freed blocks and raises its mmap threshold, hiding the real peak).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    rows = []
    for depth in [int(d) for d in args.depths.split(",")]:
        for method in ("ff", "ff+head", "backprop"):
            out = subprocess.run([sys.executable, __file__, "--child", method, str(depth), "--width",
                                  str(args.width), "--batch", str(args.batch), "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{method:<9} depth {depth:>2}: weights {r['weight_bytes'] / 2**20:7.1f} MiB, training working "
                  f"memory {r['training_peak_over_base_bytes'] / 2**20:7.1f} MiB", flush=True)
    from ffneuro.runs.files import write_json
    write_json(Path(args.out), {"note": "training working memory = peak RSS - RSS before the timed steps",
                                "rows": rows})


if __name__ == "__main__":
    main()
