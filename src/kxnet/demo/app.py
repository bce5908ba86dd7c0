"""The demo page: Gradio Blocks over :class:`~kxnet.demo.service.DemoService`.

Left column, the choices in the order they are made (photo or the bundled example, scale,
model, the rarely needed options folded away, the button); right column, what KXNet gives back
in the order it matters: the result against the input on a slider, the estimated kernel with
its Gaussian fit (what sets KXNet apart from a plain upscaler), the kernel per region when the
photo got one, the stages, the downloads. One job at a time, so a laptop's cores are not split
between two photos.

The page works offline: analytics and Gradio's version check are off (set before Gradio is
imported), the theme's fonts are the ones Gradio serves itself, no share tunnel is opened
unless asked, and nothing is fetched at start.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # read at import: telemetry and version check

import logging
from pathlib import Path

import gradio as gr

from ..inference.upscaler import REGION_MODES
from ..metrics import FIT_CONVENTION, fit_label
from .service import DemoError, DemoService, Outcome, example_images, model_choices

__all__ = ["build_app", "launch"]

log = logging.getLogger(__name__)
SCALES = (2, 3, 4)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CSS = "#kernel img { image-rendering: pixelated; }"


def _path_untouched(payload):
    """The uploaded photo's path, the file not opened.

    ``gr.Image`` opens the file with Pillow before the handler runs, so a text file or a
    decompression bomb would fail there with Gradio's generic error instead of the page's
    message; the service checks the file itself (its header first, then a full decode). Set on
    the component instance: a subclass would make Gradio write a ``.pyi`` stub beside this file.
    Gradio has already checked that the file is one of its uploads when this runs.
    """
    if payload is None:
        return None
    if payload.path is None:
        raise gr.Error("the image arrived without a file: upload it again", print_exception=False)
    return payload.path


def _scale_value(payload):
    """The scale as a number: the page sends 2, 3 or 4; a script may send ``4``, ``4.0`` or
    ``'4'`` (the API listed it as text). Radio's own check takes only the choices' exact
    values, so ``'4'`` was refused. Set on the component instance, as :func:`_path_untouched`."""
    if payload is None or (isinstance(payload, str) and not payload.strip()):
        return None
    value = None
    if not isinstance(payload, bool):
        try:
            value = float(str(payload).strip().lstrip("×x"))
        except ValueError:
            pass
    if value not in SCALES:
        raise gr.Error(f"scale must be {', '.join(map(str, SCALES[:-1]))} or {SCALES[-1]} (a number or its "
                       f"text), got {payload!r}", print_exception=False)
    return int(value)


def _scale_api_info() -> dict:
    """How the API lists the scale: a number or its text (``int | str``), not ``Literal['2', …]``."""
    return {"anyOf": [{"type": "integer"}, {"type": "string"}], "title": "Scale",
            "additional_description": f"{', '.join(map(str, SCALES[:-1]))} or {SCALES[-1]}, as a number or its text; "
                                      "the model defaults to the scale's"}


AUTO = "auto"
AUTO_LABEL = "auto — the photo model for a JPEG history, else the paper's model"


def _summary(out: Outcome) -> str:
    sc = out.sidecar
    k, tiling = sc["kernel"], sc["tiling"]
    if k.get("mode") == "given":
        how = f"the given kernel ({k.get('source')})"
    elif (k.get("regions") or {}).get("used"):
        how = "a kernel per region ({}×{})".format(*k["regions"]["grid"])
    elif k.get("sigma_x") is None:
        how = "no HR kernel (this model estimates none)"
    else:
        how = f"the kernel estimated on {_where(k.get('estimated_on'))}"
    tiles = f", {tiling['tiles']} tiles" if tiling["tiled"] else ""
    d = sc.get("degradation")
    seen = ""
    if d:
        seen = (f" The photo shows {'a JPEG history of quality ' + str(d['jpeg_quality']) if d['jpeg_quality'] else 'no JPEG history'}"
                + (f" and noise of σ {d['noise_before_jpeg']:.1f} before it ({d['noise_sigma']:.1f} left)"
                   if d.get("noise_before_jpeg") is not None else
                   f" and {'noise left after it' if d['jpeg_quality'] else 'noise'} of σ {d['noise_sigma']:.1f}")
                + (", so the photo model ran." if d["model_chosen_by"] == "JPEG history" else "."))
    return (f"**{sc['output']['width']}×{sc['output']['height']}** from {sc['input']['width']}×"
            f"{sc['input']['height']} (×{sc['scale']}, {sc['model']['name']}) in **{sc['seconds']:.1f} s** "
            f"on {sc['device']}{tiles}, with {how}.{seen}")


def _where(on) -> str:
    """The sidecar's ``kernel.estimated_on`` in a sentence."""
    if isinstance(on, dict):
        return f"the centre crop ({on['width']}×{on['height']})"
    return "the whole image" if on in (None, "whole image") else on


def _fit(out: Outcome) -> str:
    k = out.sidecar["kernel"]
    if k.get("sigma_x") is None:
        return "This model gives no HR blur kernel."
    what = "Given kernel" if k.get("mode") == "given" else "Estimated kernel"
    return (f"{what}: **{fit_label(k)}** — the Gaussian fitted to it by its moments ({FIT_CONVENTION}; "
            f"the orange ellipse is 2σ).")


def build_app(service: DemoService, allow_paths: bool = True) -> gr.Blocks:
    """The page for ``service``. ``allow_paths`` False (a page others can reach) hides — and
    refuses — the weights-file box, which would let a visitor load files of this computer."""
    from ..models.zoo import default_model, read_manifest

    entries = read_manifest()
    # "auto": the photo's degradation estimate picks the scale's model (the photo model for a
    # JPEG history, the paper's otherwise), as kxnet sr does without --model
    choices = [(AUTO_LABEL, AUTO)] + model_choices(entries)
    scale_of = {name: e.config.get("scale") for name, e in entries.items()}
    start = AUTO if entries else None
    default_scale = 4
    mp = service.max_pixels / 1e6

    def on_scale(scale, model):
        name = default_model(int(scale))
        return gr.update(value=name) if model != AUTO and name in entries else gr.update()

    def on_model(name):
        return gr.update(value=scale_of[name]) if name in scale_of else gr.update()

    # Every input but the photo has a default, so a script may send just the photo
    # (`Client(url).predict(handle_file(path), api_name="/run")`): Gradio lists a parameter as
    # optional when its component has a value or the handler's argument defaults to None. The
    # model's box starts empty (filled by the page's load event) so that a script's default is
    # None — the chosen scale's default model — not the ×4 model whatever the scale.
    def run(photo, scale=None, model=None, weights="", kernel_file=None, regions=None,
            progress=gr.Progress(track_tqdm=True)):
        scale = int(scale) if scale is not None else default_scale
        regions = regions or "auto"
        if not photo:
            raise gr.Error("Upload a photo first (or pick the example below it).", print_exception=False)
        weights = (weights or "").strip()
        if weights and not allow_paths:
            raise gr.Error("weights files cannot be chosen on a page served beyond this computer",
                           print_exception=False)
        progress(0, desc="Loading the model and reading the photo")
        try:
            out = service.run(photo, Path(photo).name, scale=scale, model=weights or (None if model == AUTO else model),
                              kernel_path=kernel_file, kernel_name=Path(kernel_file).name if kernel_file else None,
                              regions=regions, progress=True)
        except DemoError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:      # a failure inside the run (memory…): one line here, the traceback in the log
            log.exception("kxnet demo: the run failed")
            raise gr.Error(f"the run failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
        return ((str(out.before), str(out.result)),
                str(out.kernel_view) if out.kernel_view else None, _fit(out),
                gr.Image(value=str(out.kernel_map) if out.kernel_map else None, visible=out.kernel_map is not None),
                str(out.stages) if out.stages else None,
                _summary(out), [str(p) for p in out.files])

    with gr.Blocks(title="KXNet demo", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## KXNet — blind super-resolution\nUpload a low-resolution photo: KXNet estimates the "
                    f"blur that degraded it (the kernel) and the sharp image. It runs on this computer "
                    f"({service.device}), one photo at a time, up to {mp:g} MP (larger: "
                    f"`kxnet sr --tile 256 photo.jpg`).")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                photo = gr.Image(label="Low-resolution photo", type="filepath", sources=["upload", "clipboard"],
                                 image_mode=None, format="png", height=280, elem_id="photo")
                photo.preprocess = _path_untouched
                gr.Examples([[str(p)] for p in example_images()], inputs=[photo], label="Example")
                scale = gr.Radio([(f"×{s}", s) for s in SCALES], value=default_scale, label="Scale",
                                 info="picks the default model of that scale")
                scale.preprocess, scale.api_info = _scale_value, _scale_api_info
                model = gr.Dropdown(choices, value=None, label="Model",
                                    info="auto follows the photo; or shipped weights, each with its PSNR on Set5 "
                                         "(its blur setting, no noise)")
                with gr.Accordion("More options", open=False):
                    weights = gr.Textbox(label="Weights file on this computer (instead of the list)",
                                         value="", placeholder="/path/to/model.safetensors", visible=allow_paths)
                    kernel_file = gr.File(label="Known blur kernel (.npy, or an image): non-blind",
                                          file_types=[".npy", "image"], type="filepath")
                    regions = gr.Radio(list(REGION_MODES), value="auto", label="A kernel per region",
                                       info="auto: where the photo is large enough and its regions disagree")
                go = gr.Button("Super-resolve", variant="primary", elem_id="run")
                summary = gr.Markdown(label="Summary", elem_id="summary")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Input (each pixel repeated) | result", type="filepath",
                                        format="png", buttons=["download", "fullscreen"], max_height=720,
                                        interactive=False, elem_id="result")
                with gr.Row():
                    with gr.Column(scale=1, min_width=260):
                        kernel = gr.Image(label="Kernel", type="filepath", format="png", interactive=False,
                                          height=300, buttons=["download"], elem_id="kernel")
                        fit = gr.Markdown(label="Kernel fit", elem_id="fit")
                    with gr.Column(scale=2):
                        kernel_map = gr.Image(label="Kernel per region", type="filepath", format="png",
                                              interactive=False, visible=False, elem_id="kernel-map")
                        stages = gr.Image(label="Stages: the image and the kernel as the unfolding refines them",
                                          type="filepath", format="png", interactive=False, elem_id="stages")
                files = gr.File(label="Downloads (what kxnet sr --save-kernel --stages writes)",
                                file_count="multiple", interactive=False, elem_id="downloads")

        demo.load(lambda: start, None, model, api_name="show_default_model", api_visibility="private", queue=False)
        scale.input(on_scale, [scale, model], model, api_visibility="private", queue=False)
        model.input(on_model, model, scale, api_visibility="private", queue=False)
        go.click(run, [photo, scale, model, weights, kernel_file, regions],
                 [slider, kernel, fit, kernel_map, stages, summary, files], api_name="run", concurrency_limit=1)
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, device="auto",
           block: bool = True, quiet: bool = False, backend: str = "auto") -> gr.Blocks:
    """Serve the page at ``host:port`` (a share tunnel only with ``share``); prints the URL.
    ``block`` False returns the running Blocks at once (``.close()`` stops it, and
    ``.service.close()`` removes the request folders)."""
    service = DemoService(device, backend=backend)
    demo = build_app(service, allow_paths=not share and host in LOOPBACK)
    demo.queue(default_concurrency_limit=1, max_size=16)
    examples = sorted({str(p.parent) for p in example_images()})
    try:
        _, local_url, share_url = demo.launch(
            server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
            show_error=False, ssr_mode=False, mcp_server=False, pwa=False, allowed_paths=examples,
            footer_links=["api", "settings"], theme=gr.themes.Default(), css=CSS)
    except BaseException:
        service.close()
        raise
    if not quiet:
        print(f"kxnet demo: {local_url}" + (f" (public link: {share_url})" if share_url else "")
              + (" — Ctrl+C to stop" if block else ""), flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
            service.close()
    else:
        demo.service = service      # for the caller's clean-up
    return demo
