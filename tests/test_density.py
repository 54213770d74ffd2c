"""core.density: the large map's image, checked against a brute-force count per pixel."""
from __future__ import annotations

import base64
import io
from collections import Counter

import numpy as np
import pytest

from core import density

W, H = 7, 5
WIN = density.Window(-1.0, 2.5, -2.0, 1.0)


def _points(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 3.0, n)  # some fall outside the window
    y = rng.uniform(-2.5, 1.5, n)
    x[:5] = np.nan
    y[5:8] = np.nan
    x[8], y[8] = WIN.x1, WIN.y0  # the bottom-right corner belongs to the last column and row
    x[9], y[9] = WIN.x0, WIN.y1  # the top-left corner to the first
    return x, y, rng


def _brute(x, y):
    """Per pixel (row 0 at the top), the indices of the points inside it, by explicit bounds."""
    dx, dy = (WIN.x1 - WIN.x0) / W, (WIN.y1 - WIN.y0) / H
    out = {}
    for r in range(H):
        for c in range(W):
            xl, xh = WIN.x0 + c * dx, WIN.x0 + (c + 1) * dx
            yh, yl = WIN.y1 - r * dy, WIN.y1 - (r + 1) * dy
            inx = (x >= xl) & ((x < xh) | ((c == W - 1) & (x <= WIN.x1)))
            iny = (y <= yh) & ((y > yl) | ((r == H - 1) & (y >= WIN.y0)))
            out[r, c] = np.flatnonzero(inx & iny)
    return out


def test_pixel_means_equal_a_brute_force_count():
    x, y, rng = _points()
    v = rng.normal(size=len(x))
    v[20:40] = np.nan  # a NaN value counts as a point but not in the mean
    pix = density.pixel_index(x, y, WIN, W, H)
    count, mean = density.mean_image(pix, v, W, H)
    brute = _brute(x, y)
    assert count.sum() == sum(len(i) for i in brute.values()) < len(x)  # outside and NaN points are dropped
    assert pix[8] == W * H - 1 and pix[9] == 0
    for (r, c), idx in brute.items():
        assert count[r, c] == len(idx)
        vals = v[idx][np.isfinite(v[idx])]
        if len(vals):
            assert mean[r, c] == pytest.approx(vals.mean(), rel=1e-12, abs=1e-12)
        else:
            assert np.isnan(mean[r, c])


def test_pixel_majorities_equal_a_brute_force_count_ties_to_the_lowest_code():
    x, y, rng = _points(seed=5)
    k = 4
    codes = rng.integers(0, k, len(x))
    codes[50:60] = -1  # uncoded: counted, never the majority
    pix = density.pixel_index(x, y, WIN, W, H)
    count, major = density.majority_image(pix, codes, k, W, H)
    for (r, c), idx in _brute(x, y).items():
        assert count[r, c] == len(idx)
        tally = Counter(int(code) for code in codes[idx] if 0 <= code < k)
        if not tally:
            assert major[r, c] == -1
            continue
        top = max(tally.values())
        assert major[r, c] == min(code for code, m in tally.items() if m == top)


def test_shading_uses_the_map_colours_and_leaves_empty_pixels_transparent():
    count = np.array([[0, 1, 10]])
    major = np.array([[-1, 0, 2]])
    rgba = density.shade_majority(count, major, ["#ff0000", "#00ff00", "#0000ff"])
    assert rgba[0, 0, 3] == 0
    assert tuple(rgba[0, 1, :3]) == (255, 0, 0) and tuple(rgba[0, 2, :3]) == (0, 0, 255)
    assert 0 < rgba[0, 1, 3] < rgba[0, 2, 3] == 255  # denser pixels are more opaque

    scale = [(0.0, "#b2182b"), (0.5, "#d0d0d0"), (1.0, "#2166ac")]
    mean = np.array([[np.nan, -1.0, 0.0, 5.0]])
    rgba = density.shade_mean(np.array([[3, 3, 3, 3]]), mean, scale, -1.0, 1.0)
    assert rgba[0, 0, 3] == 0  # no finite mean: transparent
    assert tuple(rgba[0, 1, :3]) == (0xb2, 0x18, 0x2b)
    assert tuple(rgba[0, 2, :3]) == (0xd0, 0xd0, 0xd0)
    assert tuple(rgba[0, 3, :3]) == (0x21, 0x66, 0xac)  # clipped at cmax


def test_png_round_trip():
    from PIL import Image

    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[1, 2] = (10, 20, 30, 200)
    uri = density.png_data_uri(rgba)
    assert uri.startswith("data:image/png;base64,")
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert img.shape == (4, 6, 4) and (img == rgba).all()


def test_threshold_from_the_environment(monkeypatch):
    monkeypatch.delenv(density.ENV_THRESHOLD, raising=False)
    assert density.threshold() == density.DEFAULT_THRESHOLD
    monkeypatch.setenv(density.ENV_THRESHOLD, "1234")
    assert density.threshold() == 1234
    monkeypatch.setenv(density.ENV_THRESHOLD, "lots")
    assert density.threshold() == density.DEFAULT_THRESHOLD


def test_window_of_ignores_points_without_both_coordinates():
    w = density.window_of(np.array([0.0, np.nan, 10.0, 4.0]), np.array([1.0, 5.0, np.nan, 3.0]), pad=0.1)
    assert (w.x0, w.x1, w.y0, w.y1) == pytest.approx((-0.4, 4.4, 0.8, 3.2))
