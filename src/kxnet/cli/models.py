"""``kxnet models``: the shipped weights (from the manifest) and the registered architectures."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list shipped weights and registered architectures",
                       description="List the weights in kxnet/weights/manifest.json (scale, setting, stages, "
                                   "parameters, file size, SHA-256 and the benchmark scores the manifest records) "
                                   "and the registered architectures usable with create_model().")
    p.add_argument("--json", action="store_true", help="print the manifest and architectures as JSON")
    return p


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _entry_facts(name: str, entry: dict, base) -> dict:
    """Scale/setting/stages/params from the entry, else from the file's header (no weights read)."""
    facts = {k: entry.get(k) for k in ("scale", "setting", "stages", "params")}
    path = base / entry.get("file", "")
    facts["file"] = entry.get("file")
    facts["bytes"] = path.stat().st_size if path.is_file() else None
    facts["installed"] = path.is_file()
    if path.is_file() and any(v is None for v in facts.values()):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                params = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
            config = json.loads(meta.get("config", "{}"))
            for k in ("scale", "setting", "stages"):
                facts[k] = facts[k] if facts[k] is not None else config.get(k)
            facts["params"] = facts["params"] if facts["params"] is not None else params
        except Exception:  # a broken file is reported by `kxnet sr`, not here
            pass
    if facts["scale"] is None and name.startswith("kxnet_x") and name[7:8].isdigit():
        facts["scale"] = int(name[7])
    return facts


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _fmt_params(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def run(args) -> int:
    from ..models import list_models
    from ..models import loading

    manifest = loading.shipped_models()
    base = loading._MANIFEST.parent
    archs = list_models()
    if args.json:
        print(json.dumps({"weights": manifest, "architectures": archs}, indent=2, sort_keys=True))
        return 0

    if not manifest:
        print(f"no shipped weights ({loading._MANIFEST} is missing or empty); give --model PATH to `kxnet sr`")
    else:
        print(f"shipped weights ({loading._MANIFEST}):")
        header = f"  {'name':<24} {'scale':>5} {'set.':>4} {'stages':>6} {'params':>8} {'size':>9}  sha256"
        print(header)
        for name in sorted(manifest):
            entry = manifest[name]
            f = _entry_facts(name, entry, base)
            sha = (entry.get("sha256") or "-")[:12]
            missing = "" if f["installed"] else "  (not installed)"
            print(f"  {name:<24} {f['scale'] or '-':>5} {f['setting'] or '-':>4} {f['stages'] or '-':>6} "
                  f"{_fmt_params(f['params']):>8} {_size(f['bytes']):>9}  {sha}{missing}")
            for key, scores in sorted((entry.get("benchmarks") or {}).items()):
                if isinstance(scores, dict):
                    text = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in scores.items())
                else:
                    text = str(scores)
                print(f"      {key}: {text}")
            extras = {k: v for k, v in entry.items()
                      if k not in ("file", "sha256", "scale", "setting", "stages", "params", "benchmarks")}
            for k, v in sorted(extras.items()):
                v = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
                print(f"      {k}: {v[:120]}")
    print("architectures (create_model):", ", ".join(archs))
    return 0
