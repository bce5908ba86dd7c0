"""``kxnet models``: the shipped weights, one line each, and the registered architectures.

The line says what a user chooses by: scale, setting, size of the network and how well it does
on the one complete cell every model has (Set5, σn 0) beside bicubic and the paper. Everything
else the manifest records (recipe, hashes, every benchmark cell) is behind ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path

_REFERENCE_SET = "Set5"


def add_parser(sub):
    p = sub.add_parser("models", help="list shipped weights and registered architectures",
                       description="One line per shipped model: scale, setting, architecture and size, parameters, "
                                   "file size, and its PSNR on complete Set5 (σn 0) beside bicubic and the paper. "
                                   "--json prints every manifest field instead.")
    p.add_argument("--json", action="store_true", help="print the manifest and the architectures as JSON")
    return p


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _header(path: Path) -> tuple[dict, int | None]:
    """The file's metadata and its tensor count, read from the safetensors header only."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            count = 0
            for k in f.keys():
                n = 1
                for d in f.get_slice(k).get_shape():
                    n *= int(d)
                count += n
        return meta, count
    except Exception:  # a broken file is reported by `kxnet sr`, not here
        return {}, None


def describe(name: str, entry: dict, base: Path) -> dict:
    """The facts of one manifest entry that a one-line listing shows."""
    path = base / entry.get("file", "")
    meta, tensor_values = _header(path) if path.is_file() else ({}, None)
    config = entry.get("config") or json.loads(meta.get("config", "{}") or "{}")
    arch = entry.get("arch") or meta.get("arch") or "kxnet"
    cell = _reference_cell(entry, config)
    return {
        "name": name, "arch": arch, "scale": config.get("scale"), "setting": config.get("setting"),
        "stages": config.get("stages") or config.get("loops"),
        "params": entry.get("parameters") or tensor_values,
        "bytes": path.stat().st_size if path.is_file() else None, "installed": path.is_file(),
        "psnr": cell.get("psnr"), "bicubic_psnr": cell.get("bicubic_psnr"),
        "paper_psnr": cell.get("paper_psnr") or cell.get("paper_kxnet_psnr"),
    }


def _reference_cell(entry: dict, config: dict) -> dict:
    key = f"{_REFERENCE_SET}/setting{config.get('setting')}/x{config.get('scale')}/noise0"
    cell = (entry.get("benchmarks") or {}).get(key)
    return cell if isinstance(cell, dict) and cell.get("images") != 0 else {}


def _fmt(v, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def run(args) -> int:
    from ..models import architectures, list_models
    from ..models import loading

    manifest = loading.shipped_models()
    base = loading._MANIFEST.parent
    if args.json:
        print(json.dumps({"weights": manifest, "architectures": [a.name for a in architectures()],
                          "factories": list_models()}, indent=2, sort_keys=True))
        return 0
    if not manifest:
        print(f"no shipped weights ({loading._MANIFEST} is missing or empty); give --model PATH to `kxnet sr`")
    else:
        print(f"{'name':<24} {'arch':<6} {'scale':>5} {'set.':>4} {'stages':>6} {'params':>7} {'size':>8}   "
              f"{_REFERENCE_SET} σn 0 PSNR: ours / bicubic / paper")
        for name in sorted(manifest):
            f = describe(name, manifest[name], base)
            params = f"{f['params'] / 1e6:.2f}M" if f["params"] else "-"
            score = (f"{_fmt(f['psnr'], '.2f')} / {_fmt(f['bicubic_psnr'], '.2f')} / {_fmt(f['paper_psnr'], '.2f')}"
                     if f["psnr"] is not None else "not benchmarked")
            missing = "  (file not installed)" if not f["installed"] else ""
            print(f"{name:<24} {f['arch']:<6} {'×' + str(f['scale']) if f['scale'] else '-':>5} "
                  f"{_fmt(f['setting'], 'd'):>4} {_fmt(f['stages'], 'd'):>6} {params:>7} {_size(f['bytes']):>8}   "
                  f"{score}{missing}")
        print("(every field and benchmark cell: kxnet models --json)")
    print("architectures:", ", ".join(a.name for a in architectures()),
          "(create_model factories: kxnet models --json)")
    return 0
