"""``kxnet train``: train a model from a recipe (``configs/*.yaml``), resume, or run under torchrun."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser(
        "train", help="train KXNet from a recipe (configs/*.yaml); resume a run; works under torchrun",
        description="Train from a YAML recipe. Override any key with dotted key=value pairs, e.g. "
                    "train.iterations=200 'data.hr_dirs=[photos/train]' val.hr_dir=photos/Set5. A recipe names its images (data.hr_dirs; val.hr_dir or val.set_dir unless val.every=0): there is no default folder. "
                    "Multi-GPU: torchrun --nproc_per_node=N -m kxnet train RECIPE.")
    p.add_argument("config", nargs="?", help="recipe YAML (optional with --resume: the run's config.yaml is used)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder (or a .state file) exactly where it stopped")
    p.add_argument("--continue", dest="keep_going", action="store_true",
                   help="resume the recipe's run folder if it holds a checkpoint, else start it (from "
                        "train.init_weights if set): one command to start or continue a long run")
    p.add_argument("--run-dir", help="run folder (default: <out>/<name>, i.e. runs/<recipe name>)")
    p.add_argument("--stop-at", type=int, metavar="STEP", help="stop after this step with a checkpoint (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(takes_trailing_overrides=True)
    return p


def run(args) -> int:
    from ..train import load_config, train
    from ..train.config import ConfigError

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)     # `kxnet train --resume RUN key=value`: no recipe given
        config = None
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if config is None:
        if not args.resume:
            raise ConfigError("give a recipe (configs/*.yaml) or --resume RUN_DIR")
        resume = Path(args.resume)
        config = (resume if resume.is_dir() else resume.parent.parent) / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"{args.resume}: not a run folder (no config.yaml); give the recipe too")
    cfg = load_config(config, overrides)
    resume = args.resume
    if args.keep_going and resume is None:
        from ..train.checkpoint import latest_checkpoint

        run_dir = cfg.resolved_run_dir()
        if latest_checkpoint(run_dir) is not None:
            resume = str(run_dir)      # the recipe as given wins (e.g. more iterations), as with --resume
    summary = train(cfg, resume=resume, stop_at=args.stop_at, progress=not args.no_progress)
    if summary.get("rank", 0) != 0:
        return 0                        # under torchrun only rank 0 reports
    if summary.get("finished"):
        best = summary["best_psnr"]
        extra = f"; best val PSNR {best:.3f} dB at step {summary['best_step']}" if best is not None else ""
        print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s → {summary['weights']}{extra}")
    else:
        print(f"stopped at step {summary['step']}; resume with: kxnet train --resume {summary['run_dir']}")
    return 0
