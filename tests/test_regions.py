"""A kernel per region (kxnet.inference.regions): the grid, its smoothing and interpolation, and
the upscaler giving each tile its region's kernel on a photo blurred unevenly."""

import json
import math

import numpy as np
import pytest
import torch

from kxnet.cli import main
from kxnet.degrade import degrade
from kxnet.inference.regions import RegionKernels, draw_kernel_map, region_starts
from kxnet.inference.upscaler import Upscaler
from kxnet.io import Image, from_tensor, read_image, write_image
from kxnet.kernels import anisotropic_gaussian, isotropic_gaussian
from kxnet.metrics import gaussian_fit


def _grid(widths):
    """A ny×nx grid of 2-stage kernel stacks, isotropic of the given widths."""
    return torch.stack([torch.stack([torch.stack([isotropic_gaussian(11, w)] * 2) for w in row]) for row in widths])


def test_region_starts_cover_with_half_overlap():
    assert region_starts(50, 64) == [0]
    starts = region_starts(200, 64)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(b - a <= 32 for a, b in zip(starts, starts[1:]))


def test_smoothing_interpolation_and_spread():
    raw = _grid([[1.0, 1.0, 3.0], [1.0, 1.0, 3.0]])
    g = RegionKernels.from_estimates(raw, [0, 32], [0, 32, 64], 64)
    assert torch.allclose(g.kernels.sum(dim=(-2, -1)), torch.ones(2, 3, 2))
    width = lambda k: math.sqrt(gaussian_fit(k.numpy())["sigma_x"] * gaussian_fit(k.numpy())["sigma_y"])
    # smoothing pulls the middle column towards the wide right column, and not past it
    assert width(raw[0, 1, -1]) < width(g.kernels[0, 1, -1]) < width(g.kernels[0, 2, -1])
    # at a crop's centre: that crop's kernels; half-way: between the two
    np.testing.assert_allclose(g.at(32, 32)[-1][0], g.kernels[0, 0, -1], atol=1e-7)
    mid = g.at(32, 48)[-1][0]
    assert width(g.kernels[0, 0, -1]) < width(mid) < width(g.kernels[0, 1, -1])
    assert len(g.at(0, 0)) == 2 and g.at(0, 0)[0].shape == (1, 11, 11)
    flat = RegionKernels.from_estimates(_grid([[2.0, 2.0], [2.0, 2.0]]), [0, 32], [0, 32], 64)
    assert flat.spread == pytest.approx(0, abs=1e-6) and g.spread > 0.1
    assert flat.describe(2)[0]["sigma_x"] == pytest.approx(2.0, abs=0.05)
    picture = draw_kernel_map(np.zeros((96, 128, 3), np.float32), g, width=256)
    assert picture.shape == (192, 256, 3) and picture.max() > 0


@pytest.fixture(scope="module")
def split_photo():
    """The bundled chart, degraded ×2 by a narrow kernel on the left half and a wide one on the right."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    hr = torch.from_numpy(read_image(repo / "examples" / "chart_x4.png").rgb).permute(2, 0, 1)
    hr = torch.nn.functional.interpolate(hr[None], scale_factor=2, mode="bicubic")[0].clamp(0, 1)   # 192² HR
    narrow, wide = anisotropic_gaussian(11, 0.8, 1.6, 0.0), anisotropic_gaussian(11, 2.0, 4.0, math.pi / 2)
    a, b = degrade(hr, narrow, 2), degrade(hr, wide, 2)
    return torch.cat([a[..., :48], b[..., 48:]], dim=-1)


def test_upscaler_gives_each_region_its_kernel(split_photo):
    up = Upscaler("kxnet_x2.setting2", "cpu", regions="on", region_size=40)
    out, k, info, _ = up.run(Image(rgb=from_tensor(split_photo)))
    assert out.rgb.shape == (192, 192, 3) and np.isfinite(out.rgb).all()
    regions = info["regions"]
    assert regions["used"] and info["kernel_mode"] == "regions" and regions["grid"] == list(up.last_regions.shape)
    g = up.last_regions
    widths = [[math.sqrt(gaussian_fit(g.raw[i, j, -1].numpy())["sigma_x"] * gaussian_fit(g.raw[i, j, -1].numpy())["sigma_y"])
               for j in range(g.shape[1])] for i in range(g.shape[0])]
    left, right = np.mean([row[0] for row in widths]), np.mean([row[-1] for row in widths])
    assert right > left + 0.5, (left, right)          # the wide kernel read on the right, the narrow on the left
    # "off" and a photo too small for "auto" keep one kernel
    assert Upscaler("kxnet_x2.setting2", "cpu", regions="off").run(Image(rgb=from_tensor(split_photo)))[2]["regions"] is None
    assert Upscaler("kxnet_x2.setting2", "cpu", region_size=64).run(Image(rgb=from_tensor(split_photo)))[2]["regions"] is None
    with pytest.raises(ValueError, match="regions must be"):
        Upscaler("kxnet_x2.setting2", "cpu", regions="sometimes")


def test_each_tile_takes_its_regions_kernel_and_no_seam_shows(split_photo, monkeypatch):
    """Each tile runs with the kernels at its centre — narrow on the left, wide on the right —
    and the picture crosses from one tile to the next gradually, never in a step."""
    up = Upscaler("kxnet_x2.setting2", "cpu", regions="on", region_size=40)
    asked, tiles = [], {}
    at = RegionKernels.at
    monkeypatch.setattr(RegionKernels, "at", lambda self, y, x: asked.append((y, x, at(self, y, x))) or asked[-1][2])
    forward = up._forward

    def recording(y, kernel=None, *a, **k):
        out = forward(y, kernel, *a, **k)
        if kernel is not None:
            cy, cx, given = asked[-1]
            assert kernel is given           # the kernels of the tile's centre, as the regions gave them
            tiles[(int(cy) - 20, int(cx) - 20)] = (kernel, out.sr[0].float().permute(1, 2, 0).numpy())
        return out

    monkeypatch.setattr(up, "_forward", recording)
    out, _, info, _ = up.run(Image(rgb=from_tensor(split_photo)))
    ys, xs = sorted({y for y, _ in tiles}), sorted({x for _, x in tiles})
    assert info["kernel_mode"] == "regions" and len(tiles) == info["tiles"] == 9 and ys == xs == [0, 28, 56]

    width = lambda k: math.sqrt(gaussian_fit(k.numpy())["sigma_x"] * gaussian_fit(k.numpy())["sigma_y"])
    widths = {pos: width(k[-1][0]) for pos, (k, _) in tiles.items()}
    # measured: 1.11–1.25 px on the left (the narrow kernel fits 1.13), 2.16–2.22 on the right (the
    # wide one 2.33), 1.63–1.70 for the tiles over the split, in every row
    for y in ys:
        left, middle, right = (widths[(y, x)] for x in xs)
        assert left < 1.4 and right > 2.0 and left < middle < right, (y, left, middle, right)

    # No seam: where two tiles overlap, the output is a blend a·(1 − w) + b·w whose weight w,
    # fitted column by column over the rows only that tile row covers (and pixels the final clip
    # to [0, 1] leaves alone), rises from 0 to 1 across the overlap by at most 0.1 per HR column
    # (measured 0.065 at every seam: the ramp's steepest, π/2 over 24 columns); stitching the tiles
    # without the ramps makes it jump by 1 at one column. (The mean gradient across the seams
    # against that elsewhere cannot tell on this chart, whose own edges dominate: 1.33 blended,
    # 1.38 stitched.)
    rgb = out.rgb
    for i, y0 in enumerate(ys):
        r0, r1 = (ys[i - 1] + 40 if i else 0), (ys[i + 1] if i + 1 < len(ys) else 96)
        for xa, xb in zip(xs, xs[1:]):
            a, b = tiles[(y0, xa)][1], tiles[(y0, xb)][1]
            w = []
            for c in range(2 * xb, 2 * (xa + 40)):
                ta, tb = a[2 * (r0 - y0):2 * (r1 - y0), c - 2 * xa], b[2 * (r0 - y0):2 * (r1 - y0), c - 2 * xb]
                kept = (ta >= 0) & (ta <= 1) & (tb >= 0) & (tb <= 1)
                d = (tb - ta)[kept]
                w.append(float(((rgb[2 * r0:2 * r1, c] - ta)[kept] * d).sum() / (d ** 2).sum()))
            assert w[0] < 0.05 and w[-1] > 0.95 and max(abs(np.diff(w))) < 0.1, (y0, xa, np.round(w, 3))


def test_sr_writes_the_kernel_map_and_lists_the_regions(split_photo, tmp_path):
    src = tmp_path / "split.png"
    write_image(src, from_tensor(split_photo))
    assert main(["sr", str(src), "-o", str(tmp_path / "out"), "--model", "kxnet_x2.setting2", "--regions", "on",
                 "--region-size", "40", "--save-kernel", "--quiet"]) == 0
    side = json.loads((tmp_path / "out" / "split_x2.json").read_text())
    regions = side["kernel"]["regions"]
    assert regions["used"] and len(regions["regions"]) == regions["grid"][0] * regions["grid"][1]
    assert {"x", "y", "width", "sigma_x", "sigma_y", "theta_deg"} <= set(regions["regions"][0])
    assert side["files"]["kernel_map"] and (tmp_path / "out" / "split_x2_kernel_map.png").stat().st_size > 0


def test_auto_decides_from_the_probes_and_completes_the_grid_only_where_they_disagree(split_photo, monkeypatch):
    import kxnet.inference.upscaler as upscaler

    photo = Image(rgb=from_tensor(split_photo))
    up = Upscaler("kxnet_x2.setting2", "cpu", regions="auto", region_size=40)   # 96² holds 2×2 regions
    crops = []
    forward = up._forward
    monkeypatch.setattr(up, "_forward", lambda y, *a, **k: (crops.append(tuple(y.shape[-2:])), forward(y, *a, **k))[1])
    # probes that agree: one kernel, the grid never estimated (two probe crops, then the whole photo)
    monkeypatch.setattr(upscaler, "probe_spread", lambda scale: 10.0)
    crops.clear()
    info = up.run(photo)[2]
    probes = info["regions"]["probes"]
    assert len(probes) == 2 and probes[0][0] <= 1 and probes[0][1] <= 1 and min(probes[1]) >= 2   # TL, BR quarters
    assert info["regions"]["spread"] is None
    assert not info["regions"]["used"] and info["kernel_mode"] == "blind" and up.last_regions is None
    assert crops == [(40, 40), (40, 40), (96, 96)]
    # probes that disagree: the grid is completed (the probes not estimated twice) and decides
    monkeypatch.setattr(upscaler, "probe_spread", lambda scale: 0.0)
    spreads = {}
    for threshold in (0.0, 10.0):
        monkeypatch.setattr(upscaler, "uniform_spread", lambda scale, t=threshold: t)
        crops.clear()
        info = up.run(photo)[2]
        spreads[threshold] = info["regions"]["spread"]
        assert info["regions"]["used"] == (threshold == 0.0)
        assert info["kernel_mode"] == ("regions" if threshold == 0.0 else "blind")
        assert crops.count((40, 40)) == 16 + (info["tiles"] if threshold == 0.0 else 0)   # 4×4 grid, its tiles
    assert spreads[0.0] == spreads[10.0] > 0


def test_probes_are_the_most_textured_cell_of_each_quarter():
    from kxnet.inference.regions import probe_cells

    lr = torch.zeros(1, 3, 256, 192)          # a 7×5 grid of 64-px cells at a stride of 32
    ys, xs = region_starts(256, 64), region_starts(192, 64)
    lr[..., ys[1]:ys[1] + 64, xs[1]:xs[1] + 64] = torch.rand(3, 64, 64)       # top-left quarter
    lr[..., ys[5] + 16:ys[5] + 48, xs[4]:xs[4] + 64] = torch.rand(3, 32, 64)   # bottom-right
    lr[..., ys[3]:ys[3] + 64, xs[2]:xs[2] + 64] = torch.rand(3, 64, 64)       # the middle cell: in no quarter
    cells = probe_cells(lr, 64)
    assert cells[:2] == [(1, 1), (5, 4)]
    assert len(cells) == 2                      # 256×192 pays for 0.1·49152/4096 < 2 crops: two
    assert len(probe_cells(torch.zeros(1, 3, 512, 512), 64)) == 4 == len(set(probe_cells(torch.zeros(1, 3, 512, 512), 64)))


def test_auto_at_the_real_thresholds_uses_regions_on_a_split_photo_and_not_on_a_uniform_one(split_photo):
    from kxnet.inference.regions import probe_spread, uniform_spread

    up = Upscaler("kxnet_x2.setting2", "cpu", regions="auto", region_size=40)
    split = up.run(Image(rgb=from_tensor(split_photo)))[2]["regions"]
    assert split["used"] and split["probe_spread"] >= probe_spread(2) and split["spread"] >= uniform_spread(2)
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    hr = torch.from_numpy(read_image(repo / "examples" / "chart_x4.png").rgb).permute(2, 0, 1)
    hr = torch.nn.functional.interpolate(hr[None], scale_factor=2, mode="bicubic")[0].clamp(0, 1)
    uniform = degrade(hr, anisotropic_gaussian(11, 1.2, 2.4, 0.5), 2)
    info = up.run(Image(rgb=from_tensor(uniform)))[2]["regions"]
    assert not info["used"] and info["spread"] is None and info["probe_spread"] < probe_spread(2)


def test_sr_writes_no_kernel_map_where_regions_were_not_used(split_photo, tmp_path):
    src = tmp_path / "split.png"
    write_image(src, from_tensor(split_photo))
    assert main(["sr", str(src), "-o", str(tmp_path / "out"), "--model", "kxnet_x2.setting2", "--regions", "auto",
                 "--region-size", "40", "--save-kernel", "--quiet", "--tile", "0"]) == 0
    side = json.loads((tmp_path / "out" / "split_x2.json").read_text())
    assert side["kernel"]["regions"]["used"] == (side["files"]["kernel_map"] is not None)
    assert (tmp_path / "out" / "split_x2_kernel_map.png").exists() == side["kernel"]["regions"]["used"]
    if side["kernel"]["regions"]["used"]:   # --tile 0 asked for, region tiles run: the sidecar says why
        assert "instead of none" in side["kernel"]["regions"]["tile_note"]
