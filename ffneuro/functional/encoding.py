"""Label encoding and negative-label sampling (SPEC §1).

A sample x (flattened, standardised) is combined with a label y either by
*overlaying* a one-hot on the first C features (Hinton) or by *concatenating* it
(for inputs whose first features carry signal). The neutral label puts 1/C on every
label entry (one-pass inference).

Image stacks (conv units) need the label everywhere a kernel looks: ``planes`` appends C
constant input channels, plane k holding the label code's entry k at every pixel (the
one-hot spread over the whole image; for the first conv unit this is a per-class bias
map, exact up to the zero padding at the border). ``none`` leaves the label out of the
input: the channel-wise competitive loss takes it in the loss instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CodedBatch:
    """K label codes for the same B samples, kept factored: encoded row k·B + b is
    ``cat([codes[k, b], rest[b]])``. The first unit uses the factoring to multiply the
    shared data part by its weights once for all K codes (an FF step needs K = 2:
    positive and negative; multi-pass inference K = C), which is exact, not an
    approximation: the codes differ only in the first C features."""

    rest: torch.Tensor      # (B, R): the features the label does not cover
    codes: torch.Tensor     # (K, B, C)

    def dense(self) -> torch.Tensor:
        """The encoded batch, (K·B, C + R), codes stacked code-major. Built once per
        batch (the learning step and the event counts read the same tensor: treat it as
        read-only)."""
        cached = self.__dict__.get("_dense")
        if cached is None:
            k, b, _ = self.codes.shape
            rest = self.rest.unsqueeze(0).expand(k, *self.rest.shape).reshape(k * b, -1)
            cached = self.__dict__["_dense"] = torch.cat([self.codes.reshape(k * b, -1), rest], dim=1)
        return cached


@dataclass(frozen=True)
class LabelEncoding:
    mode: str            # "overlay" | "concat" | "planes" | "none"
    num_classes: int
    scale: float = 1.0
    neutral: float | None = None     # value of every label entry for the neutral label (default scale / C)

    def input_features(self, data_features: int) -> int:
        """Width of the first layer's input for flat samples with ``data_features`` features."""
        return data_features + (self.num_classes if self.mode == "concat" else 0)

    def input_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one encoded sample for data samples of ``data_shape``: (D,) flat, or
        (C, H, W) maps (``planes`` adds one channel per class).

        >>> LabelEncoding("planes", 10).input_shape((3, 32, 32)), LabelEncoding("concat", 10).input_shape((64,))
        ((13, 32, 32), (74,))
        """
        if self.mode == "planes":
            if len(data_shape) != 3:
                raise ValueError(f"label planes need image samples (channels, H, W), not shape {data_shape}")
            return (data_shape[0] + self.num_classes, *data_shape[1:])
        if len(data_shape) == 1:
            return (self.input_features(data_shape[0]),)
        if self.mode != "none":
            raise ValueError(f"label encoding {self.mode!r} needs flat samples, not shape {data_shape}")
        return tuple(data_shape)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Combine samples (N, D) (or maps (N, C, H, W)) with integer labels (N,)."""
        return self._combine(x, self.one_hot(y, x.dtype))

    def one_hot(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        code = torch.zeros(y.shape[0], self.num_classes, dtype=dtype, device=y.device)
        return code.scatter_(1, y.view(-1, 1), self.scale)

    def coded(self, x: torch.Tensor, labels: list[torch.Tensor]) -> CodedBatch:
        """The same samples under several labellings, factored (see CodedBatch).
        ``coded(x, [y]).dense()`` equals ``encode(x, y)``. Maps and the label-free
        encoding are not factored: their K codings come stacked, code-major."""
        if self.mode in ("planes", "none"):
            return torch.cat([self.encode(x, y) for y in labels])
        rest = x if self.mode == "concat" else x[:, self.num_classes:]
        return CodedBatch(rest, torch.stack([self.one_hot(y, x.dtype) for y in labels]))

    def encode_neutral(self, x: torch.Tensor) -> torch.Tensor:
        """Every label entry set to the neutral value (scale / C unless given)."""
        value = self.scale / self.num_classes if self.neutral is None else self.neutral
        neutral = torch.full((x.shape[0], self.num_classes), value,
                             dtype=x.dtype, device=x.device)
        return self._combine(x, neutral)

    def _combine(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        if self.mode == "planes":
            planes = code[:, :, None, None].expand(-1, -1, *x.shape[2:])
            return torch.cat([x, planes], dim=1)
        if self.mode == "concat":
            return torch.cat([code, x], dim=1)
        if self.mode == "overlay":
            out = x.clone()
            out[:, : self.num_classes] = code
            return out
        raise ValueError(f"unknown label encoding {self.mode!r} (allowed: overlay, concat, planes, none)")


def choose_encoding(mode: str, x_train: torch.Tensor, num_classes: int) -> str:
    """Resolve ``auto``: overlay only if the first C features are constant in the training
    set (so overwriting them destroys no signal, as for MNIST's blank top-left corner);
    otherwise concatenate."""
    if mode != "auto":
        return mode
    if x_train.shape[1] <= num_classes:
        return "concat"
    first = x_train[:, :num_classes]
    constant = bool((first.max(dim=0).values - first.min(dim=0).values).abs().max() == 0)
    return "overlay" if constant else "concat"


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform over the C−1 wrong labels; never the true one (shift by 1..C−1 mod C)."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator)   # CPU generator, any device
    return (y + shift.to(y.device)) % num_classes


def hard_wrong_labels(y: torch.Tensor, scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample a wrong label in proportion to the model's own class probabilities.

    ``scores`` (N, C) are logits; the true class is masked out, so the sample is never the
    true label. Rows whose remaining probability mass underflows fall back to uniform.
    """
    logits = scores.detach().float().clone()
    logits.scatter_(1, y.view(-1, 1), float("-inf"))
    probs = torch.softmax(logits, dim=1)
    bad = ~torch.isfinite(probs).all(dim=1)
    if bad.any():
        uniform = torch.ones_like(probs[bad])
        uniform.scatter_(1, y[bad].view(-1, 1), 0.0)
        probs[bad] = uniform / uniform.sum(dim=1, keepdim=True)
    return torch.multinomial(probs.cpu(), 1, generator=generator).view(-1).to(y.device)
