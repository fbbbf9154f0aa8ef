"""Deployment-path check: does a NIR file written by ``ffneuro export --format nir`` make
other NIR consumers emit ffneuro's spikes? (issue #16, item 7)

For each network (a dense and a conv spiking stack trained briefly on the embedded digits)
the run is exported through ffneuro's own ``export_nir``, the file is loaded by each
installed consumer (snntorch, norse, sinabs, rockpool), the same input spike trains
(ffneuro's own encoded spikes for test samples, T steps) are fed in, and each consumer's
spikes are compared with ffneuro's layer by layer: exact or not, the fraction of equal
entries, the first differing (step, sample, neuron).

Where a consumer disagrees, two more rows check the explanation:

- ``predicted``: the consumer's output against ffneuro's own weights run under the
  consumer's discretisation as this script reads it from the consumer's source (decay,
  input scale, reset, multi-spike and ≥ threshold; ``simulate``). Equal spikes mean the
  explanation accounts for every spike.
- ``adjusted``: the consumer with the stated cause corrected in its loaded modules
  (its time constant, input scale, spike or reset function), against ffneuro.

    python scripts/bench_nir_consumers.py                    # → bench/nir_consumers.json
    python scripts/bench_nir_consumers.py --samples 10 --epochs 1 --out /tmp/x.json

Consumers that are not installed are recorded as such. How each was installed here
(none of them may change torch, nir or snntorch): ``pip install rockpool`` (the
``nir-consumers`` extra); ``pip install --no-deps sinabs pbr`` (sinabs pins nir ≤ 1.0.4 and
pulls samna); ``pip install --no-deps norse`` (norse pulls torchvision and with it a CUDA
torch; its NIR importer needs neither).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from ffneuro.config import RunConfig
from ffneuro.data.loaders import load_dataset
from ffneuro.export.nir import export_nir
from ffneuro.runs.load import load_run
from ffneuro.train.loop import train
from ffneuro.units.lif import NIR_DT

REPO = Path(__file__).resolve().parent.parent
CONSUMERS = ("snntorch", "norse", "sinabs", "rockpool")
NORSE_DEFAULT_DT = 1e-3          # norse.torch.from_nir's default dt
NETWORKS = {                     # name → config assignments (dense and conv, reset = zero: what NIR's LIF has)
    "dense": ["units.neuron=lif", "units.layers=40,30", "optim.lr=0.003"],
    "conv": ["units.neuron=lif", "units.stack=conv:6:k3:p1,dense:20", "optim.lr=0.003", "units.steps=4"],
    "dense-subtract": ["units.neuron=lif", "units.layers=40,30", "optim.lr=0.003", "units.reset=subtract"],
}


# ----------------------------------------------------------------------------------------
# ffneuro's side: the run, its input spikes, its spikes per layer
# ----------------------------------------------------------------------------------------
def build_run(sets: list[str], out: Path, data, epochs: int) -> Path:
    """Train a small spiking run into ``out`` (the digits, ``epochs`` epochs)."""
    cfg = RunConfig().with_sets(sets + [f"loop.epochs={epochs}", "loop.entropy_probe=0"])
    train(cfg, out=out, data=data, progress=False)
    return out


def input_spikes(net, data, samples: int, seed: int = 1) -> torch.Tensor:
    """ffneuro's own input spike train (T, N, …) for the first ``samples`` test samples:
    the label encoding and spike encoder that NIR leaves outside the graph."""
    x = net.prepare_input(data.x_test[:samples])
    return net.input_stage(net.encoding.encode(x, data.y_test[:samples]), torch.Generator().manual_seed(seed))


@torch.no_grad()
def ffneuro_spikes(net, s_in: torch.Tensor) -> list[torch.Tensor]:
    """ffneuro's spikes of every layer, (T, N, *out_shape) each."""
    out, h = [], s_in
    for layer in net.layers:
        h = layer(h)
        out.append(h)
    return out


@torch.no_grad()
def simulate(net, s_in: torch.Tensor, *, decay: float | None = None, input_scale: float = 1.0,
             reset: str = "zero", fire: str = "gt", multi: bool = False) -> list[torch.Tensor]:
    """ffneuro's weights under another discretisation of NIR's LIF, per step::

        U' = decay · U + input_scale · (W · x[t] + b)
        S  = U' > θ ("gt") or U' ≥ θ ("ge"); multi: S = floor(U'/θ) spikes where U' ≥ θ
        U  = U' (1 − [S > 0])  (reset "zero")  |  U' − S θ  ("subtract")

    ``decay`` None is the run's β. With the defaults this is ffneuro's own LIF (checked in
    ``main``). Spike counts > 1 (``multi``) are fed on as counts, as the consumers do."""
    out, h = [], s_in
    for layer in net.layers:
        beta = layer.lif_spec.beta if decay is None else decay
        thr = layer.lif_spec.threshold
        cur = layer._current(h) * input_scale
        mem = torch.zeros_like(cur[0])
        steps = []
        for t in range(cur.shape[0]):
            u = beta * mem + cur[t]
            if multi:
                s = torch.where(u >= thr, torch.floor(u / thr), torch.zeros_like(u))
            else:
                s = ((u > thr) if fire == "gt" else (u >= thr)).to(u.dtype)
            mem = u - s * thr if reset == "subtract" else u * (s == 0)
            steps.append(s)
        h = torch.stack(steps)
        out.append(h)
    return out


def compare(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> list[dict]:
    """Per layer: exact, fraction of equal entries, first difference (step, sample, neuron),
    spike totals (a multi-spike consumer's counts are summed as counts)."""
    rows = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = b.reshape(a.shape).to(a.dtype)
        diff = (a != b).reshape(a.shape[0], a.shape[1], -1)
        row = {"layer": i + 1, "exact": not bool(diff.any()), "equal_fraction": round(1.0 - diff.float().mean().item(), 6),
               "spikes_ffneuro": int(a.sum().item()), "spikes_consumer": int(b.sum().item()), "first_difference": None}
        if diff.any():
            t, n, j = (int(v) for v in diff.nonzero()[0])
            row["first_difference"] = {"step": t, "sample": n, "neuron": j}
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------
# The consumers: each loads the graph and returns its spikes per LIF node (T, N, …)
# ----------------------------------------------------------------------------------------
def lif_names(graph) -> list[str]:
    return [name for name in graph.nodes if name.startswith("lif")]


@contextlib.contextmanager
def recorded(model, names: list[str]):
    """Forward hooks that collect each named module's output spikes (the first element
    when a module returns (spikes, state))."""
    store = {name: [] for name in names}
    handles = []
    for name in names:
        def hook(_module, _inputs, output, name=name):
            store[name].append((output[0] if isinstance(output, tuple) else output).detach())
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _stepwise(model, s_in: torch.Tensor, names: list[str], reset) -> list[torch.Tensor]:
    """Feed one sample at a time, one step at a time (NIR's shapes are unbatched: a graph
    with a Flatten node flattens from dim 0), calling ``model(x, state)``."""
    per_sample = []
    with recorded(model, names) as store:
        for n in range(s_in.shape[1]):
            reset(model)
            state = None
            for t in range(s_in.shape[0]):
                _, state = model(s_in[t, n], state)
            per_sample.append([torch.stack(store[name]) for name in names])
            for name in names:
                store[name].clear()
    return [torch.stack([s[i] for s in per_sample], dim=1) for i in range(len(names))]


def run_snntorch(graph, s_in: torch.Tensor) -> list[torch.Tensor]:
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = import_from_nir(graph)
    with torch.no_grad():
        return _stepwise(model, s_in, lif_names(graph), snn_utils.reset)


def load_norse(graph, dt: float = NIR_DT, subtract: str | None = None):
    """norse's importer. ``subtract = "argument"``: ask ``from_nir`` for a subtractive
    reset (norse 1.1 hands ``reset_method`` to CubaLIF nodes only, not to LIF nodes);
    ``"cells"``: also set it on each imported LIF cell."""
    import norse.torch as norse

    kwargs = {"reset_method": norse.reset_subtract} if subtract else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = norse.from_nir(graph, dt=dt, ignore_warnings=True, **kwargs)
    if subtract == "cells":
        for name in lif_names(graph):
            cell = model.get_submodule(name)
            cell.p = cell.p._replace(reset_method=norse.reset_subtract)
    return model


def run_norse(graph, s_in: torch.Tensor, model=None) -> list[torch.Tensor]:
    """Norse's cells keep their state in the ``state`` the executor returns: a fresh
    ``None`` per sample resets them."""
    model = load_norse(graph) if model is None else model
    with torch.no_grad():
        return _stepwise(model, s_in, lif_names(graph), lambda m: None)


def scale_synapses(model, graph, factor: torch.Tensor | float) -> None:
    """Multiply the weights and biases of the imported Affine/Conv2d modules by ``factor``
    (an importer that drops NIR's r: put r back). Not in place: norse's modules share
    their tensors with the graph's numpy arrays (torch.from_numpy)."""
    for name in graph.nodes:
        if name.startswith(("fc", "conv")):
            m = model.get_submodule(name)
            m.weight.data = m.weight.data * factor
            m.bias.data = m.bias.data * factor


def load_sinabs(graph, batch: int):
    import sinabs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sinabs.from_nir(graph, batch_size=batch)


def run_sinabs(graph, s_in: torch.Tensor, model=None) -> list[torch.Tensor]:
    """sinabs' layers take (batch·time, …) with the batch outermost; they keep their
    membrane across calls, so a fresh model runs each batch."""
    t, n = s_in.shape[:2]
    model = load_sinabs(graph, n) if model is None else model
    names = lif_names(graph)
    x = s_in.transpose(0, 1).reshape(n * t, *s_in.shape[2:])
    with torch.no_grad(), recorded(model, names) as store:
        model(x)
        return [store[name][0].reshape(n, t, *store[name][0].shape[1:]).transpose(0, 1) for name in names]


def sinabs_like_ffneuro(model, graph, betas: list[float], subtract: bool = False) -> None:
    """sinabs with ffneuro's conventions: its decay exp(−1/τ_steps) set to β, one spike
    per step, reset to zero (``subtract``: keep its subtractive reset). sinabs'
    SingleSpike fires at U ≥ θ, ffneuro at U > θ."""
    from sinabs.activation import MembraneReset, SingleSpike

    for name, beta in zip(lif_names(graph), betas):
        m = model.get_submodule(name)
        m.tau_mem = torch.nn.Parameter(torch.full_like(m.tau_mem, -1.0 / math.log(beta)), requires_grad=False)
        m.spike_fn = SingleSpike
        if not subtract:
            m.reset_fn = MembraneReset()


@contextlib.contextmanager
def rockpool_lif_alias():
    """rockpool 3.1's ``from_nir`` reads ``node.tau_mem`` from NIR's LIF node, which has
    ``tau`` (``tau_mem`` is CubaLIF's field): without this alias it raises AttributeError."""
    import nir

    nir.LIF.tau_mem = property(lambda self: self.tau)
    try:
        yield
    finally:
        del nir.LIF.tau_mem


def load_rockpool(graph):
    from rockpool.nn.modules import from_nir

    with rockpool_lif_alias(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_nir(graph)


def run_rockpool(graph, s_in: torch.Tensor, model=None) -> list[torch.Tensor]:
    """rockpool's modules take (batch, time, features); a freshly loaded model starts
    from rest (it is loaded anew for every run)."""
    model = load_rockpool(graph) if model is None else model
    names = lif_names(graph)
    with torch.no_grad(), recorded(model, names) as store:
        model(s_in.transpose(0, 1))
        return [store[name][0].transpose(0, 1) for name in names]


def rockpool_like_ffneuro(model, graph, betas: list[float]) -> None:
    """rockpool with ffneuro's decay (dt = −τ ln β, so exp(−dt/τ) = β) and one spike per
    step; its reset stays a subtraction (LIFNeuronTorch has no other) and it fires at U ≥ θ."""
    for name, beta in zip(lif_names(graph), betas):
        m = model.get_submodule(name)
        m.dt = float(-graph.nodes[name].tau.min() * math.log(beta))
        m.max_spikes_per_dt = torch.tensor(1.0)


# ----------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------
def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def rows_for(consumer: str, graph, net, s_in, ours) -> list[dict]:
    """The rows of one consumer on one exported network: as imported, and where it
    disagrees the predicted and adjusted checks."""
    betas = [layer.lif_spec.beta for layer in net.layers]
    rows = []

    def add(mode: str, against: str, fn, reference):
        try:
            theirs = fn()
        except Exception as e:      # a consumer that cannot load or run the graph: its one-line reason
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if not any(row.get("error") == error for row in rows):     # once per consumer, not per check
                rows.append({"consumer": consumer, "mode": mode, "against": against, "error": error})
            return
        rows.append({"consumer": consumer, "mode": mode, "against": against, "layers": compare(reference, theirs)})

    if consumer == "snntorch":
        add("as imported", "ffneuro", lambda: run_snntorch(graph, s_in), ours)
    elif consumer == "norse":
        tau = float(next(graph.nodes[n] for n in lif_names(graph)).tau.min())
        add(f"as imported, default dt = {NORSE_DEFAULT_DT:g}", "ffneuro",
            lambda: run_norse(graph, s_in, load_norse(graph, dt=NORSE_DEFAULT_DT)), ours)
        add(f"as imported, dt = {NIR_DT:g} (the exporter's)", "ffneuro", lambda: run_norse(graph, s_in), ours)
        add(f"predicted, dt = {NIR_DT:g}: decay 1 − dt/τ, input × dt/τ (r dropped)",
            "ffneuro weights under norse's Euler step", lambda: run_norse(graph, s_in),
            simulate(net, s_in, decay=1 - NIR_DT / tau, input_scale=NIR_DT / tau))

        def norse_adjusted():
            model = load_norse(graph)
            scale_synapses(model, graph, tau / NIR_DT)
            return run_norse(graph, s_in, model)
        add(f"adjusted: dt = {NIR_DT:g}, synapses × r (= τ/dt)", "ffneuro", norse_adjusted, ours)
    elif consumer == "sinabs":
        tau = float(next(graph.nodes[n] for n in lif_names(graph)).tau.min())
        add("as imported", "ffneuro", lambda: run_sinabs(graph, s_in), ours)
        add("predicted: decay exp(−1/τ) with τ in steps, multi-spike at U ≥ θ, subtract reset",
            "ffneuro weights under sinabs' LIF", lambda: run_sinabs(graph, s_in),
            simulate(net, s_in, decay=math.exp(-1.0 / tau), reset="subtract", multi=True))

        def sinabs_adjusted():
            model = load_sinabs(graph, s_in.shape[1])
            sinabs_like_ffneuro(model, graph, betas)
            return run_sinabs(graph, s_in, model)
        add("adjusted: decay β, single spike, reset to zero", "ffneuro", sinabs_adjusted, ours)
    elif consumer == "rockpool":
        add("as imported (without the tau_mem alias)", "ffneuro", lambda: run_rockpool_unpatched(graph, s_in), ours)
        add("as imported (with the tau_mem alias)", "ffneuro", lambda: run_rockpool(graph, s_in), ours)
        node = graph.nodes[lif_names(graph)[0]]
        r = float(node.r.min())
        add("predicted: decay exp(−1/(1 + r)), multi-spike at U ≥ θ, subtract reset",
            "ffneuro weights under rockpool's LIF", lambda: run_rockpool(graph, s_in),
            simulate(net, s_in, decay=math.exp(-1.0 / (1.0 + r)), reset="subtract", multi=True))

        def rockpool_adjusted():
            model = load_rockpool(graph)
            rockpool_like_ffneuro(model, graph, betas)
            return run_rockpool(graph, s_in, model)
        add("adjusted: decay β, one spike per step", "ffneuro", rockpool_adjusted, ours)
        add("adjusted: decay β, one spike per step", "ffneuro weights with subtract reset, U ≥ θ",
            rockpool_adjusted, simulate(net, s_in, reset="subtract", fire="ge"))
    return rows


def run_rockpool_unpatched(graph, s_in):
    from rockpool.nn.modules import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_rockpool(graph, s_in, from_nir(graph))


def graph_ignoring_reset(net):
    """The NIR graph ffneuro would write for ``net`` if it let a subtract-reset run
    through: the same nodes (NIR's LIF has no field for the reset), built with each
    unit's reset set to zero for the moment of the export."""
    from ffneuro.export.nir import to_nir

    specs = [unit.lif_spec for unit in net.layers]
    try:
        for unit in net.layers:
            unit.lif_spec = dataclasses.replace(unit.lif_spec, reset="zero")
        return to_nir(net)
    finally:
        for unit, spec in zip(net.layers, specs):
            unit.lif_spec = spec


def subtract_rows(graph, net, s_in, ours) -> list[dict]:
    """A subtract-reset run in the consumers that have a subtractive reset, each set to
    ffneuro's other conventions (as in the "adjusted" rows), against ffneuro's spikes."""
    betas = [unit.lif_spec.beta for unit in net.layers]
    tau = float(graph.nodes[lif_names(graph)[0]].tau.min())
    rows = []

    def norse_subtract(how: str):
        model = load_norse(graph, subtract=how)
        scale_synapses(model, graph, tau / NIR_DT)
        return run_norse(graph, s_in, model)

    def sinabs_subtract():
        model = load_sinabs(graph, s_in.shape[1])
        sinabs_like_ffneuro(model, graph, betas, subtract=True)
        return run_sinabs(graph, s_in, model)

    def rockpool_subtract():
        model = load_rockpool(graph)
        rockpool_like_ffneuro(model, graph, betas)
        return run_rockpool(graph, s_in, model)

    norse_mode = f"dt = {NIR_DT:g}, synapses × r, from_nir(reset_method = reset_subtract)"
    zero = simulate(net, s_in, reset="zero")
    for consumer, mode, fn, against, reference in (
            ("norse", norse_mode, lambda: norse_subtract("argument"), "ffneuro (reset = subtract)", ours),
            ("norse", norse_mode, lambda: norse_subtract("argument"), "ffneuro weights with reset to zero", zero),
            ("norse", norse_mode + " and reset_subtract set on each LIF cell", lambda: norse_subtract("cells"),
             "ffneuro (reset = subtract)", ours),
            ("sinabs", "decay β, single spike, its subtractive reset", sinabs_subtract,
             "ffneuro (reset = subtract)", ours),
            ("rockpool", "decay β, one spike per step (its reset is a subtraction)", rockpool_subtract,
             "ffneuro (reset = subtract)", ours)):
        if installed(consumer) is None:
            if not any(row["consumer"] == consumer for row in rows):
                rows.append({"consumer": consumer, "error": "not installed"})
            continue
        rows.append({"consumer": consumer, "mode": mode, "against": against, "layers": compare(reference, fn())})
    return rows


def study(network: str, data, *, samples: int, epochs: int, workdir: Path) -> dict:
    """Train, export and compare one network with every installed consumer. A run that
    ffneuro does not export (reset = subtract) is compared, in the consumers that have a
    subtractive reset, through the graph ffneuro would otherwise write."""
    import nir

    run = build_run(NETWORKS[network], workdir / network, data, epochs)
    entry = {"network": network, "config": NETWORKS[network], "epochs": epochs, "samples": samples}
    _, _, net = load_run(run)
    try:
        entry["export"] = export_nir(run, workdir / f"{network}.nir")
        graph = nir.read(workdir / f"{network}.nir")
    except ValueError as e:
        entry["export_error"] = str(e).split(": ", 1)[-1]
        graph = graph_ignoring_reset(net)
    s_in = input_spikes(net, data, samples)
    ours = ffneuro_spikes(net, s_in)
    reset = net.layers[0].lif_spec.reset
    own = compare(ours, simulate(net, s_in, reset=reset))
    assert all(r["exact"] for r in own), own     # simulate() with ffneuro's own parameters is ffneuro
    if "export_error" in entry:
        entry["steps"] = int(s_in.shape[0])
        entry["rows"] = subtract_rows(graph, net, s_in, ours)
        return entry
    entry["steps"], entry["input_spikes"] = int(s_in.shape[0]), int(s_in.sum().item())
    # does firing at U ≥ θ (sinabs, rockpool) instead of U > θ change anything by itself? (ties)
    entry["fire_at_ge_vs_ffneuro"] = compare(ours, simulate(net, s_in, fire="ge"))
    entry["rows"] = []
    for consumer in CONSUMERS:
        if installed(consumer) is None:
            entry["rows"].append({"consumer": consumer, "error": "not installed"})
            continue
        entry["rows"] += rows_for(consumer, graph, net, s_in, ours)
    return entry


def _changed(entry: dict) -> str:
    rows = entry.get("fire_at_ge_vs_ffneuro")
    if rows is None:
        return "–"
    return "nothing" if all(r["exact"] for r in rows) else ", ".join(
        f"L{r['layer']} {100 * (1 - r['equal_fraction']):.3f}%" for r in rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=40, help="test samples fed to every consumer")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "nir_consumers.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset("digits")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [study(n, data, samples=args.samples, epochs=args.epochs, workdir=Path(tmp))
                   for n in args.networks.split(",")]
    doc = {"command": "python scripts/bench_nir_consumers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "environment": {"python": platform.python_version(), "torch": torch.__version__,
                           "packages": {p: installed(p) for p in ("nir", "nirtorch", *CONSUMERS)}},
           "nir_dt": NIR_DT, "seconds": round(time.perf_counter() - t0, 1), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    for entry in results:
        print(f"== {entry['network']}: {entry['samples']} samples × {entry['steps']} steps; "
              + (f"not exported ({entry['export_error']}); the graph ffneuro would otherwise write:"
                 if "export_error" in entry else f"firing at U ≥ θ instead of U > θ changes {_changed(entry)}"))
        for row in entry.get("rows", []):
            what = row.get("error") or "  ".join(
                f"L{r['layer']} " + ("exact" if r["exact"] else f"{100 * r['equal_fraction']:.2f}%")
                + f" ({r['spikes_consumer']}/{r['spikes_ffneuro']})" for r in row["layers"])
            print(f"  {row['consumer']:9s} {row.get('mode', ''):78.78s} vs {row.get('against', ''):45.45s} {what}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
