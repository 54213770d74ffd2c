"""The map as a density image: every point binned into pixels, each pixel coloured by its points' mean value or
majority category, for maps too large for one WebGL scatter trace in the browser.

A Scattergl trace stops being responsive in chromium somewhere past a hundred thousand points (measured in
benchmarks/bench_density.py); above `threshold()` rows the Map page draws this image under a small sample of the
points instead. The binning is `numpy.bincount` over flat pixel indices (exact, about 0.1 s for a million points on
one core); datashader, the usual library for this, costs about 5 s to import and 4 s of numba compilation on each
server start here, more than the whole budget of opening a million-point map.

Pixel (row, col) covers x in [x0 + col * dx, x0 + (col + 1) * dx) and y in (y1 - (row + 1) * dy, y1 - row * dy]:
row 0 is the top of the image (largest y), as an image is drawn; the window's right and bottom edges belong to the
last column and row. Points outside the window or with NaN coordinates fall in no pixel.
"""
from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFAULT_THRESHOLD", "threshold", "Window", "window_of", "pixel_index", "mean_image", "majority_image",
           "shade_mean", "shade_majority", "png_data_uri"]

DEFAULT_THRESHOLD = 100_000  # rows; see benchmarks/RESULTS.md ("Map: Scattergl or a density image")
ENV_THRESHOLD = "WINNOW_DENSITY_ROWS"


def threshold() -> int:
    """Rows above which the map is drawn as a density image: WINNOW_DENSITY_ROWS when set, else DEFAULT_THRESHOLD."""
    raw = os.environ.get(ENV_THRESHOLD, "").strip()
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            pass
    return DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Window:
    """A rectangle of the map in data coordinates (x0 < x1, y0 < y1)."""

    x0: float
    x1: float
    y0: float
    y1: float

    def contains(self, x: NDArray[np.floating], y: NDArray[np.floating]) -> NDArray[np.bool_]:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)


def window_of(x: NDArray[np.floating], y: NDArray[np.floating], *, pad: float = 0.02) -> Window:
    """The finite points' bounding box, padded by `pad` of its size on each side (a unit box when there are none)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return Window(-1.0, 1.0, -1.0, 1.0)
    x0, x1 = float(np.min(x[ok])), float(np.max(x[ok]))
    y0, y1 = float(np.min(y[ok])), float(np.max(y[ok]))
    px, py = max(x1 - x0, 1e-9) * pad, max(y1 - y0, 1e-9) * pad
    return Window(x0 - px, x1 + px, y0 - py, y1 + py)


def pixel_index(x: NDArray[np.floating], y: NDArray[np.floating], window: Window, width: int, height: int
                ) -> NDArray[np.int64]:
    """Flat pixel index (row * width + col, row 0 at the top) of each point; -1 outside the window or NaN."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = window.contains(x, y)  # NaN compares False: outside
    col = np.floor((x - window.x0) / (window.x1 - window.x0) * width)
    row = np.floor((window.y1 - y) / (window.y1 - window.y0) * height)
    col = np.clip(np.nan_to_num(col, nan=0), 0, width - 1).astype(np.int64)
    row = np.clip(np.nan_to_num(row, nan=0), 0, height - 1).astype(np.int64)
    return np.where(inside, row * width + col, -1)


def mean_image(pix: NDArray[np.integer], values: NDArray[np.floating], width: int, height: int
               ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(count, mean): points per pixel, and the mean of their finite values (NaN where a pixel has none); both
    (height, width)."""
    ok = pix >= 0
    p = pix[ok]
    v = np.asarray(values, dtype=np.float64)[ok]
    npx = width * height
    count = np.bincount(p, minlength=npx)
    fin = np.isfinite(v)
    n_v = np.bincount(p[fin], minlength=npx)
    s_v = np.bincount(p[fin], weights=v[fin], minlength=npx)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_v > 0, s_v / np.maximum(n_v, 1), np.nan)
    return count.reshape(height, width), mean.reshape(height, width)


def majority_image(pix: NDArray[np.integer], codes: NDArray[np.integer], k: int, width: int, height: int
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(count, majority): points per pixel, and the most frequent code 0..k-1 among them (the lowest code on a tie;
    -1 where a pixel is empty); both (height, width). Codes outside 0..k-1 count as points but never win."""
    ok = pix >= 0
    p = pix[ok]
    c = np.asarray(codes, dtype=np.int64)[ok]
    npx = width * height
    count = np.bincount(p, minlength=npx)
    valid = (c >= 0) & (c < k)
    per = np.bincount(p[valid] * k + c[valid], minlength=npx * k).reshape(npx, k)
    majority = np.where(per.max(axis=1) > 0, per.argmax(axis=1), -1)
    return count.reshape(height, width), majority.reshape(height, width)


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.strip()
    if c.startswith("#"):
        c = c[1:]
        if len(c) == 3:
            c = "".join(ch * 2 for ch in c)
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    if c.startswith("rgb"):
        parts = c[c.index("(") + 1:c.rindex(")")].split(",")
        return tuple(int(float(v)) for v in parts[:3])  # type: ignore[return-value]
    raise ValueError(f"unsupported colour {colour!r}: use '#rrggbb' or 'rgb(r, g, b)'")


def _alpha(count: NDArray[np.integer], floor: float = 0.45) -> NDArray[np.uint8]:
    """Opacity per pixel: 0 where empty, rising with log(count) from `floor` to 1 at the densest pixel."""
    top = max(int(count.max(initial=0)), 1)
    a = floor + (1 - floor) * np.log1p(count) / np.log1p(top)
    return np.where(count > 0, np.round(255 * a), 0).astype(np.uint8)


def shade_mean(count: NDArray[np.integer], mean: NDArray[np.floating], colorscale: Sequence[Sequence],
               cmin: float, cmax: float) -> NDArray[np.uint8]:
    """(height, width, 4) RGBA: each pixel's mean mapped through a plotly-style colorscale [(pos, colour), ...]
    between cmin and cmax (clipped), opacity from its count; pixels without a finite mean are transparent."""
    pos = np.asarray([float(s[0]) for s in colorscale])
    rgb = np.asarray([_rgb(str(s[1])) for s in colorscale], dtype=np.float64)
    span = (cmax - cmin) or 1.0
    t = np.clip((np.nan_to_num(mean, nan=cmin) - cmin) / span, 0.0, 1.0)
    out = np.zeros(count.shape + (4,), dtype=np.uint8)
    for ch in range(3):
        out[..., ch] = np.round(np.interp(t, pos, rgb[:, ch])).astype(np.uint8)
    out[..., 3] = np.where(np.isfinite(mean), _alpha(count), 0)
    return out


def shade_majority(count: NDArray[np.integer], majority: NDArray[np.integer], colours: Sequence[str]
                   ) -> NDArray[np.uint8]:
    """(height, width, 4) RGBA: each pixel in the colour of its majority code (colours[code]), opacity from its
    count; empty pixels are transparent."""
    lut = np.asarray([_rgb(c) for c in colours] + [(0, 0, 0)], dtype=np.uint8)
    out = np.zeros(count.shape + (4,), dtype=np.uint8)
    out[..., :3] = lut[np.where(majority >= 0, np.minimum(majority, len(colours)), len(colours))]
    out[..., 3] = np.where(majority >= 0, _alpha(count), 0)
    return out


def png_data_uri(rgba: NDArray[np.uint8]) -> str:
    """A `data:image/png;base64,...` URI of an RGBA image (plotly's layout.images take one as `source`)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
