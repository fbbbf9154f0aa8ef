"""scripts/bench_calibration.py and its section of docs/results.md: a row's ffneuro figure is
ffneuro's own estimate of the published network and its ratio is published / that estimate;
results_doc renders the section from a calibration JSON (analytic estimates only, no run)."""

from __future__ import annotations

import json

import pytest

from ffneuro.hw.estimate import estimate_from_layers



@pytest.fixture(scope="module")
def bench(scripts):
    return scripts("bench_calibration")


@pytest.fixture(scope="module")
def results_doc(scripts):
    return scripts("results_doc")


def _measurement(bench, mid: str) -> dict:
    return next(m for m in bench.MEASUREMENTS if m["id"] == mid)


def test_row_ratio_is_published_over_ffneuros_estimate(bench):
    m = _measurement(bench, "renner2024")
    rows = bench.calibrate(m)["rows"]                     # no run dir: the analytic estimates
    graded = estimate_from_layers(m["profile"], m["layer_sizes"], num_classes=m["num_classes"])
    spiking = estimate_from_layers(m["profile"], m["layer_sizes"], num_classes=m["num_classes"], binary_input=True)
    key = {"energy": "energy_pj_per_sample", "latency": "latency_s", "throughput": "samples_per_s"}
    assert {(r["phase"], r["quantity"]) for r in rows} == {(f["phase"], f["quantity"]) for f in m["figures"]}
    for r in rows:
        fig = next(f for f in m["figures"] if (f["phase"], f["quantity"]) == (r["phase"], r["quantity"]))
        published = fig["value"] * {"mJ": 1e9, "ms": 1e-3}[fig["unit"]]      # pJ and s
        ours = graded[r["phase"]][key[r["quantity"]]]
        assert r["ffneuro_source"] == "analytic"
        assert r["published"]["si"] == pytest.approx(published)
        assert r["ffneuro"] == pytest.approx(ours) and ours > 0
        assert r["ratio"] == pytest.approx(published / ours)
        assert r["ratio_spiking"] == pytest.approx(published / spiking[r["phase"]][key[r["quantity"]]])
    # 0.59 mJ per training sample against the estimate of the same 400-400-10 network
    train = next(r for r in rows if (r["phase"], r["quantity"]) == ("training", "energy"))
    assert train["ratio"] == pytest.approx(0.59e9 / graded["training"]["energy_pj_per_sample"])


def test_a_different_estimate_gives_a_different_ratio(bench):
    m = _measurement(bench, "lin2018")
    wider = dict(m, layer_sizes=[1920, 20])
    a, b = bench.calibrate(m)["rows"][0], bench.calibrate(wider)["rows"][0]
    assert a["published"] == b["published"]
    assert b["ffneuro"] > a["ffneuro"] and b["ratio"] == pytest.approx(a["ratio"] * a["ffneuro"] / b["ffneuro"])


def test_units_and_throughput(bench):
    m = _measurement(bench, "blouw2019")
    rows = {r["quantity"]: r for r in bench.calibrate(m)["rows"]}
    assert set(rows) == {"energy", "throughput"}          # the power figures are context, not compared
    assert rows["energy"]["published"]["si"] == pytest.approx(0.00027e12)  # J -> pJ
    ours = estimate_from_layers(m["profile"], m["layer_sizes"], num_classes=m["num_classes"])["inference"]
    assert rows["throughput"]["ratio"] == pytest.approx(296 / ours["samples_per_s"])


def _calibration_json(bench) -> dict:
    results = {m["id"]: bench.calibrate(m) for m in bench.MEASUREMENTS}
    return {"command": "python scripts/bench_calibration.py --no-train", "ratio": "published / ffneuro",
            "measurements": bench.MEASUREMENTS, "runs": {},
            "estimates": {k: v["estimates"] for k, v in results.items()},
            "rows": [r for v in results.values() for r in v["rows"]],
            "factors": bench.factors(bench.MEASUREMENTS, results)}


def test_results_doc_renders_the_section(bench, results_doc, tmp_path, monkeypatch):
    monkeypatch.setattr(results_doc, "BENCH", tmp_path)
    assert results_doc.calibration() == []                # no file, no section
    d = _calibration_json(bench)
    (tmp_path / "calibration.json").write_text(json.dumps(d))
    text = "\n".join(results_doc.calibration())
    assert text.startswith("## Calibration against measured silicon")
    for m in d["measurements"]:
        assert f"`{m['id']}`" in text and m["citation"] in text
    for r in d["rows"]:
        assert f"**{r['ratio']:.3g}×**" in text
    for factor in ("Static power", "Host I/O", "Routing", "Time steps", "Latency"):
        assert f"**{factor}" in text
    host = d["factors"]["host_io"]["rows"][0]
    assert f"{100 * host['share_of_published']:.0f} %" in text
    assert "calibration" in [s.__name__ for s in results_doc.SECTIONS]
