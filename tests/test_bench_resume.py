"""Long benchmark runs kept resumable across sittings (bench/resume/): the bench JSON records
where its run dir is, and the results doc tells a resumable run from a stopped one; the
conv table's lowest error over epochs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_bench_json_records_a_run_dir_inside_the_repository_relative_to_it_and_others_by_name(tmp_path, scripts):
    bench_conv = scripts("bench_conv")
    assert bench_conv.where(REPO / "bench" / "resume" / "cwcomp-cifar10-e25") == "bench/resume/cwcomp-cifar10-e25"
    assert bench_conv.where(tmp_path / "runs" / "mine") == "mine"          # no machine's path in a bench file


def test_an_unfinished_run_is_resumable_only_while_its_checkpoint_is_in_the_checkout(tmp_path, monkeypatch, scripts):
    doc = scripts("results_doc")
    monkeypatch.setattr(doc, "ROOT", tmp_path)
    assert doc.run_state({"complete": True, "run_dir": "bench/resume/a"}) == ""
    assert doc.run_state({"complete": False}) == " (stopped)"                     # no run dir recorded
    assert doc.run_state({"complete": False, "run_dir": "bench/resume/a"}) == " (stopped)"
    (tmp_path / "bench" / "resume" / "a").mkdir(parents=True)
    assert doc.run_state({"complete": False, "run_dir": "bench/resume/a"}) == " (stopped)"   # config alone
    (tmp_path / "bench" / "resume" / "a" / "checkpoint.safetensors").write_bytes(b"x")
    assert doc.run_state({"complete": False, "run_dir": "bench/resume/a"}) == " (resumable)"


def test_every_run_dir_kept_for_resuming_belongs_to_an_unfinished_bench_json():
    """A run dir under bench/resume/ is kept only while its bench JSON is incomplete, and
    every one is named in bench/resume/README.md."""
    import json

    resume = REPO / "bench" / "resume"
    readme = (resume / "README.md").read_text()
    kept = sorted(p.name for p in resume.iterdir() if p.is_dir())
    owners = {}
    for path in (REPO / "bench").glob("*.json"):
        d = json.loads(path.read_text())
        if isinstance(d, dict) and str(d.get("run_dir", "")).startswith("bench/resume/"):
            owners[d["run_dir"].split("/")[-1]] = d
    for name in kept:
        assert name in owners, f"bench/resume/{name} has no bench JSON naming it as its run_dir"
        assert not owners[name].get("complete"), f"bench/resume/{name}: its run is complete; remove the run dir"
        assert f"`{name}`" in readme, f"bench/resume/{name} is not listed in bench/resume/README.md"


def test_the_lowest_error_over_epochs_is_read_from_the_evaluated_epochs_only(scripts):
    doc = scripts("results_doc")
    history = [{"epoch": 1, "test_error": {"multi_pass": 3.0}}, {"epoch": 2},      # epoch 2 not evaluated
               {"epoch": 3, "test_error": {"multi_pass": 1.25, "one_pass": 0.5}},
               {"epoch": 4, "test_error": {"multi_pass": 2.0}}]
    assert doc.lowest_multi(history) == "1.25 (e3)"
    assert doc.lowest_multi([{"epoch": 1}]) == "–"
