"""Models on OpenVINO's CPU runtime: :class:`OpenVINORunner` is called like the model.

OpenVINO needs static shapes, so every LR size gets its own graph. Which graphs a method has,
and how the model's arguments map onto them, its descriptor's ``fast_engine`` hook says (an
object with ``scale``, ``kernel_size``, ``check``, ``condition``, ``graph``, ``output`` and
``keep_precise``: KXNet's is :class:`kxnet.models.kxnet.engine.KXNetEngine`); this module
converts, compiles and caches them for any method. The upscaler needs two per size: a photo
larger than a tile is run blind once on a centre crop, then every tile non-blind with that
crop's estimate (:mod:`kxnet.inference.upscaler`).

Converting a graph (tracing plus OpenVINO's PyTorch frontend) takes seconds to tens of
seconds, compiling it well under one, so both are cached:

* in memory, for the process, keyed by (weights fingerprint, LR size, blind / non-blind with
  its kernel size, precision actually used, threads) — two runners of the same weights share
  compiled models;
* on disk under ``cache_dir`` (default ``$KXNET_CACHE`` or ``~/.cache/kxnet``), in
  ``openvino/``: the converted IR (f32, whatever the precision: the CPU plugin applies the
  precision when it compiles) keyed by fingerprint, size and graph, and the compiled model
  (``CompiledModel.export_model``) keyed by the same plus the precision, the OpenVINO version
  and the CPU. OpenVINO's own ``CACHE_DIR`` is not used because it writes its blob in place
  (``std::ofstream`` on the final name), so a second process can read a half-written file;
  here every entry is written under a temporary name in the same folder and renamed.

Precision: ``"f32"``; ``"bf16"``; ``"auto"`` leaves OpenVINO's default for the device, which
is bf16 on CPUs with bf16 instructions (avx512_bf16 or AMX) and f32 elsewhere; ``"int8"``
rewrites each graph by a shipped model's :class:`~kxnet.inference.int8.Int8Recipe` (the X-steps'
prox nets in int8, the rest f32) before it is saved, and keys its cache entries by the recipe.
:attr:`OpenVINORunner.precision` reports what the compiled models use. In bf16 the engine's
``keep_precise`` marks what stays f32 (KXNet: all but the X-steps' prox nets, nearly all of the
FLOPs, as under ``torch.autocast``; docs/speed.md, "Backends"): OpenVINO's "precise" runtime
attribute, set before the IR is saved.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..hardware import BF16_FLAGS, cpu_has_bf16, hidden_flags
from ..io.atomic import atomic_write_bytes
from ..models.loading import weights_fingerprint
from ..models.output import SROutput
from ..models.registry import architecture_of, architectures

__all__ = ["PRECISIONS", "OpenVINORunner", "openvino_available", "default_cache_dir", "clear_memory_cache"]

PRECISIONS = ("auto", "f32", "bf16", "int8")
# Part of every cache key: bump it when a method's engine graphs change, so no stale IR is read.
GRAPH_VERSION = 1
_MEMORY_ENTRIES = 16    # compiled models kept per process (least recently used dropped first)


def engine_methods() -> str:
    """The methods whose descriptor has a ``fast_engine``, by label, for messages (``KXNet``)."""
    return ", ".join(a.label or a.name for a in architectures() if a.fast_engine is not None)


def openvino_available() -> bool:
    """Whether the ``openvino`` package imports (the ``openvino`` extra)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise ImportError("the OpenVINO backend needs the 'openvino' extra: pip install 'kxnet[openvino]'") from exc
    return openvino


def default_cache_dir() -> Path:
    """``$KXNET_CACHE`` if set, else ``~/.cache/kxnet``."""
    return Path(os.environ.get("KXNET_CACHE") or Path.home() / ".cache" / "kxnet")


_core = None
_lock = threading.Lock()     # guards _core, _memory and the builds (one conversion at a time)


def _get_core():
    global _core
    if _core is None:
        _core = _ov().Core()
    return _core


@dataclass
class _Entry:
    """A compiled model and the one infer request the runners reuse for it."""

    compiled: object
    request: object


_memory: OrderedDict[tuple, _Entry] = OrderedDict()


def clear_memory_cache() -> None:
    """Forget every compiled model held in memory (the disk cache stays)."""
    with _lock:
        _memory.clear()


@dataclass
class CacheStats:
    """What a runner had to do to get its compiled models: ``converted`` from PyTorch,
    ``compiled`` from an IR on disk, ``imported`` from a compiled blob on disk, ``reused``
    from memory."""

    converted: int = 0
    compiled: int = 0
    imported: int = 0
    reused: int = 0


class OpenVINORunner:
    """A model of a method with a ``fast_engine`` (KXNet: any scale, stage count and mode, with
    or without a KENet K⁰ estimator) on the OpenVINO CPU runtime; ``runner(y, kernel=None)`` →
    :class:`~kxnet.models.SROutput` like ``model(y, kernel=kernel)``, without the per-stage images.

    ``y`` is B×3×h×w in [0, 1] (batch items run one after another). ``kernel`` None runs blind;
    otherwise it is what the model's forward takes (KXNet: ``stage_kernels`` K¹…K^T of a blind
    run, passed back for other crops of the same image; a p×p / B×p×p kernel runs every stage
    with it; a list of T such kernels runs stage t with the t-th). ``precision`` is ``"auto"``, ``"f32"`` or ``"bf16"``; ``threads`` sets
    ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default, all cores). The weights are
    fingerprinted once, here: do not change the model while the runner is in use. Compiled
    models and their infer requests are shared by runners of the same weights, so call them
    from one thread at a time.
    """

    def __init__(self, model: torch.nn.Module, precision: str = "auto", threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None, snap: int = 0, int8=None):
        try:
            arch = architecture_of(model)
        except TypeError:
            arch = None
        if arch is None or arch.fast_engine is None:
            raise TypeError(f"OpenVINORunner takes a plain model of a method with a compiled engine ({engine_methods()}; "
                            f"not an optimize()d one), got {type(model).__name__}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if (precision == "int8") != (int8 is not None):
            raise ValueError("precision 'int8' takes an int8 recipe (int8=), and an int8 recipe precision 'int8'")
        _ov()
        param = next(model.parameters())
        if param.dtype != torch.float32 or param.device.type != "cpu":
            model = copy.deepcopy(model).to("cpu", torch.float32)   # Module.to works in place
        self.model = model
        self.config = model.config
        self.engine = arch.fast_engine(model)
        self.scale = self.engine.scale
        self.kernel_size = self.engine.kernel_size
        self.fingerprint = weights_fingerprint(model)
        self.requested_precision = precision
        self.int8 = int8
        self.requested_threads = None if threads is None else int(threads)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.stats = CacheStats()
        self._last: _Entry | None = None
        # Every new input size is a new graph (seconds to convert); padding a tile up to a multiple
        # of ``snap`` (edge replication, cropped off the output) bounds how many there are. Blind
        # runs are never padded: their kernel is estimated from the whole input, and replicated
        # edges moved complete Set5 ×2 cells by up to 0.33 dB an image (docs/speed.md).
        self.snap = int(snap)

    # -- what the compiled models use -------------------------------------------------

    def _config(self) -> dict:
        config = {"PERFORMANCE_HINT": "LATENCY"}   # one request at a time: all threads on it
        # OpenVINO pins its threads to cores it picks without knowing of other processes: two
        # one-thread processes (torchrun, two cores) both landed on one core and ran at half
        # speed; unpinned, each keeps its own (and one process runs as fast): docs/speed.md
        config["ENABLE_CPU_PINNING"] = False
        if self._precision_hint() is not None:
            config["INFERENCE_PRECISION_HINT"] = self._precision_hint()
        if self.requested_threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.requested_threads
        return config

    def _precision_hint(self) -> str | None:
        """What OpenVINO is asked for: None leaves its default (``"auto"``). With bf16 hidden
        (``$KXNET_HIDE_CPU_FLAGS``) so that none is left, the answer is f32, which OpenVINO
        gives a CPU without it; hiding AMX alone leaves AVX-512 BF16, and bf16 with it. An int8
        graph's float parts run in f32."""
        if self.requested_precision == "int8":
            return "f32"
        if self.requested_precision != "f32" and hidden_flags() & set(BF16_FLAGS) and not cpu_has_bf16():
            return "f32"
        return None if self.requested_precision == "auto" else self.requested_precision

    def _resolved_precision(self) -> str:
        if self._precision_hint() is not None:
            return self._precision_hint()
        return _get_core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()

    @property
    def precision(self) -> str:
        """The inference precision in use (``"f32"`` or ``"bf16"``): the last compiled model's
        ``INFERENCE_PRECISION_HINT``, or the device default that ``"auto"`` will get; ``"int8"``
        for int8 graphs."""
        if self.requested_precision == "int8":
            return "int8"
        if self._last is not None:
            return self._last.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return self._resolved_precision()

    @property
    def threads(self) -> int:
        """``INFERENCE_NUM_THREADS`` of the last compiled model (or the device's, before any)."""
        target = self._last.compiled if self._last is not None else None
        if target is None:
            return self.requested_threads or int(_get_core().get_property("CPU", "INFERENCE_NUM_THREADS"))
        return int(target.get_property("INFERENCE_NUM_THREADS"))

    # -- inference --------------------------------------------------------------------

    def __call__(self, y: torch.Tensor, kernel=None) -> SROutput:
        blind = kernel is None
        y = self._check_image(y)
        b, _, h, w = y.shape
        condition = None if blind else self.engine.condition(kernel, b)   # B×… float32, last axis p
        p = self.kernel_size if blind else condition.shape[-1]
        self.engine.check(h, w, p, blind)

        if self.snap and not blind:
            ph, pw = -(-h // self.snap) * self.snap, -(-w // self.snap) * self.snap
            if (ph, pw) != (h, w):
                y = torch.nn.functional.pad(y, (0, pw - w, 0, ph - h), mode="replicate")
        entry = self._entry(tuple(y.shape[-2:]), blind, p)
        images = y.numpy()
        srs, estimates = [], []
        last = len(entry.compiled.outputs) - 1
        for i in range(b):
            inputs = {0: np.ascontiguousarray(images[i:i + 1])}
            if not blind:
                inputs[1] = np.ascontiguousarray(condition[i:i + 1])
            entry.request.infer(inputs)
            srs.append(torch.from_numpy(entry.request.get_output_tensor(0).data.copy()))
            if blind:   # the blind graph's last output: its estimate, as the non-blind one takes it
                estimates.append(torch.from_numpy(entry.request.get_output_tensor(last).data.copy()))
        sr = torch.cat(srs)[..., : self.scale * h, : self.scale * w]
        return self.engine.output(sr, torch.cat(estimates) if blind else torch.from_numpy(condition))

    def compiled_model(self, size: tuple[int, int], blind: bool = True, kernel_size: int | None = None):
        """The ``openvino.CompiledModel`` for LR ``size`` (from memory, disk, or built now)."""
        return self._entry((int(size[0]), int(size[1])), blind, kernel_size or self.kernel_size).compiled

    def _check_image(self, y) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != 3:
            shape = tuple(y.shape) if hasattr(y, "shape") else type(y).__name__
            raise ValueError(f"expected a B×3×h×w image batch, got shape {shape}")
        if not y.is_floating_point():
            raise ValueError(f"expected a float image batch in [0, 1], got dtype {y.dtype}")
        y = y.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(y).all():
            raise ValueError("LR image has non-finite values (NaN or ±inf)")
        return y

    # -- caches -----------------------------------------------------------------------

    def _entry(self, size: tuple[int, int], blind: bool, p: int) -> _Entry:
        graph = ("blind" if blind else f"nonblind{p}") + (f"-int8-{self.int8.digest}" if self.int8 else "")
        precision = self._resolved_precision()
        key = (self.fingerprint, size, graph, precision, self.requested_threads)
        with _lock:
            entry = _memory.get(key)
            if entry is not None:
                _memory.move_to_end(key)
                self.stats.reused += 1
            else:
                entry = self._build(size, blind, p, graph, precision)
                _memory[key] = entry
                while len(_memory) > _MEMORY_ENTRIES:
                    _memory.popitem(last=False)
        self._last = entry
        return entry

    def _names(self, size, graph, precision) -> tuple[Path, Path]:
        ov = _ov()
        root = self.cache_dir / "openvino"
        stem = f"{self.fingerprint}-g{GRAPH_VERSION}-{size[0]}x{size[1]}-{graph}"
        # a compiled blob is only valid for the OpenVINO build and CPU that wrote it
        cpu = _get_core().get_property("CPU", "FULL_DEVICE_NAME")
        target = hashlib.sha256(f"{ov.get_version()}|{cpu}".encode()).hexdigest()[:10]
        return root / "ir" / stem, root / "compiled" / f"{stem}-{precision}-{target}.blob"

    def _build(self, size, blind, p, graph, precision) -> _Entry:
        core = _get_core()
        config = self._config()
        ir_dir, blob = self._names(size, graph, precision)
        compiled, source = None, None
        if blob.is_file():
            # the CPU plugin recompiles an imported model with the config given here, so it must
            # be the full one; a blob that fails to import or compiled to another precision is redone
            with contextlib.suppress(RuntimeError):
                compiled = core.import_model(blob.read_bytes(), "CPU", config)
                source = "blob"
                if compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() != precision:
                    compiled = None
        if compiled is None:
            ir = ir_dir / "model.xml"
            model = None
            if ir.is_file():
                try:
                    model = core.read_model(ir)
                    source = "ir"
                except RuntimeError:   # unreadable (written by another OpenVINO?): convert again
                    shutil.rmtree(ir_dir, ignore_errors=True)
            if model is None:
                self._save_ir(self._convert(size, blind, p), ir_dir)
                model = core.read_model(ir)
                source = "converted"
            compiled = core.compile_model(model, "CPU", config)
            blob.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(blob, compiled.export_model().getvalue())
        counter = {"converted": "converted", "ir": "compiled", "blob": "imported"}[source]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        return _Entry(compiled, compiled.create_infer_request())

    def _convert(self, size, blind, p):
        """The engine's static-shape graph, traced and converted by OpenVINO's PyTorch frontend."""
        net, example = self.engine.graph(size, blind, p)
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings from input checks (KENet's), which hold for this fixed size
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net.eval(), example, check_trace=False)
            model = _ov().convert_model(traced, example_input=example)
        if self.int8 is not None:
            from .int8 import apply_recipe

            apply_recipe(model, self.int8)
        else:
            self.engine.keep_precise(model)
        return model

    @staticmethod
    def _save_ir(model, ir_dir: Path) -> None:
        """Write the IR (xml + bin) into a temporary folder beside ``ir_dir`` and rename the
        folder, so a reader sees both files or neither; if another process got there first,
        its (equal) copy is kept."""
        ir_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ir_dir.name}.", suffix=".tmp", dir=ir_dir.parent))
        try:
            # no fp16 compression: the IR must hold the f32 weights bit for bit
            _ov().save_model(model, tmp / "model.xml", compress_to_fp16=False)
            try:
                os.replace(tmp, ir_dir)
            except OSError:
                if not (ir_dir / "model.xml").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

