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


def test_a_script_can_send_just_the_photo(served, tmp_path):
    """`Client(url).predict(handle_file(path), api_name="/run")`, as docs/demo.md shows it: every
    other input has its default (×4 and its default model, blind, regions auto)."""
    from gradio_client import handle_file

    demo, client = served
    assert 'client.predict(handle_file("photo.png"), api_name="/run")' in (REPO / "docs" / "demo.md").read_text()
    params = {p["parameter_name"]: p for p in client.view_api(print_info=False, return_format="dict")
              ["named_endpoints"]["/run"]["parameters"]}
    assert [name for name, p in params.items() if not p["parameter_has_default"]] == ["photo"]
    assert params["scale"]["python_type"]["type"] == "int | str"
    (before, after), _, fit, _, _, summary, _ = client.predict(handle_file(str(crop(tmp_path / "chart.png"))),
                                                                api_name="/run")
    assert Image.open(after).size == (96, 96) and "×4, kxnet_x4" in summary and "σ₁" in fit


@pytest.mark.parametrize("scale", ["2", 2, 2.0, "3", 3])
def test_the_scale_is_a_number_or_its_text_and_picks_its_default_model(served, scale, tmp_path):
    from gradio_client import handle_file

    _, client = served
    (_, after), *_, summary, files = client.predict(handle_file(str(crop(tmp_path / "chart.png"))), scale,
                                                    regions="off", api_name="/run")
    s = int(float(scale))
    assert Image.open(after).size == (24 * s, 24 * s) and f"(×{s}, kxnet_x{s}." in summary


def test_a_scale_outside_2_3_4_is_one_message(served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, client = served
    for scale in ("5", "four"):
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(crop(tmp_path / "chart.png"))), scale, api_name="/run")
        assert f"scale must be 2, 3 or 4 (a number or its text), got '{scale}'" in str(err.value)


def test_concurrent_requests_each_get_their_own_result(served, tmp_path):
    """Four requests in flight at once (the page runs one at a time; the rest wait in its queue),
    each a different photo size and scale: each answer is its own input's result."""
    from gradio_client import handle_file

    _, client = served
    asks = [((20, 24), 2), ((28, 20), "3"), ((24, 32), 2), ((32, 28), 3)]
    photos, jobs = [], []
    for i, ((w, h), scale) in enumerate(asks):
        photo = tmp_path / f"photo{i}.png"
        Image.open(EXAMPLE).crop((30 + 3 * i, 30, 30 + 3 * i + w, 30 + h)).save(photo)
        photos.append(photo)
        jobs.append(client.submit(handle_file(str(photo)), scale, regions="off", api_name="/run"))
    for photo, ((w, h), scale), job in zip(photos, asks, jobs):
        (before, after), *_, files = job.result(timeout=300)
        s = int(scale)
        assert Image.open(after).size == (w * s, h * s) and Image.open(before).size == (w * s, h * s)
        mine = np.asarray(Image.open(photo).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(before).convert("RGB"))[::s, ::s], mine)  # its own input
        sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
        assert sidecar["input"]["path"] == photo.name and sidecar["scale"] == s


def test_a_photo_over_the_size_limit_is_a_message_and_the_next_one_runs(served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    demo, client = served
    side = int((demo.service.max_pixels * 1.05) ** 0.5) + 1         # a real photo just over the limit
    big = tmp_path / "big.png"
    Image.fromarray(np.tile(np.arange(side, dtype=np.uint8), (side, 1))).save(big)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(big)), 2, api_name="/run")
    message = str(err.value)
    assert f"big.png: {side}×{side} is" in message and "kxnet sr --tile 256 big.png" in message
    assert "Traceback" not in message and "\n" not in message
    (_, after), *_ = client.predict(handle_file(str(crop(tmp_path / "chart.png"))), 2, api_name="/run")
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


def test_auto_follows_the_photos_degradation_estimate(served, tmp_path):
    from gradio_client import handle_file

    from kxnet.models.zoo import PHOTO_MODELS, read_manifest

    if PHOTO_MODELS[4] not in read_manifest():
        pytest.skip("no shipped ×4 photo model")
    _, client = served
    jpeg = tmp_path / "q60.jpg"
    Image.open(crop(tmp_path / "c.png", 32)).convert("RGB").save(jpeg, quality=60)
    outs = {}
    for photo in (jpeg, crop(tmp_path / "clean.png", 32)):
        *_, summary, files = client.predict(handle_file(str(photo)), 4, "auto", regions="off", api_name="/run")
        outs[photo.suffix] = (summary, json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text()))
    summary, side = outs[".jpg"]
    assert side["model"]["name"] == PHOTO_MODELS[4] and side["degradation"]["jpeg_quality"] == 60
    assert "JPEG history of quality 60" in summary and "photo model ran" in summary
    summary, side = outs[".png"]
    assert side["model"]["name"] == "kxnet_x4.setting2" and "no JPEG history" in summary


def test_a_kernel_file_runs_non_blind_as_kxnet_sr_kernel_does(served, tmp_path):
    """A known kernel uploaded with the photo: the run is non-blind with exactly that kernel, the
    page shows its fit, and the pixels and the sidecar's kernel are those of `kxnet sr --kernel`."""
    from kxnet.kernels import anisotropic_gaussian
    from kxnet.metrics import fit_label, gaussian_fit

    _, client = served
    photo = crop(tmp_path / "chart.png")
    k = anisotropic_gaussian(11, 0.9, 1.7, 0.6).numpy()
    np.save(tmp_path / "k.npy", k)
    (_, after), _, fit, _, _, summary, files = run(client, photo, kernel=tmp_path / "k.npy")
    sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert sidecar["kernel"]["mode"] == "given" and sidecar["kernel"]["source"] == "k.npy"
    want = gaussian_fit(k)
    assert sidecar["kernel"]["sigma_x"] == pytest.approx(want["sigma_x"], abs=0.01)
    assert sidecar["kernel"]["sigma_y"] == pytest.approx(want["sigma_y"], abs=0.01)
    assert fit_label(want).split(" (")[0] in fit
    # (--stages as the page shows them: that forward runs on PyTorch whatever the backend)
    assert main(["sr", str(photo), "-o", str(tmp_path / "cli"), "--scale", "2", "--model", MODEL, "--regions", "off",
                 "--kernel", str(tmp_path / "k.npy"), "--stages", "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(after)), np.asarray(Image.open(tmp_path / "cli" / "chart_x2.png")))
    cli = json.loads((tmp_path / "cli" / "chart_x2.json").read_text())["kernel"]
    assert {k: v for k, v in sidecar["kernel"].items() if k != "source"} == \
        {k: v for k, v in cli.items() if k != "source"}
    # and blind without it: another kernel, another picture
    (_, blind), *_ = run(client, photo)
    assert not np.array_equal(np.asarray(Image.open(blind)), np.asarray(Image.open(after)))


@contextlib.contextmanager
def page_beyond_this_computer():
    """The page as ``kxnet demo --host 0.0.0.0`` or ``--share`` builds it (``allow_paths=False``),
    served here on 127.0.0.1 only; yields the running Blocks and a client."""
    from gradio_client import Client

    from kxnet.demo.app import build_app
    from kxnet.demo.service import DemoService

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    service = DemoService("cpu")
    demo = build_app(service, allow_paths=False)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    show_error=False, ssr_mode=False, mcp_server=False, pwa=False)
        yield demo, Client(demo.local_url, verbose=False, download_files=str(service.root / "client"))
    finally:
        demo.close()
        service.close()
        torch.set_num_threads(threads)


def test_a_page_others_can_reach_refuses_a_weights_file(tmp_path):
    """Served beyond this computer, the page hides the weights box, and a script that sends a path
    anyway is told why in one line, with nothing read from that path; shipped models still run."""
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    from gradio_client.exceptions import AppError

    from kxnet.demo.service import DemoService
    from kxnet.models import create_model, save_model

    weights = save_model(create_model("kxnet", scale=2, setting=2, stages=1), tmp_path / "mine.safetensors")
    photo = crop(tmp_path / "chart.png")
    with pytest.MonkeyPatch.context() as mp, page_beyond_this_computer() as (demo, client):
        box = next(c for c in demo.config["components"] if str(c["props"].get("label", "")).startswith("Weights file"))
        assert box["props"]["visible"] is False
        asked = []       # every model the service is asked to load
        original = DemoService.model
        mp.setattr(DemoService, "model", lambda self, spec, scale: (asked.append(str(spec)), original(self, spec, scale))[1])
        with pytest.raises(AppError) as err:
            run(client, photo, weights=str(weights))
        message = str(err.value)
        assert "weights files cannot be chosen on a page served beyond this computer" in message
        assert "\n" not in message and "Traceback" not in message and str(weights) not in asked
        (_, after), *_ = run(client, photo)
        assert Image.open(after).size == (48, 48) and asked == [MODEL]
