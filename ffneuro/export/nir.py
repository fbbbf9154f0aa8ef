"""Export a spiking run to NIR (the Neuromorphic Intermediate Representation, SPEC §7).

The graph is ``input → (Affine → LIF) × L → output``: each unit's weights and biases as
an ``Affine`` node and its neurons as a ``LIF`` node, in NIR's continuous-time form
with the discretisation step ``dt`` that snntorch's exporter and importer use
(β = 1 − dt/τ, so τ = dt/(1 − β); r = τ/dt so that the input enters unscaled; v_leak =
v_reset = 0; v_threshold = θ_s). Lava-DL, Rockpool, Sinabs, SpiNNaker2 and snntorch read
it. What NIR cannot express stays with ffneuro (the export summary names it): the label
overlay/concatenation and the spike encoder before the first node (the graph's input is
the encoded spike train), and the goodness/inference rule after the last node.
Only ``reset = zero`` runs export: NIR's LIF resets to v_reset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DT = 1e-4      # snntorch's NIR time step


class NIRExportError(ValueError):
    """A run that NIR cannot represent (one-line message)."""


def lif_node(beta: float, threshold: float, n: int):
    import nir

    tau = np.full(n, DT / (1.0 - beta), dtype=np.float32)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n, dtype=np.float32),
                   v_threshold=np.full(n, threshold, dtype=np.float32), v_reset=np.zeros(n, dtype=np.float32))


def to_nir(net):
    """The NIR graph of a spiking FFNetwork."""
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array([net.layer_sizes[0]])})}
    edges, prev = [], "input"
    for i, unit in enumerate(net.layers):
        lif = unit.lif_spec
        nodes[f"fc{i}"] = nir.Affine(weight=unit.weight.detach().numpy().astype(np.float32),
                                     bias=unit.bias.detach().numpy().astype(np.float32))
        nodes[f"lif{i}"] = lif_node(lif.beta, lif.threshold, unit.out_features)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([net.layer_sizes[-1]])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def export_nir(run_dir: Path, out: Path) -> dict:
    """`ffneuro export --format nir`: write the run's spiking network as a NIR file."""
    import os
    import tempfile

    import nir

    from ffneuro.train.loop import load_run

    cfg, saved, net = load_run(Path(run_dir))
    if not net.spiking:
        raise NIRExportError(f"{run_dir}: NIR export needs a spiking run (--neuron lif): NIR has no ReLU "
                             "node; export graded runs with --format hdf5")
    if cfg.units.reset != "zero":
        raise NIRExportError(f"{run_dir}: reset = {cfg.units.reset!r}: NIR's LIF resets to zero; train with --reset zero")
    graph = to_nir(net)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": str(out), "format": "nir", "nodes": len(graph.nodes), "layers": len(net.layers),
            "steps": cfg.units.steps, "spike_encoding": cfg.units.spike_encoding, "label_encoding": net.encoding.mode,
            "bytes": out.stat().st_size}
