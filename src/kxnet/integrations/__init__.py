"""kxnet's models inside other programs' model loaders (docs/integrations.md).

* :mod:`kxnet.integrations.spandrel`: ``install()`` makes spandrel (the loader of ComfyUI and
  chaiNNer) recognise and load kxnet's weights files and the authors' ``.pth`` layouts.

Nothing here is imported by ``import kxnet``: each submodule needs its host library.
"""
