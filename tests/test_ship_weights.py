"""The shipping rule (kxnet.models.shipping) and the typed manifest (kxnet.models.zoo): weights are replaced only when
complete cells improve, the file never piles up, the manifest is read and written as entries."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import perturbed_kxnet
from kxnet.models import KXNetConfig, load_model, save_model
from kxnet.models import shipping, zoo

ROOT = Path(__file__).resolve().parent.parent


def _cell(psnr, full=True, images=5):
    return {"psnr": psnr, "full": full, "images": images}


def test_improved_needs_the_mean_of_shared_complete_cells_to_rise():
    old = {"a": _cell(28.0), "b": _cell(27.0), "c": _cell(20.0, full=False, images=4)}
    # one cell up 0.3, one down 0.5: worse overall, nothing ships
    assert zoo.improved_cells({"a": _cell(28.3), "b": _cell(26.5)}, old) == []
    # a partial cell that improves a lot does not count
    assert zoo.improved_cells({"a": _cell(27.9), "c": _cell(30.0, full=False, images=4)}, old) == []
    # better overall: the improving cells are named
    assert zoo.improved_cells({"a": _cell(28.6), "b": _cell(26.9)}, old) == ["a"]
    # no shared complete cell: nothing to compare against
    assert zoo.improved_cells({"d": _cell(40.0)}, old) == []


def _results(path, model_name, cells):
    rows = [{"model": model_name, "key": key, "psnr": p, "ssim": 0.7, "bicubic_psnr": 23.0, "bicubic_ssim": 0.6,
             "images": 5, "pairs": 40, "full": True, "paper": None, "stage_psnr": [p - 1, p]}
            for key, p in cells.items()]
    path.write_text(json.dumps({"cells": rows}))
    return path


def test_ship_replaces_only_when_cells_improve_and_record_merges(tmp_path):
    manifest = tmp_path / "manifest.json"
    recipe = {"model": {"name": "kxnet", "stages": 2}, "data": {"lr_patch": 24}, "train": {"batch": 8}}
    kw = dict(recipe=recipe, iterations=100, hardware="test CPU", training_data="none", manifest=manifest)
    model = perturbed_kxnet(2, 2)
    first = zoo.cells_of_results(_results(tmp_path / "r1.json", "m", {"Set5/setting2/x2/noise0": 30.0}), "m")
    entry = shipping.ship(model, "kxnet_x2.test", cells=first, **kw)
    assert entry.path == tmp_path / "kxnet_x2_test.safetensors" and entry.path.is_file()
    assert entry.reduced == ("reduced configuration: 2 stages instead of 19, LR patch 24 instead of 64, batch 8 "
                             "instead of 12, iterations 100 instead of 1,000,000")
    (read,) = zoo.read_manifest(manifest).values()
    assert read.sha256 == entry.sha256 and read.config == model.config.to_dict() and read.arch == "kxnet"
    # worse: refused, nothing touched
    worse = zoo.cells_of_results(_results(tmp_path / "r2.json", "m", {"Set5/setting2/x2/noise0": 29.0}), "m")
    with torch.no_grad():
        other = perturbed_kxnet(2, 2)
        next(other.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="no complete benchmark cell improves"):
        shipping.ship(other, "kxnet_x2.test", cells=worse, **kw)
    assert zoo.read_manifest(manifest)["kxnet_x2.test"].sha256 == entry.sha256
    # better: replaced in place, the improved cell named
    better = zoo.cells_of_results(_results(tmp_path / "r3.json", "m", {"Set5/setting2/x2/noise0": 31.0}), "m")
    new = shipping.ship(other, "kxnet_x2.test", cells=better, **kw)
    assert new.improved_cells == ["Set5/setting2/x2/noise0"] and new.sha256 != entry.sha256
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["kxnet_x2_test.safetensors"]
    # record: cells measured on the shipped file join the entry, a re-measured one replaces the old
    extra = zoo.cells_of_results(_results(tmp_path / "r4.json", "kxnet_x2.test",
                                          {"Set14/setting2/x2/noise0": 28.0, "Set5/setting2/x2/noise0": 31.5}),
                                 "kxnet_x2.test")
    cells = zoo.record_cells("kxnet_x2.test", extra, manifest).benchmarks
    assert sorted(cells) == ["Set14/setting2/x2/noise0", "Set5/setting2/x2/noise0"]
    assert zoo.read_manifest(manifest)["kxnet_x2.test"].benchmarks["Set5/setting2/x2/noise0"]["psnr"] == 31.5
    with pytest.raises(ValueError, match="no cells of model"):
        zoo.cells_of_results(tmp_path / "r4.json", "someone else")


def test_grown_weights_say_which_stages_were_added_untrained():
    recipe = {"model": {"name": "kxnet", "stages": 4}}
    assert zoo.grown_note(recipe, KXNetConfig(scale=3, stages=4)) is None
    note = zoo.grown_note(recipe, KXNetConfig(scale=3, stages=6))
    assert "trained with 4 stages" in note and "stages 5–6 are copies" in note and "--stages 6" in note
    assert "stage 5 is a copy of stage 4" in zoo.grown_note(recipe, KXNetConfig(scale=3, stages=5))
    assert zoo.grown_note({"model": {"name": "dan"}}, KXNetConfig(scale=3, stages=6)) is None


def test_reduced_names_only_what_falls_short_of_the_paper():
    cpu = {"data": {"lr_patch": 24}, "train": {"batch": 8}}
    note = zoo.reduced_note(cpu, KXNetConfig(scale=4, stages=4), 7900)
    assert note == ("reduced configuration: 4 stages instead of 19, LR patch 24 instead of 64, batch 8 instead of 12, "
                    "iterations 7,900 instead of 1,000,000")
    gpu = {"data": {"lr_patch": 64}, "train": {"batch": 12}}
    assert zoo.reduced_note(gpu, KXNetConfig(scale=4, stages=4), 12842) == \
        "reduced configuration: 4 stages instead of 19, iterations 12,842 instead of 1,000,000"
    assert zoo.reduced_note(gpu, KXNetConfig(scale=4, stages=19), 1_000_000) is None


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("paper_*.yaml")), ids=lambda p: p.stem)
def test_paper_training_figures_are_the_paper_recipes(recipe):
    d = yaml.safe_load(recipe.read_text())
    assert (d["model"]["stages"], d["data"]["lr_patch"], d["train"]["batch"], d["train"]["iterations"]) == \
        tuple(zoo.PAPER_TRAINING[k] for k in ("stages", "lr_patch", "batch", "iterations"))


def test_same_tensors_knows_the_storage(tmp_path):
    model = perturbed_kxnet(2, 2)
    half = save_model(model, tmp_path / "half.safetensors", storage="fp16")
    quarter = save_model(model, tmp_path / "int8.safetensors", storage="int8")
    # re-shipping what is shipped, in the same storage: nothing to write
    assert shipping._same_tensors(half, load_model(half), "fp16") and shipping._same_tensors(quarter, load_model(quarter), "int8")
    assert shipping._same_tensors(half, model, "fp16") and shipping._same_tensors(quarter, model, "int8")
    # another storage, or other weights: write
    assert not shipping._same_tensors(half, model, "int8") and not shipping._same_tensors(quarter, model, "fp16")
    changed = load_model(half)
    with torch.no_grad():
        next(changed.parameters()).add_(0.5)
    assert not shipping._same_tensors(half, changed, "fp16")
    assert not shipping._same_tensors(tmp_path / "none.safetensors", model, "fp16")


def _entry(name, cells):
    return zoo.WeightsEntry(name=name, file=f"{name}.safetensors", sha256="0", bytes=0, arch="kxnet",
                            config={"scale": 4, "setting": 2}, parameters=0, storage="fp16", iterations=0,
                            hardware="", training_data="", benchmarks=cells)


def _photo_cells(jpeg5, jpeg14, clean, bicubic=24.0):
    def cell(psnr, degradation=None):
        return {"psnr": psnr, "ssim": 0.8, "bicubic_psnr": bicubic, "bicubic_ssim": 0.7, "images": 5,
                "full": True, **({"degradation": degradation} if degradation else {})}
    return {"Set5/setting2/x4/noise5_jpeg75": cell(jpeg5, "5+jpeg75"),
            "Set14/setting2/x4/noise5_jpeg75": cell(jpeg14, "5+jpeg75"),
            "Set5/setting2/x4/noise0": cell(clean)}


def test_a_photo_model_is_the_default_only_when_its_cells_qualify_it():
    paper = _entry("kxnet_x4.setting2", _photo_cells(26.4, 25.0, 28.8))
    good = _entry("kxnet_x4.photo", _photo_cells(27.5, 26.0, 28.6))
    entries = {"kxnet_x4.setting2": paper, "kxnet_x4.photo": good, "kxnet_x2.setting2": paper}
    assert zoo.photo_default_shortfalls(good, paper) == []
    assert zoo.default_model(4, entries=entries) == "kxnet_x4.photo"
    assert zoo.default_model(4, photos=False, entries=entries) == "kxnet_x4.setting2"
    assert zoo.default_model(2, entries=entries) == "kxnet_x2.setting2"
    # +0.9 dB on Set14's JPEG cell, or 0.4 dB lost on clean Set5: the paper's model stays the default
    for cells in (_photo_cells(27.5, 25.9, 28.6), _photo_cells(27.5, 26.0, 28.4)):
        entries["kxnet_x4.photo"] = _entry("kxnet_x4.photo", cells)
        assert len(zoo.photo_default_shortfalls(entries["kxnet_x4.photo"], paper)) == 1
        assert zoo.default_model(4, entries=entries) == "kxnet_x4.setting2"
    # a cell beyond the paper below bicubic, or one not measured, disqualifies too
    below = _entry("kxnet_x4.photo", _photo_cells(27.5, 26.0, 28.6, bicubic=27.0))
    assert any("bicubic" in r for r in zoo.photo_default_shortfalls(below, paper))
    unmeasured = _photo_cells(27.5, 26.0, 28.6)
    del unmeasured["Set14/setting2/x4/noise5_jpeg75"]
    assert zoo.photo_default_shortfalls(_entry("kxnet_x4.photo", unmeasured), paper) == \
        ["Set14/setting2/x4/noise5_jpeg75: not measured for both"]


