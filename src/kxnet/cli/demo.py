"""``kxnet demo``: serve a page to try KXNet on a photo in the browser (needs ``kxnet[demo]``).

Binds to 127.0.0.1 unless ``--host`` says otherwise, opens a public share link only with
``--share``, downloads nothing at start; models are loaded on the first request and the last
one is kept. Runs until interrupted.
"""

from __future__ import annotations

from . import BACKEND_CHOICES


def add_parser(sub):
    p = sub.add_parser(
        "demo", help="a local web page to try KXNet on a photo (pip install 'kxnet[demo]')",
        description="Serve a page on which to upload a photo, pick a model and see the result beside the "
                    "input, the estimated kernel with its Gaussian fit and the stages, and download what "
                    "`kxnet sr --save-kernel --stages` writes. Runs until Ctrl+C.",
        epilog="On a page others can reach (--share, or a --host other than this computer) the box for a "
               "weights file is hidden: it would let visitors load files of this computer.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true",
                   help="also open a public link through Gradio's share servers (off by default)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="the engine on the CPU, as kxnet sr --backend (default auto)")
    return p


def run(args) -> int:
    from . import UsageError

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must lie in 1…65535, got {args.port}")
    try:
        from ..demo.app import launch  # imports Gradio (after switching its analytics off)
    except ImportError as e:
        detail = "" if e.name == "gradio" else f" ({' '.join(str(e).split())})"
        raise UsageError(f"the demo needs Gradio{detail}: pip install 'kxnet[demo]'") from None
    try:
        launch(args.host, args.port, share=args.share, device=args.device, backend=args.backend)
    except OSError as e:
        raise UsageError(f"cannot serve on {args.host}:{args.port} ({' '.join(str(e).split())}); "
                         "choose another --port") from None
    return 0
