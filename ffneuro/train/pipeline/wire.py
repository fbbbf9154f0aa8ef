"""The messages stages send each other: one batch per ``Message`` over a ``Link`` (at most
``DEPTH`` in flight), and bytes or JSON between ranks for state and metrics."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ffneuro.train.pipeline.plan import PipelineError

DEPTH = 4                 # batches in flight per link
TAG_BATCH, TAG_REFRESH, TAG_STATE = 0, 1, 2


NEUTRAL, HEAD, TRAIN, SEEN = 1, 2, 3, 4


@dataclass
class Message:
    """One batch as it leaves a stage: labels, the neutral activity of its last unit and
    the head's inputs so far (with a head), the learning pass's activity (when a later unit
    still takes part), and the (positive, negative) goodness of every unit so far (CFF)."""

    y: torch.Tensor
    neutral: torch.Tensor | None = None
    head: list[torch.Tensor] = field(default_factory=list)
    train: torch.Tensor | None = None
    seen: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(header int64: batch, count, then kind, ndim, shape of each tensor, then the
        labels; payload float32: the tensors flattened, in order)."""
        parts = ([(NEUTRAL, self.neutral)] if self.neutral is not None else []) + [(HEAD, h) for h in self.head] \
            + ([(TRAIN, self.train)] if self.train is not None else []) \
            + [(SEEN, g) for pair in self.seen for g in pair]
        header = [self.y.shape[0], len(parts)]
        for kind, t in parts:
            if t.dtype != torch.float32:
                raise PipelineError(f"a stage's activity has dtype {t.dtype}; the pipeline sends float32 only")
            header += [kind, t.dim(), *t.shape]
        head = torch.tensor(header + self.y.tolist(), dtype=torch.int64)
        payload = torch.cat([t.reshape(-1) for _, t in parts]) if parts else torch.empty(0)
        return head, payload

    @classmethod
    def decode(cls, header: torch.Tensor, payload: torch.Tensor) -> "Message":
        h = header.tolist()
        b, count, pos, off = h[0], h[1], 2, 0
        msg = cls(y=torch.empty(0, dtype=torch.long))
        seen: list[torch.Tensor] = []
        for _ in range(count):
            kind, nd = h[pos], h[pos + 1]
            shape = h[pos + 2:pos + 2 + nd]
            pos += 2 + nd
            size = 1
            for s in shape:
                size *= s
            t = payload[off:off + size].view(shape)
            off += size
            if kind == NEUTRAL:
                msg.neutral = t
            elif kind == HEAD:
                msg.head.append(t)
            elif kind == TRAIN:
                msg.train = t
            else:
                seen.append(t)
        msg.y = torch.tensor(h[pos:pos + b], dtype=torch.long)
        msg.seen = list(zip(seen[0::2], seen[1::2]))
        return msg


class Link:
    """Messages from one stage to the next: sent asynchronously, at most ``depth`` in flight."""

    def __init__(self, peer: int, depth: int = DEPTH):
        self.peer, self.depth = peer, depth
        self.pending: deque = deque()
        self.wait_s = 0.0                    # time spent waiting for the peer (a full pipe, or no batch yet)

    def send(self, msg: Message) -> None:
        header, payload = msg.encode()
        sizes = torch.tensor([header.numel(), payload.numel()], dtype=torch.int64)
        works = [dist.isend(t, self.peer, tag=TAG_BATCH) for t in (sizes, header, payload)]
        self.pending.append((works, (sizes, header, payload)))
        while len(self.pending) > self.depth:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        t0 = time.perf_counter()
        for w in self.pending.popleft()[0]:
            w.wait()
        self.wait_s += time.perf_counter() - t0

    def flush(self) -> None:
        while self.pending:
            self._wait_oldest()

    def recv(self) -> Message:
        sizes = torch.empty(2, dtype=torch.int64)
        t0 = time.perf_counter()
        dist.recv(sizes, self.peer, tag=TAG_BATCH)
        self.wait_s += time.perf_counter() - t0
        header = torch.empty(int(sizes[0]), dtype=torch.int64)
        payload = torch.empty(int(sizes[1]), dtype=torch.float32)
        dist.recv(header, self.peer, tag=TAG_BATCH)
        dist.recv(payload, self.peer, tag=TAG_BATCH)
        return Message.decode(header, payload)


def send_bytes(data: bytes, dst: int, tag: int = TAG_STATE) -> None:
    dist.send(torch.tensor([len(data)], dtype=torch.int64), dst, tag=tag)
    if data:
        dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8), dst, tag=tag)


def recv_bytes(src: int, tag: int = TAG_STATE) -> bytes:
    n = torch.empty(1, dtype=torch.int64)
    dist.recv(n, src, tag=tag)
    buf = torch.empty(int(n), dtype=torch.uint8)
    if int(n):
        dist.recv(buf, src, tag=tag)
    return buf.numpy().tobytes()


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """``data`` from rank ``src`` to every rank (the others pass None)."""
    n = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
    dist.broadcast(n, src)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(int(n), dtype=torch.uint8)
    if int(n):
        dist.broadcast(buf, src)
    return buf.numpy().tobytes()


def broadcast_json(obj, src: int = 0):
    return json.loads(broadcast_bytes(json.dumps(obj).encode() if dist.get_rank() == src else None, src))
