"""Training layer: recipes, deterministic data, Eq. 12 loss, exact resume, DDP equivalence.

Everything runs a 2-stage ×2 KXNet on 8×8 LR patches on the CPU, so the file stays well under
a minute on a loaded 2-core machine.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import run_in_own_session
from kxnet.cli import main as cli_main
from kxnet.models import KXNetLoss, KXNetOutput, load_model
from kxnet.train import (
    ConfigError,
    HRImagePool,
    Trainer,
    TrainingSamples,
    build_loader,
    config_from_dict,
    export_weights,
    kxnet_loss,
    latest_checkpoint,
    load_config,
    load_state,
    read_metrics,
    stage_weights,
)
from kxnet.train.data import rank_slice, sample_seed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "*.yaml")))


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    """Tiny HR folders: train (two sizes, one to mirror-pad, one too small, one in a sub-folder), val."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    train, val = root / "train", root / "val"
    (train / "sub").mkdir(parents=True)
    val.mkdir()

    def save(path, h, w):
        # smooth-ish content so the model has something to learn, quantised to 8 bits
        base = rng.random((h // 4 + 2, w // 4 + 2, 3))
        img = np.kron(base, np.ones((4, 4, 1)))[:h, :w] * 0.7 + rng.random((h, w, 3)) * 0.3
        Image.fromarray((img * 255).round().astype(np.uint8)).save(path)

    save(train / "a.png", 40, 48)
    save(train / "b.png", 36, 36)
    save(train / "sub" / "c.jpg", 44, 40)
    save(train / "small.png", 12, 20)     # < 16-px crop, ≥ half of it: mirror-padded
    save(train / "tiny.png", 6, 6)        # < half the crop: skipped
    save(val / "v.png", 32, 32)
    return {"train": str(train), "val": str(val)}


def tiny_config(data_dirs, run_dir, **sections) -> dict:
    d = {
        "model": {"scale": 2, "setting": 2, "stages": 2},
        "data": {"hr_dirs": [data_dirs["train"]], "lr_patch": 8, "workers": 0, "cache_mb": 16},
        "train": {"iterations": 6, "batch": 4, "milestones": [4], "log_every": 1, "threads": 1,
                  "deterministic": True, "tensorboard": False},
        "val": {"hr_dir": data_dirs["val"], "every": 0, "loss_samples": 0},
        "checkpoint": {"every": 2, "keep_last": 2},
        "run_dir": str(run_dir),
        "name": "tiny",
    }
    for section, values in sections.items():
        d[section] = {**d.get(section, {}), **values} if isinstance(values, dict) else values
    return d


def run_trainer(cfg_dict, resume=None, stop_at=None):
    cfg = config_from_dict(cfg_dict)
    with Trainer(cfg, resume=resume, progress=False) as t:
        summary = t.fit(stop_at=stop_at)
        return t, summary


# ---------------------------------------------------------------------------- 3. loss

def test_stage_weights():
    assert stage_weights(4, 0.1, 1.0) == [0.1, 0.1, 0.1, 1.0]
    assert stage_weights(1, 0.1, 1.0) == [1.0]


def test_loss_weights_by_hand():
    hr = torch.zeros(2, 3, 4, 4)
    k_gt = torch.zeros(2, 5, 5)
    # stage t: image error t everywhere, kernel error t/100 everywhere → L1 terms are exactly that
    images = [torch.full_like(hr, float(t)) for t in (1, 2, 3)]
    kernels = [torch.full_like(k_gt, t / 100) for t in (1, 2, 3)]
    out = KXNetOutput(images[-1], kernels[-1], images, kernels)
    total, parts = kxnet_loss(out, hr, k_gt)
    want = 0.1 * (1 + 0.01) + 0.1 * (2 + 0.02) + 1.0 * (3 + 0.03)
    assert total.item() == pytest.approx(want, rel=1e-6)
    assert parts["image"].item() == pytest.approx(3.0)
    assert parts["kernel"].item() == pytest.approx(0.03)
    # the weights are config values
    w = KXNetLoss(image_weight=0.5, image_weight_last=2.0, kernel_weight=0.0, kernel_weight_last=10.0)
    total, _ = kxnet_loss(out, hr, k_gt, w)
    assert total.item() == pytest.approx(0.5 * 1 + 0.5 * 2 + 2.0 * 3 + 10.0 * 0.03, rel=1e-6)
    # gradients reach every stage with its weight
    images = [x.clone().requires_grad_(True) for x in images]
    total, _ = kxnet_loss(KXNetOutput(images[-1], kernels[-1], images, kernels), hr, k_gt)
    total.backward()
    n = hr.numel()
    assert [x.grad.mean().item() for x in images] == pytest.approx([0.1 / n, 0.1 / n, 1.0 / n])



def test_monotone_penalty_charges_only_a_stage_worse_than_its_predecessor():
    hr = torch.zeros(1, 3, 4, 4)
    k_gt = torch.zeros(1, 5, 5)
    # image errors 2, 3, 1: stage 2 is 1 worse than stage 1, stage 3 better than stage 2
    images = [torch.full_like(hr, e).requires_grad_(True) for e in (2.0, 3.0, 1.0)]
    kernels = [k_gt.clone() for _ in images]
    out = KXNetOutput(images[-1], kernels[-1], images, kernels)
    plain, _ = kxnet_loss(out, hr, k_gt, KXNetLoss())
    total, _ = kxnet_loss(out, hr, k_gt, KXNetLoss(monotone_weight=0.5))
    assert (total - plain).item() == pytest.approx(0.5 * 1.0)
    total.backward()
    n = hr.numel()
    # stage 1's term is detached in the penalty: only stage 2 is pushed by it
    assert [x.grad.mean().item() for x in images] == pytest.approx([0.1 / n, (0.1 + 0.5) / n, 1.0 / n])
    # per sample: image 0 gets better at stage 2 (3 → 1), image 1 worse (1 → 2); the batch mean
    # improves (2 → 1.5), yet image 1 is charged: 0.5 · (2 − 1) / 2 images
    hr = torch.zeros(2, 3, 4, 4)
    stage1 = torch.cat([torch.full((1, 3, 4, 4), 3.0), torch.full((1, 3, 4, 4), 1.0)])
    stage2 = torch.cat([torch.full((1, 3, 4, 4), 1.0), torch.full((1, 3, 4, 4), 2.0)])
    k_gt = torch.zeros(2, 5, 5)
    out = KXNetOutput(stage2, k_gt, [stage1, stage2], [k_gt, k_gt])
    plain, _ = kxnet_loss(out, hr, k_gt, KXNetLoss())
    total, _ = kxnet_loss(out, hr, k_gt, KXNetLoss(monotone_weight=0.5))
    assert (total - plain).item() == pytest.approx(0.25)

# -------------------------------------------------------------------------- 4. config

@pytest.mark.parametrize("path", CONFIGS, ids=[Path(p).stem for p in CONFIGS])
def test_shipped_recipes_load(path):
    cfg = load_config(path)
    assert cfg.name == Path(path).stem
    if cfg.name.startswith("paper_"):
        t = cfg.train
        assert (cfg.model.method_config().stages, t.batch, cfg.data.lr_patch, t.lr, t.iterations, t.gamma) == \
            (19, 12, 64, 2e-4, 1_000_000, 0.5)
        assert t.milestones == [200_000, 400_000, 600_000, 800_000, 1_000_000]
        assert tuple(t.betas) == (0.9, 0.999)
        assert (t.loss.image_weight, t.loss.image_weight_last, t.loss.kernel_weight, t.loss.kernel_weight_last) == \
            (0.1, 1.0, 0.1, 1.0)
        setting, scale = int(cfg.name[13]), int(cfg.name[-1])
        assert (cfg.model.setting, cfg.model.scale) == (setting, scale)
    assert cfg.val.hr_dir == "../shared/data/benchmarks/Set5"


def test_all_recipes_present():
    names = {Path(p).stem for p in CONFIGS}
    assert {f"paper_setting{s}_x{x}" for s in (1, 2) for x in (2, 3, 4)} <= names
    assert {"cpu_setting2_x2", "cpu_setting2_x3", "cpu_setting2_x4", "cpu_setting1_x4"} <= names


@pytest.mark.parametrize("kind,scale", [("cpu", 2), ("cpu", 3), ("cpu", 4), ("gpu", 2), ("gpu", 4)])
def test_continuation_recipes_fit_the_shipped_weights(kind, scale):
    """`kxnet train configs/cpu_setting2_xS.yaml --continue` (and a GPU window) starts from the
    shipped file, so the recipe must build the model those weights fill (they may have been grown)."""
    from kxnet.models import load_model

    cfg = load_config(ROOT / "configs" / f"{kind}_setting2_x{scale}.yaml")
    shipped = load_model(ROOT / cfg.train.init_weights).config
    assert cfg.model.scale == shipped.scale == scale and cfg.model.method_config().stages == shipped.stages
    assert cfg.model.factory_kwargs().get("estimator") == shipped.estimator


@pytest.mark.parametrize("method", ["dan", "dcls", "kenet", "usrnet_tiny"])
def test_cpu_baseline_recipes_share_kxnets_photos_and_validation(method):
    """Equal-budget comparisons need one protocol: the same training photos, patch and batch, and the
    same validation set; only the validation cadence and its per-stage report may differ."""
    kx = load_config(ROOT / "configs" / "cpu_setting2_x4.yaml")
    cpu = load_config(ROOT / "configs" / f"cpu_{method}_setting2_x4.yaml")
    assert (replace(cpu.val, every=0, per_stage=False), cpu.data, cpu.train.batch, cpu.train.threads) == \
        (replace(kx.val, every=0, per_stage=False), kx.data, kx.train.batch, kx.train.threads)
    assert (cpu.model.scale, cpu.model.setting) == (kx.model.scale, kx.model.setting)


@pytest.mark.parametrize("text,fragment", [
    ("train: {itrations: 5}", "unknown key 'train.itrations'; did you mean 'iterations'?"),
    ("train: {lerning_rate: 0.1}", "unknown key 'train.lerning_rate' (known here: iterations, batch, lr,"),
    ("bogus: 1", "unknown key 'bogus'"),
    ("train: {lr: abc}", "train.lr: expected a number"),
    ("train: {lr: -1.0}", "train.lr: must be > 0"),
    ("train: {batch: 2.5}", "train.batch: expected an integer"),
    ("train: {amp: fp8}", "train.amp: must be one of"),
    ("train: {betas: [0.9]}", "train.betas: expected a list of 2 numbers"),
    ("train: {milestones: [300, 200]}", "train.milestones: must be increasing"),
    ("model: {scale: 5}", "scale must be one of"),
    ("data: {workers: -1}", "data.workers: must be ≥ 0"),
    ("data: {hflip: 1}", "data.hflip: expected true/false"),
    ("val: {noise: 5}\nmodel: {setting: 1}", "val.noise: setting 1 is noise-free"),
    ("train: [1, 2]", "train: expected a mapping"),
    ("train: {lr: [unclosed", "not valid YAML"),
])
def test_bad_configs_fail_with_one_line(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg and str(path) in msg


def test_a_recipe_names_its_images(tmp_path):
    """No folder is assumed (the package has no default data): a recipe that names no images
    loads — overrides may complete it — but training it fails at once, in one line saying what
    to give, before any model or run folder is made."""
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: kxnet, scale: 2, stages: 2}\n")
    out = f"out={tmp_path / 'runs'}"
    cfg = load_config(path, [out])
    assert cfg.data.hr_dirs == [] and cfg.val.hr_dir is None and cfg.val.set_dir is None
    with pytest.raises(ConfigError, match=r"^r: data\.hr_dirs: the recipe names no training images"):
        Trainer(cfg, progress=False)
    with pytest.raises(ConfigError, match=r"val\.hr_dir: .* names no validation images.*val\.every=0"):
        Trainer(load_config(path, [out, "data.hr_dirs=[photos]"]), progress=False)
    for ok in (["val.every=0"], ["val.hr_dir=Set5"], ["val.set_dir=sets/Set5_s2_x2"]):
        load_config(path, ["data.hr_dirs=[photos]", *ok]).require_data()
    assert not (tmp_path / "runs").exists()


def test_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train: {iterations: 10, lr: 2e-4}\n")   # "2e-4" is a string to PyYAML: accepted
    cfg = load_config(path, ["train.iterations=200", "data.hr_dirs=[a, b/c]", "train.lr=1e-4",
                             "train.betas=[0.9, 0.99]", "val.hr_dir=null", "train.loss.image_weight=0.2",
                             "data.hr_dirs=[x]", "run_dir=somewhere"])
    assert cfg.train.iterations == 200 and cfg.train.lr == 1e-4 and cfg.train.betas == (0.9, 0.99)
    assert cfg.data.hr_dirs == ["x"] and cfg.val.hr_dir is None and cfg.train.loss.image_weight == 0.2
    assert cfg.run_dir == "somewhere" and cfg.name == "r"
    assert load_config(path, ["data.hr_dirs=single"]).data.hr_dirs == ["single"]
    for bad, fragment in [("train.lerning=1", "unknown key 'train.lerning'"), ("train=3", "expected a mapping"),
                          ("nokey", "expected key=value"), ("train.lr.x=1", "is not a section")]:
        with pytest.raises(ConfigError, match=fragment):
            load_config(path, [bad])
    # a config round-trips through its dict (what the run folder's config.yaml holds)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("train: {iterations: 10}\n")
    assert cli_main(["train", str(path), "train.itrations=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kxnet train: error:") and "train.itrations" in err and "\n" not in err
    assert cli_main(["train", str(tmp_path / "missing.yaml")]) == 2


# ---------------------------------------------------------------------------- 5. data

def test_samples_are_pure_functions_of_seed_step_index(data_dirs):
    pool = HRImagePool([data_dirs["train"]], crop=16, cache_bytes=0)
    assert len(pool) == 4 and [p.name for p in pool.skipped] == ["tiny.png"] and pool.padded == 1
    ds = TrainingSamples(pool, scale=2, setting=2, lr_patch=8, seed=7)
    a, b = ds.sample(3, 1), ds.sample(3, 1)
    for k in a:
        assert torch.equal(a[k], b[k])
    # a fresh pool/dataset (a resumed run, another rank) gives the same sample
    c = TrainingSamples(HRImagePool([data_dirs["train"]], crop=16, cache_bytes=1 << 30), 2, 2, 8, seed=7).sample(3, 1)
    assert all(torch.equal(a[k], c[k]) for k in a)
    # other keys give other samples
    for other in (ds.sample(3, 2), ds.sample(4, 1), TrainingSamples(pool, 2, 2, 8, seed=8).sample(3, 1)):
        assert not torch.equal(a["hr"], other["hr"])
    assert len({sample_seed(0, s, i) for s in range(20) for i in range(20)}) == 400

    assert a["hr"].shape == (3, 16, 16) and a["lr"].shape == (3, 8, 8) and a["kernel"].shape == (11, 11)
    assert a["hr"].dtype == a["lr"].dtype == torch.float32
    for s in (ds.sample(0, i) for i in range(8)):
        on_grid = s["lr"] * 255
        assert torch.equal(on_grid, on_grid.round()) or (on_grid - on_grid.round()).abs().max() < 1e-4
        assert 0 <= s["lr"].min() and s["lr"].max() <= 1
        assert s["kernel"].sum().item() == pytest.approx(1.0, abs=1e-5)
        assert 0 <= s["noise"].item() <= 25
        assert torch.equal(s["hr"] * 255, (s["hr"] * 255).round())   # 8-bit sources stay exact

    # setting 1 ×3: no noise, 21×21 kernels, crop = lr_patch·3
    s1 = TrainingSamples(HRImagePool([data_dirs["train"]], crop=18, cache_bytes=0), 3, 1, 6, seed=0).sample(0, 0)
    assert s1["hr"].shape == (3, 18, 18) and s1["lr"].shape == (3, 6, 6) and s1["kernel"].shape == (21, 21)
    assert s1["noise"].item() == 0.0
    with pytest.raises(ValueError, match="smaller than"):
        HRImagePool([data_dirs["train"]], crop=200)


def test_loader_workers_and_ranks_give_the_same_batches(data_dirs):
    pool = HRImagePool([data_dirs["train"]], crop=16, cache_bytes=1 << 30)
    pool.preload()
    ds = TrainingSamples(pool, 2, 2, 8, seed=3)
    want = [ds.batch(step, range(4)) for step in (5, 6, 7)]
    serial = list(build_loader(ds, 5, 7, 4, workers=0))
    parallel = list(build_loader(ds, 5, 7, 4, workers=2))
    halves = [list(build_loader(ds, 5, 7, 4, rank=r, world_size=2)) for r in (0, 1)]
    assert len(serial) == len(parallel) == 3
    for i, w in enumerate(want):
        for k in w:
            assert torch.equal(serial[i][k], w[k]) and torch.equal(parallel[i][k], w[k])
            assert torch.equal(torch.cat([halves[0][i][k], halves[1][i][k]]), w[k])
    assert list(rank_slice(12, 1, 4)) == [3, 4, 5]
    with pytest.raises(ValueError, match="not divisible"):
        rank_slice(5, 0, 2)


# -------------------------------------------------------------------- 1. exact resume

def test_kill_and_resume_is_bit_identical(data_dirs, tmp_path):
    extra = {"train": {"ema_decay": 0.9, "clip_grad_norm": 0.05}}
    full, _ = run_trainer(tiny_config(data_dirs, tmp_path / "full", **extra))
    run = tmp_path / "split"
    first, s1 = run_trainer(tiny_config(data_dirs, run, **extra), stop_at=3)
    assert s1["step"] == 3 and not s1["finished"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000002.safetensors", "step_00000002.state", "step_00000003.safetensors", "step_00000003.state"]
    # a new process would start from scratch: a fresh Trainer, resumed from the run folder
    second, s2 = run_trainer(tiny_config(data_dirs, run, **extra), resume=run)
    assert s2["finished"] and s2["step"] == 6

    losses = lambda t: [(r["step"], r["loss"], r["image_l1"], r["kernel_l1"], r["lr"]) for r in t.history]
    assert losses(first) + losses(second) == losses(full)
    assert len(losses(full)) == 6 and losses(full)[-1][-1] == pytest.approx(2e-4 * 0.5)
    for a, b in [(full.model, second.model), (full.ema.module, second.ema.module)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the CSV log of the split run equals the uninterrupted one, and keep_last pruned the rest
    columns = lambda path: [line.split(",")[:6] for line in path.read_text().splitlines()]  # not the timings
    assert columns(run / "train_log.csv") == columns(tmp_path / "full" / "train_log.csv")
    assert [p.name for p in sorted((run / "checkpoints").glob("*.state"))] == \
        ["step_00000004.state", "step_00000006.state"]
    state = load_state(run / "checkpoints" / "step_00000006.state")
    assert state["step"] == 6 and state["config"]["train"]["ema_decay"] == 0.9
    # exported weights are the EMA weights and load as a model
    exported = load_model(run / "model.safetensors")
    assert all(torch.equal(v, full.ema.module.state_dict()[k]) for k, v in exported.state_dict().items())
    again = load_model(export_weights(run / "checkpoints" / "step_00000006.state", tmp_path / "w.safetensors"))
    assert all(torch.equal(v, exported.state_dict()[k]) for k, v in again.state_dict().items())
    # the run folder refuses a second fresh start
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config_from_dict(tiny_config(data_dirs, run)), progress=False)


def test_init_weights_validation_and_cli(data_dirs, tmp_path, capsys):
    """A new run from weights alone, through the CLI, with validation, best and fp16 export."""
    run_trainer(tiny_config(data_dirs, tmp_path / "src", train={"iterations": 2}))
    weights = tmp_path / "src" / "model.safetensors"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(data_dirs, tmp_path / "cont")))
    code = cli_main(["train", str(recipe), "--no-progress", f"train.init_weights={weights}", "train.iterations=2",
                     "train.tensorboard=true", "val.every=2", "val.at_start=true", "val.loss_samples=4",
                     "val.images=[v]", "checkpoint.export_fp16=true"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "cont"
    vals = read_metrics(run, "val")
    assert [r["step"] for r in vals] == [0, 2]
    for r in vals:
        assert r["pairs"] == 8 and len(r["stage_psnr"]) == 2 and r["bicubic_psnr"] > 10 and r["loss"] > 0
    assert (run / "best.safetensors").is_file() and json.loads((run / "best.json").read_text())["psnr"] >= vals[0]["psnr"]
    assert any((run / "tb").iterdir())
    from safetensors import safe_open
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert f.get_tensor("kernel_map").dtype == torch.float16
    # a model of another shape is refused in one line
    bad = tiny_config(data_dirs, tmp_path / "bad", model={"scale": 2, "setting": 2, "stages": 3},
                      train={"init_weights": str(weights)})
    with pytest.raises(ValueError, match="stages=2.*stages=3"):
        Trainer(config_from_dict(bad), progress=False)


def test_step_zero_matches_init_weights(data_dirs, tmp_path):
    run_trainer(tiny_config(data_dirs, tmp_path / "src", train={"iterations": 1}))
    weights = tmp_path / "src" / "model.safetensors"
    cfg = config_from_dict(tiny_config(data_dirs, tmp_path / "new", train={"init_weights": str(weights)}))
    with Trainer(cfg, progress=False) as t:
        want = load_model(weights).state_dict()
        assert t.step == 0 and all(torch.equal(v, want[k]) for k, v in t.model.state_dict().items())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_process_group_checkpoints(data_dirs, tmp_path, stop):
    recipe = tmp_path / "tiny.yaml"
    cfg = tiny_config(data_dirs, tmp_path / "run", data={"workers": 1},
                      train={"iterations": 100000, "milestones": []}, checkpoint={"every": 0})
    recipe.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kxnet", "train", str(recipe), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(read_metrics(tmp_path / "run", "train")) < 3:       # a few steps in, the worker busy
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        os.killpg(proc.pid, stop)                                     # the trainer and its worker alike
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped at step" in stderr
    latest = latest_checkpoint(tmp_path / "run")
    assert latest is not None and load_state(latest)["step"] >= 3


# -------------------------------------------------------------------------- 2. DDP

def test_torchrun_two_processes_match_one(data_dirs, tmp_path):
    recipe = tmp_path / "ddp.yaml"
    cfg = tiny_config(data_dirs, tmp_path / "ddp_run", train={"iterations": 1})
    recipe.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "grads.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--max_restarts=0", str(ROOT / "tests" / "ddp_worker.py"), str(recipe), str(out)]
    done = run_in_own_session(cmd, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"

    single, _ = run_trainer({**cfg, "run_dir": str(tmp_path / "single_run")})
    grads = {n: p.grad for n, p in single.model.named_parameters() if p.grad is not None}
    common = set(grads) & set(ddp["grads"])
    assert len(common) == len(grads) > 50
    worst = max((grads[n] - ddp["grads"][n]).abs().max().item() for n in common)
    scale = max(grads[n].abs().max().item() for n in common)
    print(f"DDP vs single: max |Δgrad| = {worst:.3g} (max |grad| = {scale:.3g})")
    assert worst <= 1e-6 * max(1.0, scale), (worst, scale)
    assert ddp["history"][0]["loss"] == pytest.approx(single.history[0]["loss"], rel=1e-6, abs=1e-7)
    # the DDP run wrote its checkpoint from rank 0 only, loadable as usual
    assert load_state(tmp_path / "ddp_run" / "checkpoints" / "step_00000001.state")["world_size"] == 2


# ------------------------------------------------------------- schedules, growing, non-blind

def test_lr_schedules_are_functions_of_recipe_and_step():
    from kxnet.train.config import TrainConfig
    from kxnet.train import lr_factor

    multi = TrainConfig(lr=1e-3, milestones=[3, 5], gamma=0.5)
    assert [lr_factor(multi, s) for s in range(6)] == [1, 1, 1, 0.5, 0.5, 0.25]
    warm = TrainConfig(lr=1e-3, schedule="constant", warmup=4)
    assert [lr_factor(warm, s) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    cos = TrainConfig(lr=1e-3, schedule="cosine", min_lr=1e-4, iterations=11)
    f = [lr_factor(cos, s) for s in range(11)]
    assert f[0] == pytest.approx(1) and f[5] == pytest.approx(0.55) and f[10] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(f, f[1:]))
    wsd = TrainConfig(lr=1e-3, schedule="cosine", decay_start=5, iterations=10)
    g = [lr_factor(wsd, s) for s in range(10)]
    assert g[:6] == [1.0] * 6 and g[9] == pytest.approx(0.0) and all(a > b for a, b in zip(g[5:], g[6:]))


def test_resume_follows_an_edited_schedule(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", train={"schedule": "cosine", "iterations": 6})
    run_trainer(cfg, stop_at=2)
    longer = tiny_config(data_dirs, tmp_path / "run", train={"schedule": "cosine", "iterations": 12, "lr": 1e-3})
    t, _ = run_trainer(longer, resume=tmp_path / "run", stop_at=3)
    from kxnet.train import lr_factor

    # the lr after step 3 is that of the edited recipe at step 3, not the old one's
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor(t.cfg.train, 3))
    cpu = [r["cpu_s"] for r in read_metrics(tmp_path / "run", "train")]
    assert cpu == sorted(cpu) and cpu[-1] > 0          # CPU time accumulates across the resume


def test_grow_stages_copies_the_last_stage(data_dirs, tmp_path):
    from kxnet.models import create_model, grow_stages, save_model

    small = create_model("kxnet", scale=2, setting=2, stages=2)
    with torch.no_grad():
        small.gamma_stage.copy_(torch.tensor([[0.5], [2.0]]))
    grown = grow_stages(small, 3)
    assert grown.config.stages == 3 and grown.gamma_stage.flatten().tolist() == [0.5, 2.0, 2.0]
    for a, b in zip(grown.X_stage[2].parameters(), small.X_stage[1].parameters()):
        assert torch.equal(a, b)
    for a, b in zip(grown.K_stage[0].parameters(), small.K_stage[0].parameters()):
        assert torch.equal(a, b)
    # through a recipe: init from the 2-stage file into a 3-stage model
    path = save_model(small, tmp_path / "small.safetensors")
    cfg = tiny_config(data_dirs, tmp_path / "run", model={"scale": 2, "setting": 2, "stages": 3},
                      train={"init_weights": str(path), "grow_stages": True, "iterations": 1})
    t, _ = run_trainer(cfg, stop_at=0)
    assert torch.equal(t.model.X_stage[2].X_ProNet.resx1[0].weight, small.X_stage[1].X_ProNet.resx1[0].weight)
    with pytest.raises(ConfigError, match="grow_stages"):
        config_from_dict(tiny_config(data_dirs, tmp_path / "r2", train={"grow_stages": True}))


def test_nonblind_training_uses_the_true_kernels(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", train={"nonblind": True, "iterations": 1})
    t, _ = run_trainer(cfg, stop_at=0)
    batch = t.dataset.batch(1, range(4))
    parts = t.train_step(batch)
    # the kernels are given, so the kernel term is zero and the K-nets get no gradient
    assert float(parts["kernel"]) < 1e-6
    assert all(p.grad is None or not p.grad.any() for p in t.model.K_stage.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in t.model.X_stage.parameters())


def test_cpu_budget_finishes_the_run(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", train={"iterations": 10_000, "cpu_budget_h": 1e-4})
    t, summary = run_trainer(cfg)
    assert summary["finished"] and 0 < summary["step"] < 10_000 and summary["cpu_s"] >= 0.36
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_continue_starts_a_run_then_resumes_it(data_dirs, tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(data_dirs, tmp_path / "run", train={"iterations": 2})))
    assert cli_main(["train", str(recipe), "--continue", "--no-progress"]) == 0
    assert load_state(latest_checkpoint(tmp_path / "run"))["step"] == 2
    # the same command later, with more iterations: picks up at step 2, not from scratch
    assert cli_main(["train", str(recipe), "--continue", "--no-progress", "train.iterations=4"]) == 0
    steps = [r["step"] for r in read_metrics(tmp_path / "run")]
    assert steps == [1, 2, 3, 4]


def test_lr_mult_gives_matching_parameters_their_own_rate(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", train={"lr": 1e-3, "lr_mult": {"gamma_stage": 100},
                                                          "schedule": "constant", "iterations": 2})
    t, _ = run_trainer(cfg, stop_at=1)
    lrs = sorted(g["lr"] for g in t.optimizer.param_groups)
    assert lrs == pytest.approx([1e-3, 0.1])
    (fast,) = [g for g in t.optimizer.param_groups if g["lr"] > 0.01]
    assert len(fast["params"]) == 1 and fast["params"][0] is t.model.gamma_stage
    t2, _ = run_trainer(cfg, resume=tmp_path / "run")     # the groups survive a resume
    assert sorted(g["lr"] for g in t2.optimizer.param_groups) == pytest.approx([1e-3, 0.1])
    with pytest.raises(ConfigError, match="lr_mult"):
        config_from_dict(tiny_config(data_dirs, tmp_path / "r", train={"lr_mult": {"gamma_stage": -1}}))


def test_lr_mult_zero_freezes_the_matching_parameters(data_dirs, tmp_path):
    cfg = config_from_dict(tiny_config(data_dirs, tmp_path / "run", train={
        "lr": 1e-2, "lr_mult": {"X_stage*": 0}, "schedule": "constant", "iterations": 2}))
    with Trainer(cfg, progress=False) as t:
        before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
        t.fit()
        after = dict(t.model.named_parameters())
        optimised = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    held = [n for n in after if n.startswith("X_stage")]
    assert held and not any(after[n].requires_grad or id(after[n]) in optimised for n in held)
    assert all(torch.equal(after[n].detach(), before[n]) for n in held)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in after.items() if n not in held)
    with pytest.raises(ValueError, match="freezes every parameter"):
        run_trainer(tiny_config(data_dirs, tmp_path / "r", train={"lr_mult": {"*": 0}}), stop_at=1)


def test_the_trainer_owns_its_state_and_one_best(data_dirs, tmp_path):
    """state_dict()/load_state_dict() carry a run over, and the best validation is one dict
    (the trainer's, which its validator updates) before and after."""
    cfg = lambda run: tiny_config(data_dirs, tmp_path / run, train={"iterations": 2}, val={"every": 2})
    t, summary = run_trainer(cfg("run"))
    assert t.best is t.validator.best and t.best["step"] == 2 and summary["best_psnr"] == t.best["psnr"]
    state = t.state_dict()
    with Trainer(config_from_dict(cfg("other")), progress=False) as again:
        again.load_state_dict(state, "run")
        assert again.step == 2 and again.best == t.best and again.validator.best is again.best
        assert again.bicubic_psnr == t.bicubic_psnr and again.cpu_seconds() >= state["cpu_s"]
        mine, theirs = again.model.state_dict(), t.model.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    wider = tiny_config(data_dirs, tmp_path / "wider", model={"scale": 2, "setting": 2, "stages": 3})
    with Trainer(config_from_dict(wider), progress=False) as other, pytest.raises(ValueError, match="^run: was trained"):
        other.load_state_dict(state, "run")


def test_resume_refuses_another_lr_grouping_and_a_spent_budget_trains_no_more(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", train={"lr_mult": {"gamma_stage": 10}, "iterations": 4})
    run_trainer(cfg, stop_at=2)
    other = tiny_config(data_dirs, tmp_path / "run", train={"iterations": 4})
    with pytest.raises(ValueError, match="lr_mult"):
        run_trainer(other, resume=tmp_path / "run")
    # a run that finished on its CPU budget is not stepped again by a resume
    budget = tiny_config(data_dirs, tmp_path / "b", train={"iterations": 10_000, "cpu_budget_h": 1e-5})
    _, first = run_trainer(budget)
    _, again = run_trainer(budget, resume=tmp_path / "b")
    assert first["finished"] and again["step"] == first["step"]


def test_nonblind_training_is_refused_where_the_method_has_none(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, tmp_path / "run", model={"name": "kenet", "scale": 2, "setting": 2, "stages": None},
                      train={"nonblind": True})
    with pytest.raises(ValueError, match="no non-blind training"):
        Trainer(config_from_dict(cfg), progress=False)


def test_amp_auto_is_bf16_only_on_a_cpu_with_bf16(monkeypatch):
    import kxnet.hardware
    from kxnet.train.runtime import Runtime

    # the CPU's own flags decide: AVX-512 BF16 or AMX, nothing else
    for flags, has in (({"avx2", "avx512f"}, False), ({"avx512_bf16"}, True), ({"amx_bf16"}, True)):
        monkeypatch.setattr(kxnet.hardware, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert kxnet.hardware.cpu_has_bf16() is has
    rt = Runtime("cpu")
    try:
        monkeypatch.setattr(kxnet.hardware, "cpu_has_bf16", lambda: True)
        assert rt.autocast_dtype("auto") is torch.bfloat16
        monkeypatch.setattr(kxnet.hardware, "cpu_has_bf16", lambda: False)
        assert rt.autocast_dtype("auto") is None and rt.autocast_dtype("bf16") is torch.bfloat16
    finally:
        rt.close()
