"""kxnet demo: the page's API end to end through gradio_client — the result, the kernel and
the sidecar (the same as ``kxnet sr`` writes), bad inputs as one readable message with the
server still serving, and where it listens (tests/test_demo_browser.py drives the page itself)."""

import contextlib
import json
import socket
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kxnet.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "chart_x4.png"
MODEL = "kxnet_x2.setting2"      # the cheapest shipped model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_demo(*argv):
    """The page as ``kxnet demo ARGV`` starts it (the CLI's defaults), on a free port, in this
    process; yields the running Blocks. One torch thread: the machine is shared."""
    from kxnet.demo.app import launch

    args = build_parser().parse_args(["demo", "--port", str(free_port()), *argv])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = launch(args.host, args.port, share=args.share, device=args.device, block=False, quiet=True)
    try:
        yield demo
    finally:
        demo.close()
        demo.service.close()
        torch.set_num_threads(threads)


def crop(path: Path, size: int = 24) -> Path:
    Image.open(EXAMPLE).crop((36, 36, 36 + size, 36 + size)).save(path)
    return path


@pytest.fixture(scope="module")
def served():
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    import huggingface_hub.constants as hub
    from gradio_client import Client

    with pytest.MonkeyPatch.context() as mp, running_demo() as demo:
        # the test's client, not the page, would ask huggingface.co for its user-agent registry and
        # send telemetry (the browser test checks that the page itself reaches nothing outside)
        mp.setattr(hub, "HF_HUB_OFFLINE", True)
        mp.setattr(hub, "HF_HUB_DISABLE_TELEMETRY", True)
        yield demo, Client(demo.local_url, verbose=False, download_files=str(demo.service.root / "client"))


def run(client, photo, scale=2, model=MODEL, weights="", kernel=None, regions="off"):
    from gradio_client import handle_file

    return client.predict(handle_file(str(photo)), scale, model, weights,
                          handle_file(str(kernel)) if kernel else None, regions, api_name="/run")


def test_a_photo_end_to_end_writes_what_kxnet_sr_writes(served, tmp_path):
    _, client = served
    photo = crop(tmp_path / "chart.png")
    (before, after), kernel, fit, kernel_map, stages, summary, files = run(client, photo)

    assert Image.open(after).size == (48, 48) and Image.open(before).size == (48, 48)
    assert min(Image.open(kernel).size) >= 168 and Image.open(stages).size[0] > 0
    assert "σ₁" in fit and "σ₂" in fit and "θ" in fit
    assert kernel_map["visible"] is False and kernel_map["value"] is None   # one kernel for 24×24
    assert f"×2, {MODEL}" in summary and "48×48" in summary
    sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert sidecar["model"]["name"] == MODEL and sidecar["scale"] == 2
    assert sidecar["kernel"]["sigma_x"] > 0 and sidecar["kernel"]["mode"] == "blind"
    assert sidecar["input"] == {"path": "chart.png", "width": 24, "height": 24, "mode": "RGB", "bit_depth": 8}

    # the same files, the same sidecar and the same pixels as the command line
    assert main(["sr", str(photo), "-o", str(tmp_path / "cli"), "--scale", "2", "--model", MODEL, "--regions", "off",
                 "--save-kernel", "--stages", "--quiet"]) == 0
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert sorted(Path(f).name for f in files) == cli_files
    cli_sidecar = json.loads((tmp_path / "cli" / "chart_x2.json").read_text())
    assert sidecar.keys() == cli_sidecar.keys()
    for key in ("model", "scale", "kernel", "tiling", "output"):
        if key == "output":
            sidecar[key].pop("path"), cli_sidecar[key].pop("path")
        assert sidecar[key] == cli_sidecar[key], key
    assert np.array_equal(np.asarray(Image.open(after)), np.asarray(Image.open(tmp_path / "cli" / "chart_x2.png")))


def _png_header_only(path: Path, side: int) -> Path:
    """A PNG whose header claims side×side pixels over a few bytes of data: a decompression bomb."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * (side + 1))) + chunk(b"IEND", b""))
    return path


def test_bad_inputs_are_one_readable_message_and_the_server_keeps_serving(served, tmp_path):
    from gradio_client.exceptions import AppError

    _, client = served
    photo = crop(tmp_path / "chart.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(photo.read_bytes()[:300])
    square = tmp_path / "k4.npy"
    np.save(square, np.ones((4, 4)))
    not_model = tmp_path / "model.safetensors"
    not_model.write_text("not a model")
    cases = [
        (dict(photo=text), "notes.png: not a readable image"),
        (dict(photo=truncated), "cut.png: truncated or corrupt image data"),
        (dict(photo=_png_header_only(tmp_path / "bomb.png", 30000)), "bomb.png: refused without decoding"),
        (dict(photo=_png_header_only(tmp_path / "wide.png", 2000)), "kxnet sr --tile 256 wide.png"),
        (dict(photo=photo, kernel=square), "kernel file k4.npy: a kernel must be an odd square"),
        (dict(photo=photo, weights=str(not_model)), "model.safetensors: not a model checkpoint"),
        (dict(photo=photo, scale=4), f"{MODEL} is a ×2 model but ×4 is chosen"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError) as err:
            run(client, **kwargs)
        assert message in str(err.value) and "Traceback" not in str(err.value) and "\n" not in str(err.value)
    (_, after), *_ = run(client, photo)
    assert Image.open(after).size == (48, 48)


def test_listens_on_localhost_only_and_opens_no_share_link(served):
    demo, _ = served
    assert demo.server_name == "127.0.0.1" and demo.share is False and demo.share_url is None
    tcp = Path("/proc/net/tcp")
    if tcp.exists():   # Linux: the address the listening socket is bound to
        port = int(demo.local_url.rstrip("/").rsplit(":", 1)[1])
        bound = set()
        for table in (tcp, Path("/proc/net/tcp6")):
            for line in table.read_text().splitlines()[1:] if table.exists() else []:
                local, state = line.split()[1], line.split()[3]
                address, p = local.rsplit(":", 1)
                if int(p, 16) == port and state == "0A":
                    bound.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))) if len(address) == 8 else address)
        assert bound == {"127.0.0.1"}


def test_without_the_demo_extra_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)     # `import gradio` now raises ImportError
    monkeypatch.delitem(sys.modules, "kxnet.demo.app", raising=False)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "kxnet demo: error: the demo needs Gradio: pip install 'kxnet[demo]'\n"
