"""The careless-user battery: every way of hurting ffneuro from the command line that we
know of, run as real processes on a scratch folder, with the outcome of each checked.

Each case states what must happen: refused (exit ≠ 0, the last line ``error: …``, no
traceback) or accepted (exit 0), plus its own check (a user's file unchanged, a stale
file gone, no NaN in metrics.json, …). Every case also checks that no traceback was
printed, that no file the case marked as the user's changed, and the process's peak
memory. Processes run under a 16 GiB address-space limit so that a runaway allocation
fails instead of taking the machine down.

Read-only and full file systems are real tmpfs mounts when the script may mount them
(root on Linux); otherwise those cases are reported as not run.

    python scripts/battery.py --out bench/battery.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffneuro.runs.files import write_json

SMALL = ["--layers", "32,32", "--epochs", "1", "--no-progress"]
ADDRESS_LIMIT_BYTES = 16 * 2**30


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str                                  # "refused" | "accepted" | "fails" (a report, exit 1)
    user_files: list[Path] = field(default_factory=list)
    check: object = None                         # callable(result) -> str | None (a failure reason)
    cwd: Path | None = None


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT_BYTES, ADDRESS_LIMIT_BYTES))


def ffneuro(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffneuro.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, preexec_fn=_limit_memory)


def digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    out[str(q)] = hashlib.sha256(q.read_bytes()).hexdigest()
        elif p.exists():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "absent"
    return out


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (None when this process may not mount)."""
    path.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                        capture_output=True).returncode == 0
    try:
        yield path if ok else None
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


def redact(text, root: Path) -> str:
    """Scratch paths as ``SCRATCH/…``: the JSON names no folder of this machine."""
    return str(text).replace(str(root), "SCRATCH")


def run_case(case: Case, root: Path) -> dict:
    before = digest(case.user_files)
    t0 = time.perf_counter()
    try:
        r = ffneuro(*case.argv, cwd=case.cwd, timeout=900)
        code, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        code, out, err = None, "", "timed out"
    wall_s = time.perf_counter() - t0
    problems = []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if "Traceback" in err or "Traceback" in out:
        problems.append("traceback")
    if code is None or code < 0:
        problems.append(f"killed ({'timeout' if code is None else f'signal {-code}'})")
    elif case.expect == "refused":
        if code == 0:
            problems.append("accepted, should be refused")
        elif not lines or not lines[-1].startswith("error: "):
            problems.append("no one-line error")
    elif case.expect == "fails":
        if code != 1:
            problems.append(f"exit {code}, should be 1")
    elif code != 0:
        problems.append(f"exit {code}: {lines[-1] if lines else ''}")
    changed = [p for p, h in digest(case.user_files).items() if before.get(p) != h]
    if changed:
        problems.append(f"user files changed: {changed}")
    if case.check is not None and not problems:
        reason = case.check(out, err)
        if reason:
            problems.append(reason)
    last = lines[-1] if lines else (out.strip().splitlines() or [""])[-1]
    return {"case": case.name, "argv": [redact(a, root) for a in case.argv], "expect": case.expect, "exit": code,
            "last_line": redact(last, root), "wall_s": round(wall_s, 2),
            "ok": not problems, "problems": problems, "traceback": "traceback" in problems,
            "user_files_changed": bool(changed)}


def make_cases(root: Path, run: Path, export: Path) -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    def user_folder(name: str, files=("notes.txt",)) -> tuple[Path, list[Path]]:
        d = root / name
        d.mkdir()
        paths = []
        for f in files:
            (d / f).write_text(f"the user's {f}")
            paths.append(d / f)
        return d, paths

    def npz(name: str, **arrays) -> Path:
        p = root / name
        np.savez(p, **arrays)
        return p

    rng = np.random.default_rng(0)
    x = rng.random((60, 12)).astype(np.float32)
    y = (np.arange(60) % 3).astype(np.int64)

    # -- nothing of the user's is overwritten -------------------------------------------------
    d, files = user_folder("mine", ("notes.txt", "config.json", "metrics.json"))
    add(Case("train --out a folder of the user's", ["train", *SMALL, "--out", d], "refused", files))
    d, files = user_folder("cwd")
    add(Case("train --out '' (the current folder)", ["train", *SMALL, "--out", ""], "refused", files, cwd=d))
    add(Case("train --out naming a file", ["train", *SMALL, "--out", files[0]], "refused", files))
    add(Case("train into an existing run without --resume", ["train", *SMALL, "--out", run], "refused", [run]))
    stale = root / "stale"
    shutil.copytree(run, stale)
    (stale / "estimate.json").write_text('{"energy": "of another run"}')
    add(Case("train --overwrite drops the old run's estimate.json", ["train", *SMALL, "--out", stale, "--overwrite"],
             "accepted", check=lambda o, e: "stale estimate.json kept" if (stale / "estimate.json").exists() else None))
    d, files = user_folder("not-a-run")
    add(Case("train --resume in a folder of the user's", ["train", "--out", d, "--resume", "--no-progress"],
             "refused", files))
    run_files = [run / "checkpoint.safetensors", run / "config.json", run / "metrics.json"]
    add(Case("export -o the run's own checkpoint (even with --force)",
             ["export", run, "-o", run / "checkpoint.safetensors", "--profile", "cmos-45nm", "--force"], "refused",
             run_files))
    d, files = user_folder("exports", ("model.h5",))
    add(Case("export -o an existing file", ["export", run, "-o", files[0], "--profile", "cmos-45nm"], "refused",
             files))
    add(Case("export -o a folder", ["export", run, "-o", d, "--profile", "cmos-45nm"], "refused", files))
    add(Case("export -o an existing file --force", ["export", run, "-o", root / "forced.h5", "--profile",
                                                     "cmos-45nm", "--vectors", "2", "--force"], "accepted"))
    d, files = user_folder("figures", ("fig1.png", "report.md"))
    add(Case("analyze --out a folder with files", ["analyze", run, "--out", d, "--probe", "50"], "refused", files))
    add(Case("spikes --out a folder with files", ["spikes", run, "--out", d], "refused", files))
    add(Case("estimate --plot an existing file", ["estimate", "--profile", "loihi-like", "--layers", "784,100",
                                                  "--plot", files[0]], "refused", files))
    add(Case("compare --out an existing file", ["compare", run, "--out", files[0]], "refused", files))

    # -- bounded resources -------------------------------------------------------------------
    y_stray = y.copy()
    y_stray[5] = 50000
    add(Case("npz with one stray label 50000", ["train", "--data", f"npz:{npz('stray.npz', x_train=x, y_train=y_stray, x_test=x, y_test=y)}", *SMALL], "refused"))
    add(Case("--layers 40000,40000", ["train", "--layers", "40000,40000", "--epochs", "1", "--no-progress"], "refused"))
    add(Case("--layers 100000,100000", ["train", "--layers", "100000,100000", "--epochs", "1", "--no-progress"],
             "refused"))
    add(Case("--layers 100000,100000 under loihi-like", ["train", "--layers", "100000,100000", "--profile",
                                                         "loihi-like", "--no-progress"], "refused"))

    # -- one line for every failure ----------------------------------------------------------
    add(Case("npz with zero features", ["train", "--data", f"npz:{npz('zero.npz', x_train=x[:, :0], y_train=y, x_test=x[:, :0], y_test=y)}", *SMALL], "refused"))
    bad_config = root / "bad-config"
    shutil.copytree(run, bad_config)
    saved = json.loads((bad_config / "config.json").read_text())
    saved["config"]["units"]["layers"] = [32, 40]
    (bad_config / "config.json").write_text(json.dumps(saved))
    add(Case("eval: config.json disagrees with the checkpoint", ["eval", bad_config], "refused"))
    add(Case("resume: config.json disagrees with the checkpoint", ["train", "--out", bad_config, "--resume",
                                                                   "--no-progress"], "refused"))
    x_big = x.copy()
    x_big[0, 0] = 1e30
    add(Case("chip profile, input 1e30", ["train", "--data", f"npz:{npz('big.npz', x_train=x, y_train=y, x_test=x_big, y_test=y)}", "--profile", "cmos-45nm", *SMALL], "refused"))
    xi = (x * 1e12).astype(np.int64)
    add(Case("chip profile, int64 input", ["train", "--data", f"npz:{npz('int64.npz', x_train=xi, y_train=y, x_test=xi, y_test=y)}", "--profile", "cmos-45nm", *SMALL], "refused"))
    add(Case("eval of a missing run dir", ["eval", root / "nowhere"], "refused"))
    add(Case("eval of a file", ["eval", files[0]], "refused", files))
    add(Case("--data npz:missing.npz", ["train", "--data", f"npz:{root / 'missing.npz'}", *SMALL], "refused"))
    add(Case("--data cifar10:/nonexistent", ["train", "--data", "cifar10:/nonexistent", *SMALL], "refused"))
    bad_profile = root / "bad.toml"
    bad_profile.write_text("name = 'x'\n[memory]\ncores = -3\n")
    add(Case("profiles validate a broken profile", ["profiles", "validate", bad_profile], "refused"))
    add(Case("--threads -1", ["train", *SMALL, "--threads", "-1"], "refused"))
    junk = root / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    add(Case("inspect random bytes", ["inspect", junk], "refused"))
    add(Case("verify random bytes", ["verify", junk], "refused"))
    add(Case("export -o under /proc", ["export", run, "-o", "/proc/ffneuro.h5", "--profile", "cmos-45nm"],
             "refused"))

    # -- silent corruption ---------------------------------------------------------------------
    corrupt = root / "corrupt"
    shutil.copytree(run, corrupt)
    data = bytearray((corrupt / "checkpoint.safetensors").read_bytes())
    data[-7] ^= 0x20
    (corrupt / "checkpoint.safetensors").write_bytes(bytes(data))
    add(Case("eval of a checkpoint with a flipped byte", ["eval", corrupt], "refused"))
    add(Case("export of a checkpoint with a flipped byte", ["export", corrupt, "-o", root / "c.h5", "--profile",
                                                            "cmos-45nm"], "refused"))
    add(Case("analyze of a checkpoint with a flipped byte", ["analyze", corrupt, "--probe", "50"], "refused"))
    add(Case("resume of a checkpoint with a flipped byte falls back", ["train", "--out", corrupt, "--resume",
                                                                       "--no-progress"], "accepted",
             check=lambda o, e: None if "resuming from checkpoint.prev" in e else "no fallback warning"))
    for opt in ("optim.lr=inf", "units.theta=nan", "data.label_scale=nan", "optim.lr=-1"):
        add(Case(f"--set {opt}", ["train", *SMALL, "--set", opt], "refused"))
    diverge = root / "diverge"
    add(Case("a run that diverges (optim.lr=1e30)", ["train", *SMALL, "--set", "optim.lr=1e30", "--set",
                                                     "optim.head_lr=1e30", "--out", diverge], "refused",
             check=lambda o, e: "metrics.json written" if (diverge / "metrics.json").exists() else None))
    no_vectors = root / "novec.h5"
    add(Case("verify an export with no test vectors", ["verify", no_vectors, "--vectors-only"], "fails"))
    add(Case("verify an export with an altered attribute", ["verify", root / "altered.h5", "--vectors-only"],
             "fails"))
    mixed = npz("mixed.npz", x_train=(x * 255).astype(np.uint8), y_train=y, x_test=x, y_test=y)
    add(Case("npz: uint8 train and float test", ["train", "--data", f"npz:{mixed}", *SMALL], "refused"))
    debris_run = root / "debris"
    shutil.copytree(run, debris_run)
    debris = debris_run / ".checkpoint.safetensors.a1b2c3.tmp"
    debris.write_bytes(b"\0" * 1000)
    add(Case("crash debris removed on the next start", ["train", "--out", debris_run, "--resume", "--no-progress"],
             "accepted", check=lambda o, e: "debris kept" if debris.exists() else None))
    return cases


def file_system_cases(root: Path, run: Path, stack: contextlib.ExitStack) -> list[Case]:
    cases = []
    ro = stack.enter_context(tmpfs(root / "ro", "ro,size=1m"))
    full = stack.enter_context(tmpfs(root / "full", "size=64k"))
    if ro is not None:
        cases.append(Case("train --out on a read-only file system", ["train", *SMALL, "--out", ro / "run"],
                          "refused"))
        cases.append(Case("export -o on a read-only file system", ["export", run, "-o", ro / "m.h5", "--profile",
                                                                   "cmos-45nm"], "refused"))
    if full is not None:
        cases.append(Case("train --out on a full disk", ["train", "--layers", "500,500", "--epochs", "1",
                                                         "--no-progress", "--out", full / "run"], "refused"))
        cases.append(Case("export -o on a full disk", ["export", run, "-o", full / "m.h5", "--profile", "cmos-45nm",
                                                       "--vectors", "64"], "refused"))
    return cases


def prepare(root: Path) -> tuple[Path, Path]:
    """A small trained run and exports of it (one without vectors, one with an attribute altered)."""
    import h5py

    run = root / "run"
    for args in (["train", "--layers", "32,32", "--epochs", "2", "--no-progress", "--out", run],
                 ["export", run, "-o", root / "model.h5", "--profile", "cmos-45nm", "--vectors", "4"],
                 ["export", run, "-o", root / "novec.h5", "--profile", "cmos-45nm", "--vectors", "0"],
                 ["export", run, "-o", root / "altered.h5", "--profile", "cmos-45nm", "--vectors", "4"]):
        r = ffneuro(*args)
        if r.returncode != 0 and "novec" not in str(args):
            raise SystemExit(f"battery set-up failed: ffneuro {' '.join(map(str, args))}: {r.stderr[-500:]}")
    with h5py.File(root / "altered.h5", "r+") as f:
        layer = f["layers"][sorted(f["layers"])[0]]
        key = next(k for k in layer.attrs if k.endswith("_scale") or k.endswith("gain"))
        layer.attrs[key] = layer.attrs[key] * 2
    return run, root / "model.h5"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/battery.json"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ffneuro-battery-"))
    results = []
    try:
        with contextlib.ExitStack() as stack:
            run, export = prepare(root)
            cases = make_cases(root, run, export) + file_system_cases(root, run, stack)
            for i, case in enumerate(cases, 1):
                res = run_case(case, root)
                results.append(res)
                print(f"[{i:2d}/{len(cases)}] {'ok  ' if res['ok'] else 'FAIL'} {case.name}: "
                      f"{res['last_line'][:110]}" + ("" if res["ok"] else f"  <- {res['problems']}"), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    summary = {
        "cases": len(results), "passed": sum(r["ok"] for r in results),
        "tracebacks": sum(r["traceback"] for r in results),
        "user_files_overwritten": sum(r["user_files_changed"] for r in results),
        "killed": sum(1 for r in results if r["exit"] is None or (r["exit"] or 0) < 0),
        "peak_child_rss_bytes": peak_rss_bytes(),
        "file_system_cases_run": any("file system" in r["case"] or "full disk" in r["case"] for r in results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"summary": summary, "results": results})
    print(json.dumps(summary))
    if summary["passed"] != summary["cases"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
