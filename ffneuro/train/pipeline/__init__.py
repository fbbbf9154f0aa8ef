"""Pipeline-parallel FF training on torch.distributed: each stage (one or more consecutive
units) is a process that learns its own units on every batch and hands the batch's
detached activities on to the next stage, so several batches are in flight at once.

    stage 1 (rank 0)                      stage 2                      stage S (last)
    data order, jitter, negatives,  ──▶   its units: neutral pass,  ──▶  …  its units, then
    its units: neutral pass, scout,       scout, local steps              the one-pass head
    local steps                           (updates its own units)
        ▲          at the end of every epoch: each stage's units, optimiser and unit<i>
        └───────── streams to rank 0, which evaluates, checkpoints and writes the run dir

Per batch, each stage sends the next one message (``Message``): the labels, the neutral
pass's activity (for the head) and the head's inputs so far, the learning pass's
positive+negative activity, and under CFF the goodness of every unit so far. At most
``DEPTH`` messages per link are in flight, so memory does not grow.

What is exact. With γ over earlier units (or plain FF) every unit sees the same inputs,
in the same order, from the same weights and random streams as in one process, so the
weights are **bit for bit** those of the single-process run with one thread per stage
(the float kernels of a different thread count may reorder sums). CFF's γ over later or
all units needs the goodness of units that have not yet seen the batch: here a stage
computes it from its own copies of the later stages' units, refreshed every R batches
(``gamma_refresh``: the number of stages by default; the later stage sends its weights
after finishing batch g − R, the earlier stage loads them before batch g), so those
members of γ come from weights R − 1 to 2R − 2 batches older than the single process's
frozen copy (the initial weights before batch R). R = 1 is the single-process rule (to
float reordering), with the stages taking turns. See docs/pipeline.md.

Start: ``ffneuro train --stages N`` (``launch``: N local processes with an env
rendezvous on a free port) or ``torchrun --nproc-per-node N --no-python ffneuro train --stages N``
(``run_stage`` in each torchrun process; several machines with ``--nnodes`` and a
rendezvous endpoint). A failing stage brings the others down: its one-line error is
reported and the rest are stopped.
"""

from ffneuro.train.pipeline.launch import (first_error, forward_stderr, free_port, launch, launched, leave,
                                         run_stage)
from ffneuro.train.pipeline.plan import (PeerLost, PipelineError, check_supported, gamma_refresh, split_stages,
                                         unit_costs)
from ffneuro.train.pipeline.stage import Stage
from ffneuro.train.pipeline.wire import Link, Message

__all__ = ["Link", "Message", "PeerLost", "PipelineError", "Stage", "check_supported", "first_error",
           "forward_stderr", "free_port", "gamma_refresh", "launch", "launched", "leave", "run_stage",
           "split_stages", "unit_costs"]
