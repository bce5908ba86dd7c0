"""The benchmark protocol (docs/protocol.md, "Metrics"): run a method over a ``kxnet synth`` set and score it.

A method is anything with the models' forward contract: ``model(lr)`` returns an
:class:`~kxnet.models.SROutput`. So a registered parameter-free method (``bicubic``), a KXNet
loaded from weights, or a baseline all plug in the same way.

Speed without changing what is measured: the metrics of an image are computed on a worker
thread while the network runs on the next one (NumPy releases the GIL in the heavy parts). On
a GPU the LR images of one HR image (one per kernel, all the same size) also go through the
network as one batch; on a CPU that does not pay (docs/speed.md), so it is off there. The
numbers are those of running every pair alone, to float32 rounding.

``oracle=True`` runs the method non-blind with the true kernel of every pair (the "GT kernel"
rows of the KXNet and DAN papers): ``model(lr, kernel=k)``, or with what the architecture's
``oracle_condition`` makes of ``k`` for a method whose estimate is not the HR kernel itself
(DCLS). A method that takes a noise level (the architecture's ``noise_input``: USRNet,
KENet+USRNet) is then also given the set's true σ, ``model(lr, kernel=k, sigma=σn/255)``
("GT k, GT σ", docs/protocol.md).

``model`` may be an inference runner (:meth:`~kxnet.models.Architecture.runner`) of another
module; ``arch`` then says whose (default: the architecture of ``model`` itself).
"""

from __future__ import annotations

import csv
import io as _io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..degrade.testsets import load_manifest
from ..io import atomic_write_bytes, atomic_write_json, from_tensor, read_image, to_uint8
from ..metrics import (
    gaussian_fit,
    image_metrics,
    image_psnr,
    kernel_fit_errors,
    kernel_l1,
    kernel_mae,
    kernel_psnr,
    lr_consistency_psnr,
)

__all__ = ["EvalResult", "PairResult", "evaluate", "width_order_violations", "write_reports"]

_KERNEL_KEYS = ("kernel_psnr", "kernel_mae", "kernel_l1", "sigma_major_err", "sigma_minor_err", "theta_err_deg")


@dataclass
class PairResult:
    lr: str
    hr: str
    kernel_tag: str
    psnr: float
    ssim: float
    kernel_psnr: float | None = None
    kernel_mae: float | None = None
    kernel_l1: float | None = None          # unit-sum L1: 0 exact, 2 disjoint
    sigma_major_err: float | None = None    # |σ₁ − σ₁*| of the Gaussian fits, HR px
    sigma_minor_err: float | None = None
    theta_err_deg: float | None = None      # angle between major axes (anisotropic truths only)
    width: float | None = None              # √(σ₁σ₂) of the estimate's fit
    true_width: float | None = None         # the same of the true kernel
    lr_psnr: float | None = None
    stage_psnr: list[float] = field(default_factory=list)
    estimated_kernel: np.ndarray | None = field(default=None, repr=False)  # kept on request, not saved


@dataclass
class EvalResult:
    set: str
    method: str
    setting: int
    scale: int
    noise: float
    pairs: list[PairResult]
    oracle: bool = False

    def mean(self, key: str) -> float | None:
        values = [getattr(p, key) for p in self.pairs if getattr(p, key) is not None]
        return float(np.mean(values)) if values else None

    def stage_curve(self) -> list[float]:
        curves = [p.stage_psnr for p in self.pairs if p.stage_psnr]
        return [float(v) for v in np.mean(curves, axis=0)] if curves else []

    def summary(self) -> dict:
        out = {
            "set": self.set, "method": self.method, "setting": self.setting, "scale": self.scale,
            "noise": self.noise, "oracle": self.oracle, "pairs": len(self.pairs),
            "psnr": self.mean("psnr"), "ssim": self.mean("ssim"),
            **{k: self.mean(k) for k in _KERNEL_KEYS},
            "lr_psnr": self.mean("lr_psnr"), "stage_psnr": self.stage_curve(),
        }
        if not self.oracle and any(p.width is not None for p in self.pairs):
            out["width_order_violations"] = width_order_violations(self.pairs)
        return out

    def to_json(self) -> dict:
        return {"summary": self.summary(),
                "per_image": [{k: v for k, v in asdict(p).items() if k != "estimated_kernel"} for p in self.pairs]}

    def to_csv(self) -> str:
        buf = _io.StringIO()
        fields = ["lr", "hr", "kernel_tag", "psnr", "ssim", *_KERNEL_KEYS, "width", "true_width", "lr_psnr"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for p in self.pairs:
            writer.writerow(asdict(p))
        return buf.getvalue()


def width_order_violations(pairs: list[PairResult], margin: float = 1.2) -> dict:
    """Whether the estimated kernels are ordered by width the way the true ones are, per image.

    For every HR image and every two of its pairs whose true widths differ by more than
    ``margin``×, the estimate of the narrower must be narrower. Returns the number of such
    comparisons, how many fail, and the images with a failure — a kernel estimate that does
    not follow the image (a constant guess) fails about half of them.
    """
    by_image: dict[str, list[PairResult]] = {}
    for p in pairs:
        if p.width is not None and p.true_width is not None:
            by_image.setdefault(p.hr, []).append(p)
    compared = failed = 0
    bad_images = []
    for hr, ps in by_image.items():
        bad = 0
        for a in ps:
            for b in ps:
                if b.true_width > margin * a.true_width:
                    compared += 1
                    bad += a.width >= b.width
        failed += bad
        if bad:
            bad_images.append(hr)
    return {"compared": compared, "failed": failed, "images_failing": sorted(bad_images)}


def _kernel_scores(res: PairResult, k_est: np.ndarray, k_gt: np.ndarray) -> None:
    res.kernel_psnr = float(kernel_psnr(k_est, k_gt))
    res.kernel_mae = float(kernel_mae(k_est, k_gt))
    res.kernel_l1 = kernel_l1(k_est, k_gt)
    for key, value in kernel_fit_errors(k_est, k_gt).items():
        setattr(res, key, value)
    est, gt = gaussian_fit(k_est), gaussian_fit(k_gt)
    if est["sigma_x"] is not None:
        res.width = float(np.sqrt(est["sigma_x"] * est["sigma_y"]))
    res.true_width = float(np.sqrt(gt["sigma_x"] * gt["sigma_y"]))


def _score(pair: dict, sr_u8: np.ndarray, hr_u8: np.ndarray, lr_u8: np.ndarray, scale: int,
           k_est: np.ndarray | None, k_gt: np.ndarray, stages_u8: list[np.ndarray], keep_kernel: bool) -> PairResult:
    m = image_metrics(sr_u8, hr_u8, scale)
    res = PairResult(pair["lr"], pair["hr"], pair["kernel_tag"], m.psnr, m.ssim)
    if k_est is not None:
        _kernel_scores(res, k_est, k_gt)
        res.lr_psnr = float(lr_consistency_psnr(lr_u8, sr_u8, k_est, scale))
        if keep_kernel:
            res.estimated_kernel = k_est
    res.stage_psnr = [image_psnr(x, hr_u8, scale) for x in stages_u8]
    return res


def _batches(pairs: list[dict], lr_shapes: list[tuple], batch_size: int) -> list[list[int]]:
    """Indices of pairs with the same HR image and LR size, in chunks of at most ``batch_size``
    (a set lists its pairs kernel by kernel, so the pairs of one image are not adjacent)."""
    groups: dict[tuple, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault((pair["hr"], lr_shapes[i]), []).append(i)
    return [g[j:j + batch_size] for g in groups.values() for j in range(0, len(g), batch_size)]


def _as_u8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(from_tensor(x.float()))


@torch.inference_mode()
def evaluate(model, set_dir: str | Path, method_name: str = "", device: str | torch.device = "cpu",
             per_stage: bool = False, limit: int | None = None, progress: bool = True, oracle: bool = False,
             batch_size: int | None = None, keep_kernels: bool = False, arch=None, group=None) -> EvalResult:
    """Score ``model`` on every LR/HR pair of the set, the paper's way (docs/protocol.md, "Metrics").

    ``batch_size`` pairs of one HR image run as one batch (default: 8 on CUDA, 1 on the CPU);
    ``keep_kernels`` keeps each estimated kernel on its :class:`PairResult` (for pictures).
    ``group`` (a :class:`kxnet.parallel.Group` of several processes) shares the pairs out by
    pixels; every process returns the whole result, the same as one process would.
    """
    set_dir = Path(set_dir)
    manifest = load_manifest(set_dir)
    scale = manifest["scale"]
    all_pairs = manifest["pairs"][:limit] if limit else manifest["pairs"]
    mine = list(range(len(all_pairs)))
    if group is not None and group.world_size > 1:
        from PIL import Image as PILImage

        from ..parallel import shard

        def pixels(path: Path) -> float:
            with PILImage.open(path) as im:      # the header only
                return float(im.width * im.height)

        sizes = [pixels(set_dir / p["lr"]) for p in all_pairs]
        mine = shard(sizes, group.world_size, group.rank)
    pairs = [all_pairs[i] for i in mine]
    lrs = [to_uint8(read_image(set_dir / p["lr"]).rgb) for p in pairs]
    gts = [np.load(set_dir / p["kernel"]) for p in pairs]
    hr_cache: dict[str, np.ndarray] = {}   # the current image only: batches come image by image
    if arch is None:
        from ..models import architecture_of

        arch = architecture_of(model)
    true_sigma = {"sigma": manifest["noise"] / 255.0} if oracle and arch.noise_input else {}
    results: list = [None] * len(pairs)
    bar = tqdm(total=len(pairs), desc=f"eval {method_name or 'model'}{' (oracle)' if oracle else ''} on {set_dir.name}",
               unit="img", disable=not progress)
    if batch_size is None:
        batch_size = 8 if torch.device(device).type == "cuda" else 1
    with ThreadPoolExecutor(max_workers=1) as metrics_pool:
        previous: list = []
        for idx in _batches(pairs, [a.shape for a in lrs], max(1, batch_size)):
            hr_name = pairs[idx[0]]["hr"]
            if hr_name not in hr_cache:
                hr_cache = {hr_name: to_uint8(read_image(set_dir / hr_name).rgb)}  # pairs are grouped by HR
            hr_u8 = hr_cache[hr_name]
            lr = torch.from_numpy(np.stack([lrs[i] for i in idx])).permute(0, 3, 1, 2).float().div(255.0).to(device)
            if oracle:
                k = torch.from_numpy(np.stack([gts[i] for i in idx])).float().to(device)
                if arch.oracle_condition is not None:
                    hr = torch.from_numpy(hr_u8).permute(2, 0, 1)[None].float().div(255.0).to(device)
                    k = arch.oracle_kernel(model, hr.expand(len(idx), -1, -1, -1), k)
                out = model(lr, kernel=k, **true_sigma)
            else:
                out = model(lr)
            for j, i in enumerate(idx):
                k_est = out.kernel[j].float().cpu().numpy() if out.kernel is not None else None
                stages = [_as_u8(x[j]) for x in out.stage_images] if per_stage and out.stage_images else []
                results[i] = metrics_pool.submit(_score, pairs[i], _as_u8(out.sr[j]), hr_u8, lrs[i], scale,
                                                 None if oracle else k_est, gts[i], stages, keep_kernels)
            del out
            for i in previous:   # at most two batches' images in flight: memory stays bounded
                results[i].result()
            previous = idx
            bar.update(len(idx))
        results = [f.result() for f in results]
    bar.close()
    if group is not None and group.world_size > 1:
        shares = group.gather(list(zip(mine, results)))
        if group.is_main:
            ordered = [None] * len(all_pairs)
            for i, r in (item for share in shares for item in share):
                ordered[i] = r
            results = ordered
        results = group.broadcast(results if group.is_main else None)
    return EvalResult(set_dir.name, method_name, manifest["setting"], scale, manifest["noise"], results, oracle)


def write_reports(result: EvalResult, json_path: str | Path | None = None, csv_path: str | Path | None = None) -> None:
    if json_path:
        atomic_write_json(json_path, result.to_json())
    if csv_path:
        atomic_write_bytes(csv_path, result.to_csv().encode())
