"""Training-time data augmentation: random integer translations ("jitter").

Hinton (2022) trains on images translated by up to two pixels in each direction. A
translation moves a sample's pixels and fills the vacated border with the background
value; nothing is interpolated, so integer (chip) inputs stay integers. The shifts come
from the run's seeded generator, so a run and its ``--resume`` see the same images.
"""

from __future__ import annotations

import torch


def batch_transform(max_shift: int, data, fill: float = 0.0):
    """The training-batch transform of ``data.augment_shift`` for ``data`` (a Dataset): a
    function (x, generator) → x. Identity when ``max_shift`` is 0. ``fill``: the value a
    blank pixel has after the network's input preparation, so borders look like background."""
    if not max_shift:
        return lambda x, generator: x
    if len(data.feature_shape) not in (2, 3):
        raise ValueError(f"data.augment_shift needs image data; {data.name} samples have shape {data.feature_shape}")
    return lambda x, generator: random_shift(x, data.feature_shape, max_shift, generator, fill)


def random_shift(x: torch.Tensor, feature_shape: tuple[int, ...], max_shift: int,
                 generator: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """Translate every sample of ``x`` (N, D) by its own random (dy, dx) in [−s, s]².

    ``feature_shape`` is the per-sample shape before flattening: (H, W) or (C, H, W);
    all channels of a sample move together. Returns a new (N, D) tensor.
    """
    if max_shift == 0:
        return x
    if len(feature_shape) not in (2, 3):
        raise ValueError(f"translation needs image data (H, W) or (C, H, W), not feature shape {feature_shape}")
    n = x.shape[0]
    shifts = torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator).to(x.device)
    return shift_images(x, feature_shape, shifts[0], shifts[1], fill)


def shift_images(x: torch.Tensor, feature_shape: tuple[int, ...], dy: torch.Tensor, dx: torch.Tensor,
                 fill: float = 0.0) -> torch.Tensor:
    """Translate sample k of ``x`` (N, D) (or maps (N, C, H, W)) by ``dy[k]`` rows down and
    ``dx[k]`` columns right; the result has the shape of ``x``.

    Pixels moved out of the frame are dropped; the vacated ones take ``fill``.
    """
    h, w = feature_shape[-2:]
    c = feature_shape[0] if len(feature_shape) == 3 else 1
    n = x.shape[0]
    s = int(max(dy.abs().max().item(), dx.abs().max().item())) if n else 0
    img = x.reshape(n, c, h, w)
    padded = torch.full((n, c, h + 2 * s, w + 2 * s), fill, dtype=x.dtype, device=x.device)
    padded[:, :, s:s + h, s:s + w] = img
    # output row r of sample k reads padded row r + s − dy[k] (and likewise for columns)
    rows = torch.arange(h, device=x.device)[None, :] + s - dy[:, None]          # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + s - dx[:, None]          # (N, W)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * s))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return out.reshape(x.shape)
