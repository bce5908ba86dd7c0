"""``kxnet demo``: a local web page to try KXNet on one photo (the ``demo`` extra: Gradio).

:mod:`kxnet.demo.service` is what a request does, with no Gradio in it (the model list, the
size guard, the model kept between requests, one photo run and written as ``kxnet sr`` writes
it); :mod:`kxnet.demo.app` lays it out as a page and serves it (``launch``).
"""

from .service import MAX_MEGAPIXELS, DemoError, DemoService, Outcome, model_choices

__all__ = ["MAX_MEGAPIXELS", "DemoError", "DemoService", "Outcome", "model_choices"]
