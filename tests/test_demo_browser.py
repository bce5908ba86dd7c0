"""kxnet demo in a real browser: headless Chromium opens the page, uploads a photo, runs it and
sees the result and the kernel; the page and the server reach nothing beyond this computer.

The same code makes the screenshot in the docs::

    python tests/test_demo_browser.py docs/demo.png     # examples/chart_x4.png, the default ×4 model
"""

import contextlib
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium's own connections (updates, sync, field
# trials) are refused on a closed machine and slow every start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCAL = ("127.0.0.1", "localhost", "::1")
_LOADED = "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"


@contextlib.contextmanager
def uploaded(url: str, photo: Path, width: int = 1280, timeout_s: float = 120):
    """Headless Chromium on the page with ``photo`` uploaded and the button pressed; yields the
    page and the list of every request it tried beyond this computer (each one blocked)."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def only_local(route):
        if urlsplit(route.request.url).hostname in LOCAL or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="kxnet-chromium-") as profile:
        browser = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": width, "height": 900})
        try:
            browser.route("**/*", only_local)
            page = browser.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.set_input_files("#photo input[type=file]", str(photo))
            page.wait_for_function(f"() => ({_LOADED})([...document.querySelectorAll('#photo img')])")
            page.click("#run")
            yield page, outside
        finally:
            browser.close()


def drive(url: str, photo: Path, screenshot: Path, width: int = 1280, timeout_s: float = 120) -> dict:
    """Open the page, upload ``photo``, press the button, wait for the result and the kernel;
    save a full-page screenshot. Returns the natural sizes of the images shown and every
    request the page tried to make beyond this computer (each one blocked)."""
    sizes = "els => els.map(e => [e.naturalWidth, e.naturalHeight])"
    with uploaded(url, photo, width, timeout_s) as (page, outside):
        page.wait_for_function(f"() => ({_LOADED})([...document.querySelectorAll('#result img, #kernel img')])"
                               " && document.querySelectorAll('#result img').length >= 2")
        page.wait_for_selector("#downloads a", state="attached")
        shown = {key: page.eval_on_selector_all(f"#{key} img", sizes) for key in ("result", "kernel", "stages")}
        shown["fit"] = page.inner_text("#fit")
        page.screenshot(path=str(screenshot), full_page=True)
    return {**shown, "outside": outside}


def drive_to_a_refusal(url: str, photo: Path, message: str, timeout_s: float = 120) -> str:
    """Open the page, upload ``photo``, press the button and wait until ``message`` shows on the
    page; returns the page's text then (the refusal as a visitor sees it)."""
    with uploaded(url, photo, timeout_s=timeout_s) as (page, _):
        page.wait_for_function("m => document.body.innerText.includes(m)", arg=message)
        return page.inner_text("body")


class _Outbound:
    """Host names looked up and addresses connected to, in this process, that are not this computer."""

    def __init__(self, monkeypatch):
        self.seen: list[str] = []
        lookup, connect = socket.getaddrinfo, socket.socket.connect

        def getaddrinfo(host, *a, **k):
            self._note(host)
            return lookup(host, *a, **k)

        def sock_connect(sock, address):
            if isinstance(address, tuple):
                self._note(address[0])
            return connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", sock_connect)

    def _note(self, host):
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host and host not in LOCAL and not host.startswith("127."):
            self.seen.append(host)


def test_the_page_runs_a_photo_offline(monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from test_demo import crop, running_demo

    outbound = _Outbound(monkeypatch)      # the server side: from its start to the end of the run
    photo = crop(tmp_path / "chart.png")
    with running_demo() as demo:
        seen = drive(demo.local_url, photo, tmp_path / "page.png")
    assert seen["result"] == [[96, 96], [96, 96]]          # the input enlarged, and the ×4 result
    assert seen["kernel"] and all(w >= 168 and h >= 168 for w, h in seen["kernel"])
    assert seen["stages"] and all(w > 0 for w, _ in seen["stages"])
    assert "σ₁" in seen["fit"]
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert seen["outside"] == [], f"the page asked for {seen['outside']}"
    assert outbound.seen == [], f"the server reached {sorted(set(outbound.seen))}"


def test_a_refused_photo_shows_its_message_on_the_page(tmp_path):
    """A photo over the page's size limit: the visitor reads the one-line reason (and the command
    that does take it) on the page, not a bare "Error"."""
    pytest.importorskip("gradio")
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from PIL import Image

    from test_demo import running_demo

    big = tmp_path / "wide.png"
    Image.new("RGB", (1200, 1000), (90, 120, 150)).save(big)      # 1.2 MP, a few kB
    message = "wide.png: 1200×1000 is 1.2 megapixels; this page takes photos up to 1 MP"
    with running_demo() as demo:
        text = drive_to_a_refusal(demo.local_url, big, message)
    assert "kxnet sr --tile 256 wide.png" in text and "Traceback" not in text


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from test_demo import EXAMPLE, running_demo

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/demo.png")
    with running_demo() as demo:
        print(drive(demo.local_url, EXAMPLE, target))
