"""``kxnet models``: the shipped weights, one line each, and the registered architectures.

The line says what a user chooses by: scale, setting, size of the network and how well it does
on the one complete cell every model has (Set5, σn 0) beside bicubic and the paper. Everything
else the manifest records (recipe, hashes, every benchmark cell) is behind ``--json``.
"""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list shipped weights and registered architectures",
                       description="One line per shipped model: scale, setting, architecture and size, parameters, "
                                   "file size, and its PSNR on complete Set5 (σn 0) beside bicubic and the paper. "
                                   "--json prints every manifest field instead.")
    p.add_argument("--json", action="store_true", help="print the manifest and the architectures as JSON")
    p.add_argument("--markdown", action="store_true", help="print the model zoo page (docs/model-zoo.md)")
    return p


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _fmt(v, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def run(args) -> int:
    from ..models import architectures, list_models
    from ..models.zoo import MANIFEST, PHOTO_MODELS, default_model, model_zoo_markdown, read_manifest

    entries = read_manifest()
    if args.markdown:
        print(model_zoo_markdown(entries), end="")
        return 0
    if args.json:
        print(json.dumps({"weights": {n: e.to_dict() for n, e in entries.items()},
                          "architectures": [a.name for a in architectures()], "factories": list_models()},
                         indent=2, sort_keys=True))
        return 0
    if not entries:
        print(f"no shipped weights ({MANIFEST} is missing or empty); give --model PATH to `kxnet sr`")
    else:
        defaults = {default_model(s, entries=entries) for s in (2, 3, 4)}
        photo_models = {n for n in PHOTO_MODELS.values() if n in entries} - defaults
        routed = {entries[n].config.get("scale") for n in photo_models}
        print(f"{'name':<24} {'arch':<6} {'scale':>5} {'set.':>4} {'stages':>6} {'params':>7} {'size':>8}   "
              "Set5 σn 0 PSNR: ours / bicubic / paper")
        for name in sorted(entries):
            e = entries[name]
            cell = e.reference_cell() or {}
            config = e.config
            score = (f"{_fmt(cell.get('psnr'), '.2f')} / {_fmt(cell.get('bicubic_psnr'), '.2f')} / "
                     f"{_fmt(cell.get('paper_psnr'), '.2f')}" if cell else "not benchmarked")
            # without --model, kxnet sr routes each photo by its JPEG history (inference.routing)
            flags = ("  (kxnet sr: inputs with a JPEG history)" if name in photo_models else
                     "  (kxnet sr: inputs without a JPEG history)" if name in defaults and config.get("scale") in routed
                     else "  (default of kxnet sr)" if name in defaults else "") + \
                ("  (file not installed)" if not e.path.is_file() else "")
            print(f"{name:<24} {e.arch:<6} {'×' + str(config.get('scale')):>5} {_fmt(config.get('setting'), 'd'):>4} "
                  f"{_fmt(config.get('stages') or config.get('loops'), 'd'):>6} {e.parameters / 1e6:6.2f}M "
                  f"{_size(e.bytes):>8}   {score}{flags}")
        print("(every field and benchmark cell: kxnet models --json)")
    print("architectures:", ", ".join(a.name for a in architectures()),
          "(create_model factories: kxnet models --json)")
    return 0
