"""The ``kxnet`` command: a thin argument layer over the library.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
this file only wires them up and turns the library's errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMANDS = ["sr", "synth", "eval", "train", "convert", "models", "export", "benchmark", "demo"]
# --backend's choices (kxnet.inference.backends.BACKENDS, kept here so --help imports no torch)
BACKEND_CHOICES = ["auto", "torch", "openvino", "openvino-int8"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``kxnet sr: error: --scale: invalid
    choice: 5 (choose from 2, 3, 4)``) and exit code 2, like every other bad input: argparse's
    own prints the whole usage first. ``--help`` still prints the full help. Sub-command parsers
    are made by ``add_subparsers`` in the parent's class, so every sub-command gets this too."""

    def error(self, message: str):
        text = " ".join(str(message).split())
        if text.startswith("argument "):
            text = text[len("argument "):]      # "argument --scale: invalid choice" → "--scale: …"
        self.exit(2, f"{self.prog}: error: {text}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="kxnet", description="Blind super-resolution with KXNet: "
                    "estimates the blur kernel and the sharp image from one photo.")
    parser.add_argument("--version", action="version", version=f"kxnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"kxnet.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kxnet.cli.{name}":
                continue
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..io import ImageError

    errors: list[type[BaseException]] = [UsageError, ImageError, FileNotFoundError, FileExistsError,
                                         IsADirectoryError, NotADirectoryError, ValueError]
    return tuple(errors)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (POLLERR on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):   # no poll (Windows) or no real stdout
        return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a `nargs="*"` positional once, before any option: key=value overrides
    # after an option (`kxnet train CONFIG --resume RUN k=v`) arrive here as extras
    if extra and getattr(args, "takes_trailing_overrides", False) and all("=" in e and not e.startswith("-")
                                                                          for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = args._run(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
    except BrokenPipeError:
        if args.command == "train" or not _stdout_closed():
            raise           # a log pipe breaking mid-training (or stderr) is a failure, not a reader done
        # The reader of our output went away (`kxnet models | head`): what it wanted was printed.
        # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("kxnet: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        print(f"kxnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
