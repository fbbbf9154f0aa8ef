"""Studies in-process: failed trials recorded with their one line, pruning, interrupted
trials retried into their own run dir, the estimate grid, show's files and the re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffneuro import api
from ffneuro.cli import app
from ffneuro.runs import files as runio
from ffneuro.sweep import study as sw
from ffneuro.sweep.space import load_space

runner = CliRunner()


def fake_trainer(script: dict):
    """A trainer that reads its behaviour off the trial number in the run dir's name:
    ``script[n]`` is a list of per-epoch validation errors, or an exception to raise."""
    calls = []

    def train_fn(cfg, run_dir, *, resume, on_epoch):
        n = int(Path(run_dir).name.split("-")[1])
        calls.append((n, resume))
        what = script[n]
        if isinstance(what, BaseException):
            raise what
        runio.prepare_run_dir(Path(run_dir), resume=resume)
        for epoch, err in enumerate(what, 1):
            if on_epoch is not None:
                on_epoch({"epoch": epoch, "val_error": {"one_pass": err}})
        return {"val_error": {"one_pass": what[-1]}, "test_error": {"one_pass": what[-1] + 1}, "epochs": len(what),
                "wall_s": what[-1] / 10}

    train_fn.calls = calls
    return train_fn


def run_fake(space_path, tmp_path, script, storage=None):
    storage = storage or str(tmp_path / "s.db")
    job = sw.WorkerJob(space_path=str(space_path), storage=storage, out=str(tmp_path / "out"),
                       train_fn=fake_trainer(script))
    rows = []
    sw.work(job, rows.append)
    return job, rows


@pytest.mark.parametrize("storage", ["s.db", "s.journal"])
def test_a_failing_trial_is_recorded_with_its_one_line_and_the_study_goes_on(tmp_path, space_file, storage):
    path = space_file(trials=3, study_extra='pruner = "none"')
    _, rows = run_fake(path, tmp_path, {0: [20.0], 1: ValueError("data.name: bad input\nsecond line"),
                                        2: RuntimeError("boom")}, storage=str(tmp_path / storage))
    assert [r["state"] for r in rows] == ["complete", "fail", "fail"]
    assert rows[1]["error"] == "data.name: bad input"
    assert rows[2]["error"] == "RuntimeError: boom"
    assert rows[0]["val_error"] == 20.0 and "error" not in rows[0]


def test_pruning_stops_a_trial_whose_validation_error_lags(tmp_path, space_file):
    path = space_file(trials=3, study_extra="pruner_startup_trials = 1\npruner_warmup_epochs = 1")
    _, rows = run_fake(path, tmp_path, {0: [30.0, 20.0, 10.0], 1: [30.0, 50.0, 5.0], 2: [25.0, 15.0, 8.0]})
    assert [r["state"] for r in rows] == ["complete", "pruned", "complete"]
    assert rows[1]["pruned_at_epoch"] == 2                  # epoch 1 is warm-up; 50 % > the median 20 %
    summary = api.sweep_show("tiny", storage=str(tmp_path / "s.db"))
    assert [r["trial"] for r in summary["best"]] == [2]
    assert summary["best"][0]["test_error_of_chosen"] == {"one_pass": 9.0}


def test_a_multi_objective_study_does_not_prune_and_rerun_asks_which_trial(tmp_path, space_file):
    path = space_file(trials=2, study_extra='objectives = ["val_error", "train_s"]\n'
                                            'directions = ["minimize", "maximize"]\npruner_startup_trials = 0')
    _, rows = run_fake(path, tmp_path, {0: [10.0, 10.0], 1: [90.0, 90.0]})
    assert [r["state"] for r in rows] == ["complete", "complete"]
    s = api.sweep_show("tiny", storage=str(tmp_path / "s.db"), out=tmp_path / "rep")
    assert [r["trial"] for r in s["best"]] == [0, 1]                # 0 has the lower error, 1 the longer train_s
    assert (tmp_path / "rep" / "pareto_val_error_vs_train_s.png").is_file()
    with pytest.raises(ValueError, match="Pareto front of trials 0, 1: pick one with --trial N"):
        api.sweep_rerun("tiny", storage=str(tmp_path / "s.db"), out=tmp_path / "best")


def test_an_interrupted_trial_is_retried_in_its_run_dir(tmp_path, space_file):
    path = space_file(trials=2, study_extra='pruner = "none"')
    job = sw.WorkerJob(space_path=str(path), storage=str(tmp_path / "s.db"), out=str(tmp_path / "out"),
                       train_fn=fake_trainer({0: [10.0], 1: KeyboardInterrupt()}))
    with pytest.raises(KeyboardInterrupt):
        sw.work(job)
    space = load_space(path)
    study = sw.open_study(space, sw.open_storage(job.storage), "train")
    assert sw.retry_interrupted(study) == [1]
    assert sw.retry_interrupted(study) == []                    # queued once
    (tmp_path / "out" / "trial-0001").mkdir(exist_ok=True)
    runio.prepare_run_dir(tmp_path / "out" / "trial-0001")     # as the interrupted run left it
    trainer = fake_trainer({0: [10.0], 1: [12.0]})
    sw.work(sw.WorkerJob(job.space_path, job.storage, job.out, trainer))
    assert trainer.calls == [(1, True)]                         # the retry resumes trial-0001
    s = api.sweep_show("tiny", storage=job.storage)
    assert s["n_trials"] == 2 and s["states"] == {"complete": 2}
    assert {r["trial"] for r in s["trials"]} == {0, 2} and s["trials"][1]["retry_of"] == 1


def test_a_study_continues_with_a_larger_budget_but_not_with_another_space(tmp_path, space_file):
    _, rows = run_fake(space_file(trials=1), tmp_path, {0: [10.0]})
    assert [r["trial"] for r in rows] == [0]
    _, rows = run_fake(space_file(trials=2), tmp_path, {0: [10.0], 1: [11.0]})
    assert [r["trial"] for r in rows] == [1]                        # one more trial, not two
    with pytest.raises(sw.SweepError, match="another search space .differs in fixed"):
        run_fake(space_file(trials=2, epochs=3), tmp_path, {})


def test_a_real_sweep_on_the_digits_then_show_and_rerun(tmp_path, space_file, monkeypatch):
    """Training trials on the embedded digits (1 epoch, tiny layers), then the CLI's show
    with its files, and the best trial re-run on the test set."""
    monkeypatch.chdir(tmp_path)
    path = space_file(trials=2)
    r = runner.invoke(app, ["sweep", "run", str(path), "--storage", "s.db", "--out", "trials", "--format", "json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["states"] == {"complete": 2} and len(s["best"]) == 1
    best = s["best"][0]
    assert runio.is_run_dir(Path(best["run_dir"])) and 0 <= best["val_error"] <= 100
    r = runner.invoke(app, ["sweep", "show", "tiny", "--storage", "s.db", "--out", "report"])
    assert r.exit_code == 0, r.output
    assert "best trial:" in r.stdout and "test error of the chosen trials" in r.stdout
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"trials.csv", "study.json", "val_error_per_trial.png", "importances.png"} <= files
    assert (tmp_path / "report" / "trials.csv").read_text().count("\n") == 3
    assert (tmp_path / "report" / "val_error_per_trial.png").read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(app, ["sweep", "show", "tiny", "--storage", "s.db", "--out", "report"])
    assert r.exit_code == 1 and r.output.startswith("error:") and "--force" in r.output
    r = runner.invoke(app, ["sweep", "rerun", "tiny", "--storage", "s.db", "--out", "best", "--json",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["sweep_trial"]["trial"] == best["trial"] and "val_error" not in m and m["test_error"]
    saved = api.saved_config(tmp_path / "best")
    assert saved.data.val_fraction == 0.0 and saved.optim.lr == best["param:optim.lr"]


def test_the_estimate_grid_covers_profiles_widths_and_bits(tmp_path):
    path = tmp_path / "arch.toml"
    path.write_text('[study]\nname = "arch"\nobjectives = ["inference_energy_pj", "sram_bytes"]\n'
                    'directions = ["minimize", "minimize"]\n[estimate]\ninput_size = 64\n'
                    '[params."hardware.profile"]\nchoices = ["loihi-like", "cmos-45nm"]\n'
                    '[params."units.layers"]\nchoices = ["100", "200,200"]\n'
                    '[params."profile.precision.weight_bits"]\nchoices = [4, 8]\n')
    s = api.sweep_grid(path, storage=str(tmp_path / "g.db"), out=tmp_path / "g")
    assert s["states"] == {"complete": 8} and s["kind"] == "grid"
    points = {(r["param:hardware.profile"], r["param:units.layers"], r["param:profile.precision.weight_bits"]):
              r for r in s["trials"]}
    assert len(points) == 8
    # 4-bit weights take half the SRAM of 8-bit ones for the same network on the same chip
    small, big = points[("cmos-45nm", "200,200", 4)], points[("cmos-45nm", "200,200", 8)]
    assert small["sram_bytes"] < big["sram_bytes"]
    direct = api.estimate_run(profile=str(tmp_path / "g" / "profiles" / "cmos-45nm+weight_bits=8.toml"),
                              layers="64,200,200")
    assert big["inference_energy_pj"] == pytest.approx(direct["inference"]["energy_pj_per_sample"])
    again = api.sweep_grid(path, storage=str(tmp_path / "g.db"), out=tmp_path / "g")
    assert again["n_trials"] == 8                                  # nothing estimated twice
    shown = api.sweep_show("arch", storage=str(tmp_path / "g.db"), out=tmp_path / "rep")
    assert any(f.endswith("pareto_inference_energy_pj_vs_sram_bytes.png") for f in shown["files"])
    front = {r["trial"] for r in shown["best"]}
    for r in s["trials"]:                                          # nothing on the front is dominated
        if r["trial"] in front:
            assert not any(o["inference_energy_pj"] <= r["inference_energy_pj"] and o["sram_bytes"] <= r["sram_bytes"]
                           and (o["inference_energy_pj"], o["sram_bytes"]) != (r["inference_energy_pj"],
                                                                              r["sram_bytes"]) for o in s["trials"])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")       # study.ask() stands in for a worker
def test_a_trial_over_the_budget_stops_at_once_and_is_left_out(tmp_path, space_file):
    """Two workers may take the last slot together: the later trial by number is over."""
    path = space_file(trials=1, study_extra='pruner = "none"')
    space = load_space(path)
    study = sw.open_study(space, sw.open_storage(str(tmp_path / "s.db")), "train")
    first = study.ask()                                  # another worker's trial, still running
    trainer = fake_trainer({1: [10.0]})
    study.optimize(sw.train_objective(space, tmp_path / "out", trainer), n_trials=1, catch=(sw.TrialError,))
    assert trainer.calls == []                           # nothing trained
    over = study.trials[1]
    assert over.state.name == "FAIL" and over.user_attrs["over_budget"] is True
    assert [t.number for t in sw.counted(study.get_trials())] == [first.number]
    study.tell(first, 12.0)
    s = api.sweep_show("tiny", storage=str(tmp_path / "s.db"))
    assert s["n_trials"] == 1 and [r["trial"] for r in s["trials"]] == [0]
