"""Export a spiking run to NIR (the Neuromorphic Intermediate Representation, SPEC §7).

The graph is ``input → (Affine → LIF) × L → output``: each unit's weights and biases as
an ``Affine`` node (a conv unit's as a ``Conv2d`` node, with a ``Flatten`` node where maps
enter a dense unit) and its neurons as a ``LIF`` node, in NIR's continuous-time form
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


class NIRExportError(ValueError):
    """A run that NIR cannot represent (one-line message)."""


def to_nir(net):
    """The NIR graph of a network whose units all have a NIR form (``unit.nir_nodes``)."""
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array(net.layers[0].in_shape)})}
    edges, prev = [], "input"
    for i, unit in enumerate(net.layers):
        if i and len(unit.in_shape) < len(net.layers[i - 1].out_shape):   # maps into a dense unit
            # NIR's shapes are unbatched: flatten from dim 0 (an importer then runs one sample at a time)
            nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": np.array(net.layers[i - 1].out_shape)},
                                               start_dim=0)
            edges.append((prev, f"flatten{i}"))
            prev = f"flatten{i}"
        for name, node in unit.nir_nodes(i):
            nodes[name] = node
            edges.append((prev, name))
            prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(net.layers[-1].out_shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def export_nir(run_dir: Path, out: Path) -> dict:
    """`ffneuro export --format nir`: write the run's spiking network as a NIR file."""
    import nir

    from ffneuro.runs.files import atomic_output
    from ffneuro.runs.load import load_run

    cfg, saved, net = load_run(Path(run_dir))
    try:
        graph = to_nir(net)
    except ValueError as e:
        raise NIRExportError(f"{run_dir}: {e}") from None
    out = Path(out)
    with atomic_output(out) as tmp:
        nir.write(tmp, graph)
    return {"file": str(out), "format": "nir", "nodes": len(graph.nodes), "layers": len(net.layers),
            **net.input_stage.export_attrs(), "label_encoding": net.encoding.mode,
            "bytes": out.stat().st_size}
