"""Time-to-accuracy of the public reference, loeweX/Forward-Forward, on this machine's MNIST.

    python scripts/bench_loewex.py --repo PATH/TO/Forward-Forward --cpu 1 --epochs 45 \
        --log bench/loewex_1core.log --out bench/loewex_tta.json
    python scripts/bench_loewex.py --parse-only bench/loewex_1core.log --out bench/loewex_tta.json

loeweX's code needs torchvision only for its MNIST loader, and PyPI's torchvision does not
import beside this machine's CPU torch. So the run puts a small stand-in ``torchvision``
on PYTHONPATH (written to a temp dir) that reads the IDX files. Its training set is the
first 50,000 training images, as loeweX uses, followed by the 10,000 *test* images:
loeweX's "val" split is images 50,000–59,999, so with ``training.val_idx=1`` its
per-epoch validation is the test set. Nothing of loeweX's code is copied here; the script
runs a checkout of it unchanged (config: its defaults, ``device=cpu``, 100-epoch
schedule) and stops it after --epochs. ``--cpu N`` pins it (and its data workers) to one
core with one torch thread, as ffneuro's comparison run is pinned to the other.
The JSON lists, per epoch, the cumulative training time (loeweX's own train timer,
validation excluded) and the test error of its one-pass linear classifier.
(``bench/loewex_1core.log`` was made with an equivalent stand-in that read the same IDX
files with numpy instead of ffneuro's loader.)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ffneuro.runs.files import write_json

SHIM_INIT = "from . import datasets, transforms  # noqa: F401\n"
SHIM_TRANSFORMS = "class ToTensor:\n    def __call__(self, x):\n        return x\n"
SHIM_DATASETS = '''import os
import torch
from ffneuro.data.loaders import load_dataset

class MNIST(torch.utils.data.Dataset):
    """train=True: first 50,000 training images, then the 10,000 test images."""
    def __init__(self, root, train=True, download=False, transform=None):
        ds = load_dataset("mnist:" + os.environ["FFNEURO_MNIST_DIR"])
        if train:
            x, y = torch.cat([ds.x_train[:50000], ds.x_test]), torch.cat([ds.y_train[:50000], ds.y_test])
        else:
            x, y = ds.x_test, ds.y_test
        self.x, self.y = x.reshape(-1, 1, 28, 28), [int(v) for v in y]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].clone(), self.y[i]
'''

LINE = re.compile(r"Epoch (\d+) \t(train|val)\b.*?Time: (\d+):(\d+):([\d.]+)")


def parse_log(text: str) -> list[dict]:
    """Per epoch (1-based): cumulative train seconds and the test error % of the one-pass head."""
    rows, cum, train_at = [], 0.0, {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        epoch = int(m.group(1)) + 1
        secs = int(m.group(3)) * 3600 + int(m.group(4)) * 60 + float(m.group(5))
        if m.group(2) == "train":
            cum += secs
            train_at[epoch] = cum
        elif epoch in train_at:
            acc = float(re.search(r"classification_accuracy: ([\d.]+)", line).group(1))
            rows.append({"epoch": epoch, "train_s": round(train_at[epoch], 1), "test_error": round(100 * (1 - acc), 2)})
    return rows


def first_reach(rows: list[dict], thresholds=(3.3, 2.1, 2.0, 1.4)) -> dict:
    return {str(t): next(({"epoch": r["epoch"], "train_s": r["train_s"], "error": r["test_error"]}
                          for r in rows if r["test_error"] <= t), None) for t in thresholds}


def run(repo: Path, epochs: int, cpu: int | None, log: Path, mnist: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "torchvision"
        shim.mkdir()
        for name, text in (("__init__.py", SHIM_INIT), ("transforms.py", SHIM_TRANSFORMS),
                           ("datasets.py", SHIM_DATASETS)):
            (shim / name).write_text(text)
        env = dict(os.environ, PYTHONPATH=tmp,
                   FFNEURO_MNIST_DIR=str(Path(mnist).resolve()))
        cmd = [sys.executable, "-m", "main", "device=cpu", "training.val_idx=1", "training.epochs=100"]
        if cpu is not None:
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            cmd = ["taskset", "-c", str(cpu), *cmd]
        lines = []
        with subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as proc:
            for line in proc.stdout:
                lines.append(line)
                if re.match(rf"Epoch {epochs - 1} \tval", line):
                    proc.terminate()
                    break
    text = "".join(lines)
    log.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, help="a checkout of loeweX/Forward-Forward")
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", "../shared/data/mnist"))
    ap.add_argument("--epochs", type=int, default=45, help="stop after this many epochs (of its 100-epoch schedule)")
    ap.add_argument("--cpu", type=int, help="pin to this core with one thread")
    ap.add_argument("--log", type=Path, default=Path("bench/loewex.log"))
    ap.add_argument("--parse-only", type=Path, help="parse an existing log instead of running")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.parse_only:
        text = a.parse_only.read_text()
    elif a.repo:
        text = run(a.repo, a.epochs, a.cpu, a.log, a.mnist)
    else:
        ap.error("give --repo (run) or --parse-only LOG")
    rows = parse_log(text)
    write_json(a.out, {"reference": "loeweX/Forward-Forward (one-pass head, 50k training images, random negatives)",
                       "time_to": {"one_pass": first_reach(rows)}, "history": rows})
    print(first_reach(rows))


if __name__ == "__main__":
    main()
