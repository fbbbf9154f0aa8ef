"""The same measurements on an earlier commit and on the working tree, in one run: did a
refactor keep the metrics and the speed?

    python scripts/bench_before_after.py --before f70ece3 --out bench/architecture.json

The "after" side is this working tree (its commit, marked ``+uncommitted`` if ffneuro/
or scripts/ differ from it). For each tree: the float default ``ffneuro train`` on the digits for --seeds seeds (the
spread is the seed noise a changed random layout must stay within), the headline
``ffneuro train --profile loihi-like``, and ``scripts/bench_throughput.py`` (FF/backprop
epoch ratio and chip-step/float-step ratio on MNIST). Both trees are driven through their
command lines only (``python -m ffneuro.cli``), one process at a time with one thread, so
the comparison does not depend on either tree's library API. The earlier commit is
checked out into a temporary git worktree, which is removed afterwards. Partial results
are written after every step (rerunning with the same --out resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(tree: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "ffneuro.cli", "train", *args, "--json", "--no-progress"],
                       cwd=tree, env=env, capture_output=True, text=True, check=True)
    m = json.loads(r.stdout)
    row = {"test_error": m["test_error"], "per_layer_error": m.get("per_layer_error"), "wall_s": m.get("wall_s")}
    if "estimate" in m:
        row["inference_energy_pj_per_sample"] = m["estimate"]["inference"]["energy_pj_per_sample"]
        row["training_energy_pj_per_sample"] = m["estimate"]["training"]["energy_pj_per_sample"]
        row["cores_used"] = m["estimate"]["cores_used"]
    return row


def throughput(tree: Path, mnist: str, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        subprocess.run([sys.executable, "scripts/bench_throughput.py", "--mnist", mnist, "--out", str(out),
                        "--repeats", str(repeats)],
                       cwd=tree, env=env, capture_output=True, text=True, check=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the earlier commit")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="throughput: best of this many timings")
    ap.add_argument("--mnist", default=os.environ.get("FFNEURO_MNIST_DIR", str(REPO.parent / "shared/data/mnist")))
    ap.add_argument("--out", default="bench/architecture.json")
    args = ap.parse_args()
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    after = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "ffneuro", "scripts"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
    result.update({"before_commit": commit, "after_commit": after + ("+uncommitted" if dirty else ""),
                   "throughput_repeats": args.repeats})

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out_path)

    with tempfile.TemporaryDirectory() as wt:
        before_tree = Path(wt) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), commit], cwd=REPO,
                       capture_output=True, check=True)
        try:
            trees = {"before": before_tree, "after": REPO}
            steps = [(f"float_default.seed{s}", lambda t, s=s: cli(t, "--seed", str(s))) for s in range(args.seeds)]
            steps += [("loihi_like", lambda t: cli(t, "--profile", "loihi-like")),
                      ("throughput", lambda t: throughput(t, args.mnist, args.repeats))]
            for key, fn in steps:
                for side, tree in trees.items():
                    slot = result.setdefault(side, {})
                    if key in slot:
                        continue                    # resumed
                    slot[key] = fn(tree)
                    print(side, key, slot[key].get("test_error", slot[key].get("epoch")), flush=True)
                    save()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=REPO, capture_output=True)
    save()


if __name__ == "__main__":
    main()
