"""The architecture's rules, enforced: the import layering of the package (no module
imports one above it, no import cycles), no unit-kind test outside the units package,
named random streams in checkpoints, and the table of simulated chip learning rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ffneuro.cli import app
from ffneuro.config import RunConfig
from ffneuro.hw.chip import SIMULATED_RULES, ChipRuleError, chip_spec
from ffneuro.hw.profiles import load_profile, profile_dir
from ffneuro.runs import files as runio
from ffneuro.train.loop import train

PACKAGE = Path(__file__).resolve().parent.parent / "ffneuro"

# functional ← units ← network ← train/evaluate ← analysis/export/hw estimate ← api ← cli.
# Level 0 holds what needs nothing of the design: pure maths, config, profiles and the
# chip's numbers, event counting and the energy/SRAM arithmetic, data, the run-dir files.
LEVELS = [
    ("ffneuro", 0), ("ffneuro.config", 0), ("ffneuro.functional", 0), ("ffneuro.data", 0), ("ffneuro.rng", 0),
    ("ffneuro.runs.files", 0), ("ffneuro.hw.profiles", 0), ("ffneuro.hw.chip", 0), ("ffneuro.hw.events", 0),
    ("ffneuro.hw.mapping", 0), ("ffneuro.hw.energy", 0), ("ffneuro.hw.accelergy", 0), ("ffneuro.export.golden", 0),
    ("ffneuro.hw.neurobench", 0),  # ffneuro's figures under NeuroBench's names, from counts
    ("ffneuro.hw.neurobench_run", 4),  # the mirror NeuroBench's harness runs, and the count pass
    ("ffneuro.sweep", 0),        # drives training and estimates through functions api.py hands in
    ("ffneuro.units", 1),
    ("ffneuro.network", 2),
    ("ffneuro.train", 3), ("ffneuro.evaluate", 3), ("ffneuro.runs.load", 3),
    ("ffneuro.analysis", 4), ("ffneuro.export", 4), ("ffneuro.hw.estimate", 4),
    ("ffneuro.api", 5),
    ("ffneuro.cli", 6),
]


def level(module: str) -> int:
    """The level of the longest matching prefix."""
    best = max((p for p, _ in LEVELS if module == p or module.startswith(p + ".")), key=len)
    return dict(LEVELS)[best]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """ffneuro modules a file imports anywhere (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ffneuro"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ffneuro")}
    return found


def test_no_module_imports_a_layer_above_it():
    mods = modules()
    bad = [f"{m} (level {level(m)}) imports {dep} (level {level(dep)})"
           for m, path in mods.items() for dep in imports(path, set(mods)) if level(dep) > level(m)]
    assert bad == []


def test_no_import_cycles():
    mods = modules()
    graph = {m: {d for d in imports(p, set(mods)) if d in mods and d != m and not m.startswith(d + ".")}
             for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_the_golden_replay_imports_nothing_of_ffneuro():
    mods = modules()
    assert imports(mods["ffneuro.export.golden"], set(mods)) == set()


def test_no_unit_kind_test_outside_the_units_package():
    pattern = re.compile(r"\.spiking\b|neuron\s*==|\.neuron\s*!=|isinstance\([^)]*FF(Dense|Spiking)")
    hits = [f"{path.relative_to(PACKAGE.parent)}:{i}" for name, path in modules().items()
            if not name.startswith(("ffneuro.units", "ffneuro.config"))
            for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


# -- named random streams ------------------------------------------------------------------
def test_checkpoint_holds_every_named_stream_and_an_old_layout_is_refused_in_one_line(tmp_path, digits):
    cfg = RunConfig.from_flat(layers=(16, 8), epochs=2, batch_size=64, entropy_probe=0)
    out = tmp_path / "run"
    train(cfg, data=digits, out=out, progress=False, stop_after=1)
    tensors, meta = runio.load_checkpoint(out / runio.CHECKPOINT)
    names = {k[4:] for k in tensors if k.startswith("rng.")}
    assert names == {"order", "augment", "negatives", "encoder", "calibration", "unit0", "unit1"}
    assert meta["layout"] == 2
    # a checkpoint of the one-stream layout: resuming it would silently give another run
    old = {k: v for k, v in tensors.items() if not k.startswith("rng.")} | {"rng.train": tensors["rng.order"]}
    runio.save_checkpoint(out / runio.CHECKPOINT, old, {k: v for k, v in meta.items() if k != "layout"})
    before = (out / runio.CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match="older ffneuro layout"):
        train(cfg, data=digits, out=out, resume=True, progress=False)
    assert (out / runio.CHECKPOINT).read_bytes() == before          # nothing overwritten
    r = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--no-progress"])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "Traceback" not in r.output


def test_streams_are_independent_of_each_other(digits):
    """Hard negatives draw from their own stream: switching them does not change the data
    order or the initial weights."""
    from ffneuro.rng import Streams

    a, b = Streams(3, 2), Streams(3, 2)
    torch.randint(0, 9, (1000,), generator=a["negatives"])           # a run that drew more negatives
    assert torch.equal(torch.randperm(50, generator=a["order"]), torch.randperm(50, generator=b["order"]))
    assert torch.equal(torch.randn(4, generator=a.unit(1)), torch.randn(4, generator=b.unit(1)))
    assert not torch.equal(torch.randn(4, generator=Streams(3, 2).unit(0)),
                           torch.randn(4, generator=Streams(3, 2).unit(1)))


# -- chip learning rules -------------------------------------------------------------------
def test_a_fixed_point_profile_with_an_unsimulated_rule_is_refused(tmp_path):
    text = (profile_dir() / "cmos-45nm.toml").read_text()
    text = re.sub(r'optimizer\s*=\s*\{ value = "sgd"', 'optimizer = { value = "sgd_momentum"', text)
    text = re.sub(r'optimizer_state\s*=\s*\{ value = false', 'optimizer_state = { value = true', text)
    path = tmp_path / "momentum-chip.toml"
    path.write_text(text)
    prof = load_profile(str(path))                                  # a valid profile ...
    with pytest.raises(ChipRuleError) as e:
        chip_spec(prof)                                             # ... whose rule is not simulated
    msg = str(e.value)
    assert str(path) in msg and "learning.optimizer" in msg and "sgd_momentum" in msg
    assert "simulated: " + ", ".join(SIMULATED_RULES) in msg and "\n" not in msg
    r = CliRunner().invoke(app, ["train", "--profile", str(path), "--epochs", "1", "--layers", "8", "--no-progress"])
    assert r.exit_code == 1 and r.output.startswith("error:") and "sgd_momentum" in r.output


def test_every_shipped_fixed_point_profile_uses_a_simulated_rule():
    from ffneuro.hw.profiles import list_profiles

    for name in list_profiles():
        prof = load_profile(name)
        spec = chip_spec(prof)
        assert spec is None or spec.rule in SIMULATED_RULES


def test_config_and_profiles_load_without_torch():
    """The config, the profiles, the chip's numbers and the SRAM mapping are plain data: a
    sweep driver or an estimate-only tool can read them without importing torch."""
    import subprocess
    import sys

    code = ("import sys, ffneuro.config, ffneuro.hw.profiles, ffneuro.hw.chip, ffneuro.hw.mapping; "
            "ffneuro.config.preset('hinton'); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
