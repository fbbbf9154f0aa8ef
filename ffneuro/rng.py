"""Named random streams: every source of randomness in a run has its own generator,
derived from the run's seed and the stream's name, so that a change in one (say, the
number of negatives drawn) does not shift another (the data order), and a unit can run in
its own process with its own stream.

Streams of a training run (saved in the checkpoint, restored on ``--resume``):
``order`` (epoch permutations), ``augment`` (translations), ``negatives`` (wrong labels),
``encoder`` (the spike encoder of the data path), ``calibration`` (the batch a chip
calibrates its formats on), ``unit<i>`` (unit i's initial weights and its stochastic
rounding). Derived afresh from the seed, never saved: ``probe`` (the entropy probe's
samples and negatives), ``statistics<epoch>`` (the training samples that re-estimate
batch-norm statistics after each epoch). Independent of the run: ``inference_generator()`` (a random spike
encoder at inference), so any checkpoint evaluates the same way every time.
"""

from __future__ import annotations

import hashlib

import torch

TRAIN_STREAMS = ("order", "augment", "negatives", "encoder", "calibration")
INFERENCE_SEED = 12345


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit seed for stream ``name`` of run ``seed`` (SHA-256 of both: stable across
    platforms and Python versions).

    >>> stream_seed(0, "order") != stream_seed(0, "negatives") != stream_seed(1, "order")
    True
    """
    digest = hashlib.sha256(f"ffneuro:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, name))


def inference_generator() -> torch.Generator:
    """The generator of a random spike encoder at inference (fixed: evaluation is reproducible)."""
    return torch.Generator().manual_seed(INFERENCE_SEED)


class Streams:
    """The named generators of one training run."""

    def __init__(self, seed: int, n_units: int):
        self.seed = seed
        self.names = [*TRAIN_STREAMS, *(f"unit{i}" for i in range(n_units))]
        self._gens = {name: generator(seed, name) for name in self.names}

    def __getitem__(self, name: str) -> torch.Generator:
        return self._gens[name]

    def unit(self, i: int) -> torch.Generator:
        return self._gens[f"unit{i}"]

    @property
    def units(self) -> list[torch.Generator]:
        return [self.unit(i) for i in range(len(self.names) - len(TRAIN_STREAMS))]

    def probe(self) -> torch.Generator:
        return generator(self.seed, "probe")

    def state(self) -> dict[str, torch.Tensor]:
        """Checkpoint tensors ``rng.<name>``."""
        return {f"rng.{name}": g.get_state() for name, g in self._gens.items()}

    def restore(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        missing = [n for n in self.names if f"rng.{n}" not in tensors]
        if missing:
            raise ValueError(f"{source}: a checkpoint of an older ffneuro layout (one random stream for the whole "
                             f"run, no rng.{missing[0]}): it cannot resume exactly; evaluate or export it, "
                             "or train a new run")
        for name, g in self._gens.items():
            g.set_state(tensors[f"rng.{name}"])
