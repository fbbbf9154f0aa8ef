"""Accelergy interchange: an estimate's event counts as Accelergy action counts, the
profile's per-event energies as an Accelergy energy reference table (ERT), and an ERT read
back as per-event energies (a profile's ``energy_from``, :mod:`ffneuro.hw.profiles`).

Accelergy (Wu, Emer and Sze, ICCAD 2019) keeps, as ffneuro does, a workload's counts of
each component's actions apart from the energy of one action; a component's energy is
``Σ_action counts × ERT energy`` (pJ). The files are written in Accelergy's version 0.3
form, which Accelergy 0.3 and 0.4 read::

    action_counts:                          ERT:
      version: 0.3                            version: 0.3
      local:                                  tables:
      - name: ffneuro.training.layer1         - name: ffneuro.training.layer1
        action_counts:                          actions:
        - name: synop_dense                     - name: synop_dense
          counts: 7840.0                          arguments: null
        - ...                                     energy: 0.3
                                                - ...

Naming. A component per phase and layer, ``ffneuro.<phase>.layer<i>`` (phase ``training``
or ``inference``, ``i`` from 1), so Accelergy's per-component energy is ffneuro's per-layer
energy of that phase. Its actions are ffneuro's event kinds (:data:`ACTION_FIELDS`), with
``neuron_update`` split into ``neuron_update_active`` and ``neuron_update_idle``, the two
energies a profile gives (units that received input in the step, and the others). Counts
are per sample, as in the estimate. The ERT has one table per component (Accelergy looks
a component's table up by its name), all with the same energies: a profile prices an event
kind the same in every layer. The bit-scaled energy model is written as its energies at
the profile's widths.

``ffneuro_energy.yaml`` carries ffneuro's own figures to check the files against: per
component the dynamic energy (= Σ counts × energy), per phase the dynamic, static and
total energy per sample. Static energy (static power × latency) has no action count, so it
is not in the ERT; nor are the time table, memory and mapping.

Reading (:func:`read_ert`, for ``energy_from``): the component names are the reader's
own; every entry's action must be one of :data:`ACTION_FIELDS` and every one of them must
be given; an action given in several tables (or with several argument sets; arguments
are not used) must have one energy; energies are numbers in pJ, finite and >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 0.3               # Accelergy's input-file version written (read by Accelergy 0.3 and 0.4)
ROOT = "ffneuro"
PHASES = ("training", "inference")
COUNTS_FILE, ERT_FILE, ENERGY_FILE = "action_counts.yaml", "ERT.yaml", "ffneuro_energy.yaml"
FILES = (COUNTS_FILE, ERT_FILE, ENERGY_FILE)


# Accelergy action -> the profile's energy field (pJ per action): the kinds of
# ffneuro.hw.energy.ENERGY_FIELDS in their order, neuron_update as its two energies (a
# test keeps the two tables in step; hw.energy is not imported: it loads profiles, which
# load this module for energy_from).
ACTION_FIELDS: dict[str, str] = {
    "synop_dense": "synop_dense_pj",
    "synop_sparse": "synop_sparse_pj",
    "neuron_update_active": "neuron_update_active_pj",
    "neuron_update_idle": "neuron_update_idle_pj",
    "weight_read": "weight_read_pj",
    "weight_write": "weight_write_pj",
    "learning_update": "learning_update_pj",
    "state_access": "state_access_pj",
    "goodness_op": "goodness_op_pj",
    "spike_route": "spike_route_pj",
}


class AccelergyError(ValueError):
    """An ERT file ffneuro cannot take its energies from (a one-line message naming the
    file, the key and the problem)."""


@dataclass(frozen=True)
class Component:
    """One Accelergy component: a layer in one phase, its action counts per sample and
    ffneuro's dynamic energy of it per sample."""

    name: str
    phase: str
    layer: int
    counts: tuple[tuple[str, float], ...]     # (action, count per sample), in ACTION_FIELDS order
    energy_pj: float


@dataclass(frozen=True)
class Ert:
    """The per-action energies an ERT gives, as ffneuro reads them."""

    path: str
    energies_pj: tuple[tuple[str, float], ...]    # (action, pJ), in ACTION_FIELDS order
    tables: tuple[tuple[str, str], ...]           # (action, the first table that gives it)

    def energy_pj(self, action: str) -> float:
        return dict(self.energies_pj)[action]

    def table(self, action: str) -> str:
        return dict(self.tables)[action]


def component_name(phase: str, layer: int) -> str:
    """``ffneuro.<phase>.layer<layer>`` (layer from 1).

    >>> component_name("training", 1)
    'ffneuro.training.layer1'
    """
    return f"{ROOT}.{phase}.layer{layer}"


def action_counts(events: dict[str, float]) -> dict[str, float]:
    """One layer's event counts as counts of the Accelergy actions: ``neuron_update`` split
    as the estimate charges it (``neuron_update_active`` of them active, at most all; the
    rest idle; without the split all active), every other kind as it is.

    >>> c = action_counts({"synop_dense": 6.0, "neuron_update": 4.0, "neuron_update_active": 3.0})
    >>> c["synop_dense"], c["neuron_update_active"], c["neuron_update_idle"], c["spike_route"]
    (6.0, 3.0, 1.0, 0.0)
    """
    updates = float(events.get("neuron_update", 0.0))
    active = min(float(events.get("neuron_update_active", updates)), updates)
    split = {"neuron_update_active": active, "neuron_update_idle": updates - active}
    return {a: split[a] if a in split else float(events.get(a, 0.0)) for a in ACTION_FIELDS}


def action_energies_pj(report: dict) -> dict[str, float]:
    """pJ per action, from the estimate's ``energy_table_pj`` (the bit-scaled model's
    figures at the profile's widths when the profile uses it)."""
    table = report["energy_table_pj"]
    return {a: float(table["neuron_update" if a == "neuron_update_active" else a]) for a in ACTION_FIELDS}


def components(report: dict) -> tuple[Component, ...]:
    """The estimate's components: per phase (training, then inference) one per layer."""
    return tuple(Component(name=component_name(phase, layer["layer"]), phase=phase, layer=int(layer["layer"]),
                           counts=tuple(action_counts(layer["events"]).items()), energy_pj=layer["energy_pj"])
                 for phase in PHASES for layer in report[phase]["layers"])


def action_counts_doc(report: dict) -> dict:
    """``action_counts.yaml`` as a dict: every component, every action (zeros kept)."""
    return {"action_counts": {"version": FORMAT_VERSION, "local": [
        {"name": c.name, "action_counts": [{"name": a, "counts": n} for a, n in c.counts]}
        for c in components(report)]}}


def ert_doc(report: dict) -> dict:
    """``ERT.yaml`` as a dict: a table per component, each with every action's energy in pJ."""
    energies = action_energies_pj(report)
    return {"ERT": {"version": FORMAT_VERSION, "tables": [
        {"name": c.name, "actions": [{"name": a, "arguments": None, "energy": e} for a, e in energies.items()]}
        for c in components(report)]}}


def energy_doc(report: dict) -> dict:
    """``ffneuro_energy.yaml`` as a dict: ffneuro's dynamic energy per component (what
    Σ counts × ERT energy gives), and per phase the dynamic, static and total energy."""
    return {"ffneuro_energy": {
        "version": 1, "profile": report["profile"], "source": report["source"], "per": "sample", "unit": "pJ",
        "components": [{"name": c.name, "energy": c.energy_pj} for c in components(report)],
        "phases": [{"name": phase,
                    "dynamic_energy_pj": report[phase]["dynamic_energy_pj_per_sample"],
                    "static_energy_pj": report[phase]["static_energy_pj_per_sample"],
                    "energy_pj": report[phase]["energy_pj_per_sample"]} for phase in PHASES]}}


def accelergy_texts(report: dict) -> dict[str, str]:
    """The three files' YAML text, keyed by file name (floats written so they read back
    equal), each opening with a comment that says what it holds."""
    import yaml

    head = (f"# ffneuro estimate, profile {report['profile']} ({report['source']} counts), "
            f"net {'-'.join(map(str, report['layer_sizes']))}: ")
    about = {COUNTS_FILE: "action counts per sample; energy = sum of counts x ERT.yaml energy (pJ)\n",
             ERT_FILE: "energy reference table, pJ per action (Accelergy's unit)\n",
             ENERGY_FILE: "ffneuro's energy per sample (pJ), to check sum of counts x energy against\n"}
    docs = {COUNTS_FILE: action_counts_doc(report), ERT_FILE: ert_doc(report), ENERGY_FILE: energy_doc(report)}
    return {name: head + about[name] + yaml.safe_dump(docs[name], sort_keys=False, allow_unicode=True)
            for name in FILES}


def write_accelergy(report: dict, folder: str | Path) -> list[Path]:
    """Write :data:`FILES` into ``folder`` (each atomically); returns their paths. The
    caller checks the folder first (``ffneuro.runs.files.check_new_folder``)."""
    from ffneuro.runs.files import atomic_write_bytes

    folder = Path(folder)
    written = []
    for name, text in accelergy_texts(report).items():
        atomic_write_bytes(folder / name, text.encode())
        written.append(folder / name)
    return written


# ----------------------------------------------------------------------------- reading


def read_ert(path: str | Path) -> Ert:
    """The per-action energies of an Accelergy ERT file (module docstring: what is
    checked). Raises AccelergyError with one line naming the file and the key."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise AccelergyError(f"{path}: is a folder, not an ERT file")
    if not path.is_file():             # missing, or a device or pipe that would never end
        raise AccelergyError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AccelergyError(f"{path}: cannot read the ERT: {_one_line(exc)}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AccelergyError(f"{path}: YAML syntax error: {_one_line(exc)}") from None
    except RecursionError:
        raise AccelergyError(f"{path}: YAML nested too deeply to read") from None
    return parse_ert(doc, str(path))


def parse_ert(doc: Any, source: str) -> Ert:
    """:func:`read_ert` of an already parsed document; ``source`` names it in errors."""
    if not isinstance(doc, dict) or not isinstance(doc.get("ERT"), dict):
        raise AccelergyError(f"{source}: not an Accelergy ERT (expected a top-level key ERT "
                             f"with version and tables)")
    tables = doc["ERT"].get("tables")
    if not isinstance(tables, list):
        raise AccelergyError(f"{source}: ERT.tables must be a list of tables {{name, actions}} "
                             f"(Accelergy's ERT form of version 0.3 and later), got {_kind(tables)}")
    found: dict[str, tuple[float, str]] = {}
    for i, table in enumerate(tables):
        where = f"ERT.tables[{i}]"
        if not isinstance(table, dict) or "name" not in table or not isinstance(table.get("actions"), list):
            raise AccelergyError(f"{source}: {where} must be a table with a name and a list of actions")
        name = str(table["name"])
        for j, entry in enumerate(table["actions"]):
            key = f"{where}.actions[{j}]"
            if not isinstance(entry, dict) or "name" not in entry or "energy" not in entry:
                raise AccelergyError(f"{source}: {key} (table {name!r}) must have a name and an energy")
            action = entry["name"]
            if action not in ACTION_FIELDS:
                raise AccelergyError(f"{source}: {key}.name = {action!r} (table {name!r}) is not an ffneuro action "
                                     f"(allowed: {', '.join(ACTION_FIELDS)})")
            energy = _energy_pj(source, f"{key}.energy", entry["energy"], name)
            if action in found and found[action][0] != energy:
                raise AccelergyError(
                    f"{source}: {key}.energy = {energy!r} (table {name!r}) differs from the {found[action][0]!r} pJ of "
                    f"{action} in table {found[action][1]!r} (ffneuro prices an action by one energy)")
            found.setdefault(action, (energy, name))
    missing = [a for a in ACTION_FIELDS if a not in found]
    if missing:
        raise AccelergyError(f"{source}: no energy for action {missing[0]} (an ERT for ffneuro gives every action: "
                             f"{', '.join(ACTION_FIELDS)})")
    return Ert(path=source, energies_pj=tuple((a, found[a][0]) for a in ACTION_FIELDS),
               tables=tuple((a, found[a][1]) for a in ACTION_FIELDS))


def _energy_pj(source: str, key: str, value: Any, table: str) -> float:
    """An ERT energy as a float in pJ: a number, or a string that reads as one (YAML 1.1,
    which PyYAML speaks, reads ``1e-3`` as text); finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AccelergyError(f"{source}: {key} = {value!r} (table {table!r}) is not a number (pJ)")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise AccelergyError(f"{source}: {key} = {value!r} (table {table!r}) is not a number (pJ)") from None
    if not math.isfinite(number):
        raise AccelergyError(f"{source}: {key} = {value!r} (table {table!r}) is not a finite number (pJ)")
    if number < 0:
        raise AccelergyError(f"{source}: {key} = {value!r} (table {table!r}) is negative "
                             f"(allowed: a finite number >= 0, pJ)")
    return number


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
