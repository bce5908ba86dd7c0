"""int8 graphs (kxnet.inference.int8): a shipped model's recipe, applied to an OpenVINO graph of
any size, blind or not, runs the X-steps' prox convolutions in int8 and the rest in float32,
stays close to float32, and is refused for a graph it was not made for."""

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")

from conftest import conv_precisions, perturbed_kxnet, tensor_psnr  # noqa: E402
from kxnet.inference.backends import int8_recipe_of  # noqa: E402
from kxnet.inference.int8 import apply_recipe, load_recipe, save_recipe  # noqa: E402
from kxnet.inference.openvino import OpenVINORunner  # noqa: E402
from kxnet.io import read_image, to_tensor  # noqa: E402
from kxnet.metrics import kernel_l1  # noqa: E402
from kxnet.models import load_model  # noqa: E402
from kxnet.models.zoo import read_manifest  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CONVS_PER_PROX = 8      # of 9: the first takes the prox net's input, which stays float32


def _with_recipe() -> list[str]:
    names = sorted(n for n, e in read_manifest().items() if e.int8)
    if not names:
        pytest.skip("no shipped model has an int8 recipe")
    return names


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kxnet-cache")


def _photo(size=(40, 36)):
    """A crop of the bundled example: real image statistics, as the recipe's calibration had."""
    from pathlib import Path

    rgb = read_image(Path(__file__).resolve().parents[1] / "examples" / "chart_x4.png").rgb
    return to_tensor(np.ascontiguousarray(rgb[20:20 + size[0], 30:30 + size[1]]))


def test_every_shipped_recipe_matches_its_manifest_entry_and_round_trips(tmp_path):
    entries = read_manifest()
    for name in _with_recipe():
        entry = entries[name]
        recipe = int8_recipe_of(entry)           # SHA-256 checked against the manifest
        stages = entry.config["stages"]
        assert len(recipe.weights) == CONVS_PER_PROX * stages, name
        # the X-steps' prox nets only (KXNetEngine's scope, as bf16's)
        assert all(k.startswith("__module.x_prox.") for k in [*recipe.weights, *recipe.activations]), name
        assert set(entry.int8["cost_db"]), name      # measured on complete cells
        copy = save_recipe(recipe, tmp_path / f"{name}.safetensors")
        assert load_recipe(copy).digest == recipe.digest


def test_int8_runs_the_prox_convolutions_in_int8_blind_and_on_tiles(cache):
    name = _with_recipe()[0]
    entry = read_manifest()[name]
    model, recipe = load_model(name).eval(), int8_recipe_of(entry)
    int8 = OpenVINORunner(model, precision="int8", threads=1, cache_dir=cache, int8=recipe)
    f32 = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    y = _photo()
    out, ref = int8(y), f32(y)
    assert int8.precision == "int8"
    counts = conv_precisions(int8.compiled_model(tuple(y.shape[-2:])))
    assert counts.get("i8", 0) + counts.get("u8", 0) == len(recipe.weights), counts
    assert not torch.equal(out.sr, ref.sr)
    # measured on this crop of the chart (kxnet_x2.setting2): 44.4 dB against float32; the
    # K-steps stay float32 but see int8 X-steps, so the kernel moves a little (unit-sum L1 0.037)
    assert tensor_psnr(out.sr, ref.sr) > 40
    assert kernel_l1(out.kernel[0], ref.kernel[0]) < 0.1
    # a tile with the crop's per-stage kernels: the non-blind graph has the same names
    kernels = list(ref.stage_kernels)
    tile, tile_ref = int8(y, kernel=kernels), f32(y, kernel=kernels)
    counts = conv_precisions(int8.compiled_model(tuple(y.shape[-2:]), blind=False))
    assert counts.get("i8", 0) + counts.get("u8", 0) == len(recipe.weights), counts
    assert tensor_psnr(tile.sr, tile_ref.sr) > 40                 # measured 44.5 dB


def test_a_recipe_for_another_graph_is_refused(cache):
    import openvino  # noqa: F401

    name = _with_recipe()[0]
    recipe = int8_recipe_of(read_manifest()[name])
    other = perturbed_kxnet(2, 2, stages=1)       # fewer stages: most recorded names are missing
    runner = OpenVINORunner(other, precision="int8", threads=1, cache_dir=cache, int8=recipe)
    with pytest.raises(ValueError, match="not in the graph"):
        runner(_photo((24, 20)))
    f32 = OpenVINORunner(other, precision="f32", threads=1, cache_dir=cache)
    graph = f32._convert((24, 20), True, f32.kernel_size)
    with pytest.raises(ValueError, match="made for another graph"):
        apply_recipe(graph, recipe)


def test_int8_precision_and_recipe_go_together():
    model = perturbed_kxnet(2, 2)
    with pytest.raises(ValueError, match="int8 recipe"):
        OpenVINORunner(model, precision="int8")


def test_a_file_that_is_not_a_recipe_is_named(tmp_path):
    bad = tmp_path / "not_a_recipe.safetensors"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="not_a_recipe.safetensors"):
        load_recipe(bad)


def test_int8_graphs_are_cached_apart_from_float_and_per_recipe(tmp_path):
    """A fresh process reads the int8 IR back instead of rewriting it, and an int8 graph never
    answers for the float one of the same weights and size (nor for another recipe)."""
    from dataclasses import replace

    from kxnet.inference.openvino import clear_memory_cache

    name = _with_recipe()[0]
    model, recipe = load_model(name).eval(), int8_recipe_of(read_manifest()[name])
    y = _photo((24, 20))
    first = OpenVINORunner(model, precision="int8", threads=1, cache_dir=tmp_path, int8=recipe)
    expected = first(y).sr
    f32 = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert not torch.equal(f32(y).sr, expected) and f32.stats.converted == 1
    clear_memory_cache()        # as a new process would start
    second = OpenVINORunner(model, precision="int8", threads=1, cache_dir=tmp_path, int8=recipe)
    assert torch.equal(second(y).sr, expected)
    assert (second.stats.converted, second.stats.imported) == (0, 1)
    other = replace(recipe, activations={k: (lo, hi * 2, lo, hi * 2) for k, (lo, hi, _, _) in recipe.activations.items()})
    third = OpenVINORunner(model, precision="int8", threads=1, cache_dir=tmp_path, int8=other)
    assert not torch.equal(third(y).sr, expected) and third.stats.converted == 1
