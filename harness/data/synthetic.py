"""The embedded `synthetic` datasets: 10 procedurally drawn shape classes (docs/install.md, "Data").

Generated with seed 0, identical on every machine, no files needed. 1x28x28 (`synthetic`)
and 3x32x32 with random colours (`synthetic-cifar`).
"""

from __future__ import annotations

import functools

import numpy as np

def bar(u, v, t):
    """A bar along u of half-length 1 and half-width t."""
    return (np.abs(v) < t) & (np.abs(u) < 1)


def synthetic_shape(k: int, u, v, t):
    """Mask of class k in the shape's own frame (u, v), unit half-extent, thickness t."""
    s2 = np.float32(np.sqrt(0.5))
    a, b = (u + v) * s2, (u - v) * s2          # the frame turned by 45 degrees
    box = np.maximum(np.abs(u), np.abs(v))
    r = np.sqrt(u * u + v * v)
    if k == 0:
        return bar(u, v, t)
    if k == 1:
        return bar(v, u, t)
    if k == 2:
        return bar(a, b, t)
    if k == 3:
        return bar(b, a, t)
    if k == 4:
        return bar(u, v, t) | bar(v, u, t)
    if k == 5:
        return bar(a, b, t) | bar(b, a, t)
    if k == 6:
        return (box < 0.85) & (box > 0.85 - 1.5 * t)
    if k == 7:
        return r < 0.8
    if k == 8:
        return (r < 0.9) & (r > 0.9 - 1.5 * t)
    return bar(u, v - 0.5, t) | bar(u, v + 0.5, t)


def make_synthetic(shape=(1, 28, 28), n_train=20000, n_test=5000, seed=0):
    """Procedural 10-class shapes, each drawn at a random place, size, tilt and contrast.

    Classes: 0 horizontal bar, 1 vertical bar, 2 '/' diagonal, 3 '\\' diagonal,
    4 plus, 5 cross (x), 6 square outline, 7 filled disc, 8 ring, 9 two parallel bars.
    Random translation makes a linear model on pixels weak; the classes are defined by
    local oriented structure that convolutions pick up. With 3 channels, the shape and
    the background get random colours. Deterministic for a given seed.
    """
    c, h, w = shape
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    size = min(h, w)
    scale = rng.uniform(0.22, 0.36, n) * size           # half-extent in pixels
    cy = rng.uniform(scale, h - 1 - scale)
    cx = rng.uniform(scale, w - 1 - scale)
    tilt = rng.uniform(-0.25, 0.25, n)                   # radians
    thick = rng.uniform(0.14, 0.24, n)                   # in units of the half-extent
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = np.empty((n, h, w), np.float32)
    for k in range(10):  # draw each class only where it is needed
        i = np.flatnonzero(labels == k)
        sc = scale[i, None, None].astype(np.float32)
        dy = (yy[None] - cy[i, None, None].astype(np.float32)) / sc
        dx = (xx[None] - cx[i, None, None].astype(np.float32)) / sc
        cos = np.cos(tilt[i, None, None]).astype(np.float32)
        sin = np.sin(tilt[i, None, None]).astype(np.float32)
        u, v = cos * dx + sin * dy, cos * dy - sin * dx
        t = thick[i, None, None].astype(np.float32)
        inside[i] = synthetic_shape(k, u, v, t)
    if c == 1:
        fg = rng.uniform(0.6, 1.0, (n, 1, 1, 1)).astype(np.float32)
        bg = rng.uniform(0.0, 0.25, (n, 1, 1, 1)).astype(np.float32)
    else:
        fg = rng.uniform(0.0, 1.0, (n, c, 1, 1)).astype(np.float32)
        bg = rng.uniform(0.0, 1.0, (n, c, 1, 1)).astype(np.float32)
        # keep the shape visible: push the colours apart where they are too close
        close = np.abs(fg - bg).sum(1, keepdims=True) < 0.6
        fg = np.where(close, 1.0 - bg, fg)
    img = bg + (fg - bg) * inside[:, None]
    img = img + 0.08 * rng.standard_normal(img.shape, dtype=np.float32)
    x = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    y = labels.astype(np.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@functools.lru_cache(maxsize=2)
def synthetic_arrays(shape) -> tuple[np.ndarray, ...]:
    """make_synthetic, generated once per process (suites and `check` load it many times);
    read-only, so no caller can alter the cached copy."""
    arrays = make_synthetic(tuple(shape))
    for a in arrays:
        a.setflags(write=False)
    return arrays
