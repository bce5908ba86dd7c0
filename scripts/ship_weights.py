"""Put trained weights into the package: safetensors (fp16 or ``--int8``) + a manifest entry
(kxnet.models.zoo: the typed entry; kxnet.models.shipping: the shipping rule).

    python scripts/ship_weights.py RUN_DIR NAME [--weights FILE] --benchmark results.json [--hardware TEXT]
    python scripts/ship_weights.py --record NAME --benchmark set14/results.json b100/results.json

Replaces ``src/kxnet/weights/<NAME>.safetensors`` (never piles up versions) and the entry
``NAME`` of the manifest with: SHA-256, the model config, the recipe (the run's resolved
config), iterations, hardware, training data, what is reduced compared with the paper, and the
measured cells (``--benchmark``: ``kxnet benchmark`` results.json files; benchmark the stored
file itself, e.g. the int8 one, since that is what ships). Weights are replaced only when the
complete cells they share with the shipped entry improve on average, unless ``--force``. A run
folder without ``config.yaml`` names its recipe with ``--recipe`` and ``--override``.
``--record NAME`` leaves the weights alone and adds cells measured on the shipped file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from kxnet.models import load_model
from kxnet.models.shipping import ship
from kxnet.models.zoo import WEIGHTS_DIR, cells_of_results, record_cells
from kxnet.train import load_config
from kxnet.train.checkpoint import list_checkpoints

TRAINING_DATA = ("shared/data/train: BSDS300 train (199), Kodak24, McMaster18, T91 (90), 17 Debian wallpapers "
                 "— 348 images, ≈66 MP, ≈3% of DIV2K+Flickr2K")


def _weights_and_step(run: Path, weights: Path | None) -> tuple[Path, int | None]:
    """The run's final weights (or its last checkpoint's) and their step."""
    if weights is not None:
        return weights, None
    if (run / "model.safetensors").is_file():
        summary = run / "summary.json"
        return run / "model.safetensors", json.loads(summary.read_text()).get("step") if summary.is_file() else None
    ckpts = list_checkpoints(run / "checkpoints")
    if not ckpts:
        raise SystemExit(f"{run}: no model.safetensors and no checkpoint")
    step, state = ckpts[-1]
    return state.with_suffix(".safetensors"), step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("name", nargs="?", help="manifest name, e.g. kxnet_x4.setting2")
    ap.add_argument("--record", metavar="NAME", help="only add benchmark cells of the shipped NAME to the manifest")
    ap.add_argument("--weights", type=Path, default=None, help="default: the run's model.safetensors, else its last checkpoint")
    ap.add_argument("--benchmark", type=Path, nargs="+", default=None, help="results.json of `kxnet benchmark`")
    ap.add_argument("--benchmark-name", default=None, help="model name used in results.json (default: NAME)")
    ap.add_argument("--hardware", default="2-core x86_64 CPU (no GPU), torch 2.13.0 CPU build, 1 thread")
    ap.add_argument("--hours", type=float, default=None, help="wall-clock training time")
    ap.add_argument("--training-data", default=TRAINING_DATA, help="the photos trained on, in words")
    ap.add_argument("--note", nargs="*", default=[], metavar="KEY=VALUE", help="measured facts for the entry's notes")
    ap.add_argument("--int8", dest="storage", action="store_const", const="int8", default="fp16",
                    help="store the large convolution weights as int8 (half of fp16)")
    ap.add_argument("--recipe", type=Path, default=None, help="the recipe, when RUN_DIR has no config.yaml")
    ap.add_argument("--override", nargs="*", default=[], metavar="key=value", help="overrides of --recipe")
    ap.add_argument("--prior-iterations", type=int, default=0,
                    help="iterations of the weights the run started from (its train.init_weights)")
    ap.add_argument("--step", type=int, default=None, help="the run's step of --weights (default: from the run)")
    ap.add_argument("--force", action="store_true", help="replace even if no complete cell improves")
    args = ap.parse_args()
    cells = {}
    for results in args.benchmark or []:
        cells.update(cells_of_results(results, args.benchmark_name or args.record or args.name))
    if args.record:
        if not cells:
            ap.error("--record needs --benchmark")
        entry = record_cells(args.record, cells)
        print(f"{args.record}: recorded {len(cells)} cells ({', '.join(sorted(cells))}); {len(entry.benchmarks)} in all")
        return 0
    if args.run_dir is None or args.name is None:
        ap.error("give RUN_DIR and NAME (or --record NAME)")
    weights, step = _weights_and_step(args.run_dir, args.weights)
    # the run's config holds absolute paths; keep the manifest free of this machine's layout
    repo = WEIGHTS_DIR.parents[2]
    if (args.run_dir / "config.yaml").is_file():
        text = (args.run_dir / "config.yaml").read_text()
    elif args.recipe:
        text = yaml.safe_dump(load_config(args.recipe, args.override).to_dict(), sort_keys=False)
    else:
        raise SystemExit(f"{args.run_dir}: no config.yaml; name the recipe with --recipe (and --override)")
    recipe = yaml.safe_load(text.replace(f"{repo}/", "").replace(f"{repo.parent}/", "../"))
    step = args.step if args.step is not None else step
    if step is None:
        raise SystemExit(f"{weights}: cannot tell the run's step of these weights; give --step")
    notes = dict(item.split("=", 1) for item in args.note)
    try:
        entry = ship(load_model(weights), args.name, recipe=recipe, iterations=step + args.prior_iterations,
                     cells=cells, hardware=args.hardware, training_data=args.training_data, storage=args.storage,
                     training_hours=args.hours, notes=notes, force=args.force)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    print(f"{args.name}: {entry.path} ({entry.bytes / 2**20:.1f} MiB, sha256 {entry.sha256[:12]}…), "
          f"step {entry.iterations}; improved: {', '.join(entry.improved_cells) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
