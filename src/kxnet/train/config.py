"""Typed training recipes: dataclasses loaded from YAML, with dotted ``key=value`` overrides.

A recipe is data, not code (BasicSR's one-YAML-per-experiment): the six paper recipes and
the small CPU ones live in ``configs/``. Every key is checked against the dataclasses below,
so a typo or a bad value fails at load time with one line naming the file and the key, never
hours into a run.
"""

from __future__ import annotations

import difflib
import types
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from ..degrade.photo import PhotoMix, parse_degradation
from ..models.config import to_plain

__all__ = [
    "AMP_MODES",
    "SCHEDULES",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "ValConfig",
    "apply_overrides",
    "build_model",
    "config_from_dict",
    "load_config",
    "save_config",
]

AMP_MODES = ("none", "bf16", "fp16", "auto")
SCHEDULES = ("multistep", "cosine", "constant")
SMALL_IMAGE_POLICIES = ("pad", "skip")


class ConfigError(ValueError):
    """A recipe that cannot be used; the message is one line naming the file and the key."""


# ------------------------------------------------------------------------------- schema

@dataclass
class ModelConfig:
    """The model a recipe trains: ``name``, a registered factory (``kxnet``, ``dan``,
    ``usrnet_tiny``, …), and its arguments, written beside the name in the recipe
    (``scale: 4``, ``stages: 4``, …) and checked against the fields of the factory's
    architecture's config class (:class:`~kxnet.models.KXNetConfig`, …)."""

    name: str = "kxnet"
    args: dict = field(default_factory=dict)

    @property
    def architecture(self):
        from ..models import factory_architecture

        return factory_architecture(self.name)

    def method_config(self):
        """The architecture's config these arguments describe (checked by its own class)."""
        cls = self.architecture.config_class
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in self.args.items() if k in names})

    @property
    def scale(self) -> int:
        return self.method_config().scale

    @property
    def setting(self) -> int:
        return self.method_config().setting

    def factory_kwargs(self) -> dict:
        return dict(self.args)

    def to_dict(self) -> dict:
        return {"name": self.name, **to_plain(self.args)}


@dataclass
class DataConfig:
    """HR folders and the on-the-fly degradation (docs/protocol.md, "Test sets", training batches)."""

    hr_dirs: list[str] = field(default_factory=list)   # the recipe names them (no default folder)
    recursive: bool = True
    lr_patch: int = 64              # LR crop side; the HR crop is lr_patch·scale
    small_images: str = "pad"       # images smaller than the HR crop: "pad" (mirror, if ≥ half the crop) or "skip"
    cache_in_memory: bool = True
    cache_mb: int = 4096            # byte budget of decoded images held in memory (per process)
    workers: int = 4                # DataLoader worker processes (0 = in the training process)
    hflip: bool = True
    vflip: bool = True
    transpose: bool = True
    photo: PhotoMix | None = None   # degradations beyond the paper (camera noise, JPEG): docs/photo.md


# Before each method had its own loss-weights class, train.loss held the union of them all and
# each objective read its own; a recipe or checkpoint of that time still loads, the keys its
# method never read being dropped (they changed nothing then either).
_LEGACY_LOSS_KEYS = frozenset({"image_weight", "image_weight_last", "kernel_weight", "kernel_weight_last",
                               "code_weight", "monotone_weight", "att_lambda", "att_rho"})


@dataclass
class TrainConfig:
    iterations: int = 1_000_000
    batch: int = 12                 # global batch (split across DDP ranks)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "multistep"     # multistep (×gamma at each milestone) | cosine (to min_lr at iterations) | constant
    milestones: list[int] = field(default_factory=lambda: [200_000, 400_000, 600_000, 800_000, 1_000_000])
    gamma: float = 0.5
    min_lr: float = 0.0             # cosine: the learning rate at the last iteration
    decay_start: int = 0            # cosine: hold lr until this step, then decay to min_lr at iterations
    warmup: int = 0                 # steps of linear warm-up from lr/warmup to lr (any schedule)
    nonblind: bool = False          # give the model the true kernels (X-steps learn to use a correct kernel)
    grow_stages: bool = False       # init_weights with fewer stages: extra stages start as copies of the last
    lr_mult: dict = field(default_factory=dict)   # {parameter-name pattern: multiplier of lr}, e.g. {gamma_stage: 100}; 0 freezes
    cpu_budget_h: float = 0.0       # also finish once the run has used this much CPU time (0 = no limit):
                                    # equal-budget comparisons between recipes and methods
    clip_grad_norm: float = 0.0     # 0 = no clipping
    ema_decay: float = 0.0          # 0 = no EMA; otherwise the EMA weights are validated and exported
    loss: Any = None                # the architecture's loss weights (KXNetLoss, DANLoss, …); default: its defaults
    seed: int = 0
    deterministic: bool = False
    threads: int = 0                # torch intra-op threads; 0 = leave torch's default
    device: str = "auto"            # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    amp: str = "none"               # none | bf16 | fp16 (autocast; fp16 adds a gradient scaler) | auto (bf16 on a CPU with bf16)
    channels_last: bool = False
    compile: bool = False
    init_weights: str | None = None  # start from these weights (safetensors or .pth), step 0
    log_every: int = 100
    tensorboard: bool = True


@dataclass
class ValConfig:
    hr_dir: str | None = None       # HR images to validate on; the recipe names them (or set_dir)
    set_dir: str | None = None      # a `kxnet synth` set; default: built from hr_dir into the run folder
    every: int = 5000               # 0 = no validation
    noise: float = 0.0
    degradation: str = ""           # instead of noise, one beyond the paper: "5+jpeg75", "cam+jpeg90" (docs/photo.md)
    extra: list[str] = field(default_factory=list)   # more degradations scored at each validation (logged, not ranked)
    images: list[str] = field(default_factory=list)  # file names or stems to use from hr_dir ([] = all)
    max_images: int = 0             # at most this many of them, in name order (0 = no limit)
    per_stage: bool = True
    loss_samples: int = 16          # fixed random patches of the val images for a validation loss (0 = off)
    at_start: bool = False          # also validate the initial weights


@dataclass
class CheckpointConfig:
    every: int = 5000               # 0 = only at the end (and when stopped)
    keep_last: int = 3
    keep_best: bool = True
    export_fp16: bool = False       # the final exported weights (model.safetensors) in float16


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig = field(default_factory=ValConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    name: str | None = None         # run name; default: the recipe file's stem
    out: str = "runs"               # root of run folders
    run_dir: str | None = None      # explicit run folder (default: out/name)

    def to_dict(self) -> dict:
        d = to_plain(asdict(self))
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "Config":
        return config_from_dict(d, source)

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return Path(self.out) / (self.name or "run")

    def with_absolute_paths(self) -> "Config":
        """Relative paths are relative to the working directory; a run stores them absolute."""
        def absolute(p: str | None) -> str | None:
            return None if p is None else str(Path(p).expanduser().resolve())

        return replace(self, data=replace(self.data, hr_dirs=[absolute(d) for d in self.data.hr_dirs]),
                       val=replace(self.val, hr_dir=absolute(self.val.hr_dir), set_dir=absolute(self.val.set_dir)),
                       train=replace(self.train, init_weights=absolute(self.train.init_weights)),
                       run_dir=str(self.resolved_run_dir().expanduser().resolve()), out=absolute(self.out))

    def require_data(self, source: str | None = None) -> "Config":
        """Check that the recipe names its images, which have no default: ``data.hr_dirs`` (the
        training photos) and, where it validates, ``val.hr_dir`` or ``val.set_dir``. A training
        run calls it; loading a recipe does not, so a partial recipe completed by overrides loads."""
        source = source or self.name or "config"
        if not self.data.hr_dirs:
            raise ConfigError(f"{source}: data.hr_dirs: the recipe names no training images; give one or more "
                              f"folders of HR images (data.hr_dirs: [FOLDER, …], or 'data.hr_dirs=[FOLDER]' on the "
                              f"command line)")
        v = self.val
        if (v.every or v.at_start) and not (v.hr_dir or v.set_dir):
            raise ConfigError(f"{source}: val.hr_dir: the recipe validates (val.every, val.at_start) but names no "
                              f"validation images; give val.hr_dir (a folder of HR images, e.g. Set5) or val.set_dir "
                              f"(a `kxnet synth` set), or val.every=0 to train without validation")
        return self

    def validate(self, source: str = "config") -> "Config":
        """Check values that types alone cannot; raises :class:`ConfigError`."""
        def fail(key: str, msg: str):
            raise ConfigError(f"{source}: {key}: {msg}")

        m, d, t, v, c = self.model, self.data, self.train, self.val, self.checkpoint
        _check_model(fail, m)
        _positive(fail, "data.lr_patch", d.lr_patch, minimum=4)
        if d.small_images not in SMALL_IMAGE_POLICIES:
            fail("data.small_images", f"must be one of {SMALL_IMAGE_POLICIES}, got {d.small_images!r}")
        _positive(fail, "data.cache_mb", d.cache_mb, minimum=0)
        _positive(fail, "data.workers", d.workers, minimum=0)
        for key, problem in (d.photo.check() if d.photo is not None else []):
            fail(f"data.photo.{key}", f"must be {problem}")
        _positive(fail, "train.iterations", t.iterations)
        _positive(fail, "train.batch", t.batch)
        if not t.lr > 0:
            fail("train.lr", f"must be > 0, got {t.lr}")
        if not all(0.0 <= b < 1.0 for b in t.betas):
            fail("train.betas", f"each must be in [0, 1), got {list(t.betas)}")
        if t.weight_decay < 0:
            fail("train.weight_decay", f"must be ≥ 0, got {t.weight_decay}")
        if any(x < 1 for x in t.milestones) or list(t.milestones) != sorted(set(t.milestones)):
            fail("train.milestones", f"must be increasing positive steps, got {list(t.milestones)}")
        if not 0 < t.gamma <= 1:
            fail("train.gamma", f"must be in (0, 1], got {t.gamma}")
        if t.schedule not in SCHEDULES:
            fail("train.schedule", f"must be one of {SCHEDULES}, got {t.schedule!r}")
        if not 0 <= t.min_lr <= t.lr:
            fail("train.min_lr", f"must be in [0, train.lr], got {t.min_lr}")
        _positive(fail, "train.warmup", t.warmup, minimum=0)
        if not 0 <= t.decay_start < t.iterations:
            fail("train.decay_start", f"must be in [0, train.iterations), got {t.decay_start}")
        for pattern, mult in t.lr_mult.items():
            if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult < 0:
                fail(f"train.lr_mult.{pattern}", f"must be a number ≥ 0 (0 freezes), got {mult!r}")
        if t.cpu_budget_h < 0:
            fail("train.cpu_budget_h", f"must be ≥ 0 (0 = no limit), got {t.cpu_budget_h}")
        if t.grow_stages and not t.init_weights:
            fail("train.grow_stages", "needs train.init_weights (the model to grow from)")
        if t.clip_grad_norm < 0:
            fail("train.clip_grad_norm", f"must be ≥ 0 (0 = off), got {t.clip_grad_norm}")
        if not 0 <= t.ema_decay < 1:
            fail("train.ema_decay", f"must be in [0, 1) (0 = off), got {t.ema_decay}")
        for key, value in (asdict(t.loss) if t.loss is not None else {}).items():
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(x < 0 for x in values):
                fail(f"train.loss.{key}", f"must be ≥ 0, got {value}")
            if key == "att_lambda" and not all(x < 1 for x in values):
                fail(f"train.loss.{key}", f"each must be in [0, 1), got {list(values)}")
        _positive(fail, "train.seed", t.seed, minimum=0)
        _positive(fail, "train.threads", t.threads, minimum=0)
        if t.device != "auto" and t.device != "cpu" and not (t.device == "cuda" or t.device.startswith("cuda:")):
            fail("train.device", f"must be auto, cpu, cuda or cuda:N, got {t.device!r}")
        if t.amp not in AMP_MODES:
            fail("train.amp", f"must be one of {AMP_MODES}, got {t.amp!r}")
        _positive(fail, "train.log_every", t.log_every)
        _positive(fail, "val.every", v.every, minimum=0)
        if v.noise < 0:
            fail("val.noise", f"must be ≥ 0, got {v.noise}")
        if v.noise and m.setting == 1:
            fail("val.noise", "setting 1 is noise-free; use 0")
        if v.degradation and v.noise:
            fail("val.degradation", "replaces val.noise (write the noise into it, e.g. 5+jpeg75); set val.noise=0")
        specs = ([("val.degradation", v.degradation)] if v.degradation else []) + [("val.extra", e) for e in v.extra]
        for key, spec in specs:
            try:
                how = parse_degradation(spec)
            except ValueError as e:
                fail(key, str(e))
            if m.setting == 1 and not (how.is_paper and how.noise == 0):
                fail(key, "setting 1 validates on its own noise-free protocol only")
        _positive(fail, "val.max_images", v.max_images, minimum=0)
        _positive(fail, "val.loss_samples", v.loss_samples, minimum=0)
        _positive(fail, "checkpoint.every", c.every, minimum=0)
        _positive(fail, "checkpoint.keep_last", c.keep_last)
        return self


def _check_model(fail, m: ModelConfig) -> None:
    """The factory exists and its arguments are fields of its architecture's config, with
    values that config accepts."""
    from ..models import is_model, list_models

    if not is_model(m.name):
        close = difflib.get_close_matches(m.name, list_models(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fail("model.name", f"unknown model {m.name!r}{hint} (known: {', '.join(list_models())})")
    arch = m.architecture
    known = [f.name for f in fields(arch.config_class)]
    for key in m.args:
        if key not in known:
            fail(f"model.{key}", _unknown_key_message(f"model.{key}", key, known).split(": ", 1)[-1]
                 + f" of a {arch.name} model")
    try:
        m.method_config()
    except (TypeError, ValueError) as e:
        fail("model", str(e))


def build_model(cfg: Config):
    """The architecture a recipe names, freshly initialised (seed the RNG first)."""
    from ..models import create_model

    m = cfg.model
    try:
        model = create_model(m.name, **m.factory_kwargs())
    except TypeError as e:
        raise ValueError(f"model.name {m.name!r} does not take {sorted(m.factory_kwargs())} ({e})") from None
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model {m.name!r} has no trainable parameters")
    return model


def _positive(fail, key: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        fail(key, f"must be ≥ {minimum}, got {value}")


# ------------------------------------------------------------------------ typed building

def _describe(tp) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is tuple:
        return f"a list of {len(get_args(tp))} numbers"
    if is_dataclass(tp) or tp is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp, key: str):
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, key)
    if tp is Any:                      # typed later (train.loss, by the model's architecture)
        return value
    if tp is dict:                     # free-form arguments (model.args): checked by their user
        if not isinstance(value, dict):
            raise _Mismatch
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)          # 1.0e6 written for a step count
        raise _Mismatch
    if tp is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):     # PyYAML reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        (item,) = get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]            # a single folder for hr_dirs, a single milestone
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_coerce(v, item, key) for v in value]
    if origin is tuple:
        items = get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise _Mismatch
        return tuple(_coerce(v, a, key) for v, a in zip(value, items))
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _unknown_key_message(key: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (known here: {', '.join(known)})"


class _KeyError(Exception):
    """Internal: a message that still needs the source prefix."""


def _build(cls, data: dict, prefix: str = ""):
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise _KeyError(_unknown_key_message(key, str(k), names))
        try:
            kwargs[k] = _coerce(v, hints[k], key)
        except _Mismatch:
            raise _KeyError(f"{key}: expected {_describe(hints[k])}, got {v!r}") from None
    return cls(**kwargs)


def config_from_dict(data: dict | None, source: str = "config") -> Config:
    """A validated :class:`Config` from a nested dict (missing keys take the defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    model = data.get("model")
    if model is not None and not isinstance(model, dict):
        raise ConfigError(f"{source}: model: expected a mapping, got {model!r}")
    data["model"] = _model_section(model or {})
    train = data.get("train")
    raw_loss = train.get("loss") if isinstance(train, dict) else None
    try:
        cfg = _build(Config, data)
        cfg.train.loss = _loss_weights(cfg.model, raw_loss)
    except _KeyError as e:
        raise ConfigError(f"{source}: {e}") from None
    except ValueError as e:     # an unknown model name: validate() says it with the known ones
        if "unknown model" not in str(e):
            raise
        cfg.train.loss = None
    return cfg.validate(source)


def _model_section(model: dict) -> dict:
    """``{name, arg: value, …}`` → ``{name, args}``; a recipe of the earlier layout kept the
    arguments other than scale/setting/stages/mode under ``args``, and null meant the default."""
    model = dict(model)
    name = model.pop("name", ModelConfig.name)
    legacy = model.pop("args", None) or {}
    args = {**model, **legacy}
    return {"name": name, "args": {k: v for k, v in args.items() if v is not None}}


def _loss_weights(model: ModelConfig, raw):
    """``train.loss`` as the architecture's loss-weights dataclass (None for a method trained
    as separate parts, which has none); a key of no method is refused with the known ones."""
    objective = model.architecture.objective
    cls = objective.weights if objective is not None else None
    raw = dict(raw or {})
    names = [f.name for f in fields(cls)] if cls is not None else []
    for k in raw:
        if k not in names and k not in _LEGACY_LOSS_KEYS:
            raise _KeyError(_unknown_key_message(f"train.loss.{k}", k, names)
                            + f" for a {model.architecture.name} model")
    if cls is None:
        return None
    return _build(cls, {k: v for k, v in raw.items() if k in names}, "train.loss")


# ----------------------------------------------------------------------------- overrides

def _schema_type(path: list[str], override: str):
    cls = Config
    for i, name in enumerate(path):
        if get_origin(cls) in (Union, types.UnionType):   # an optional section (data.photo): its dataclass
            cls = next((a for a in get_args(cls) if is_dataclass(a)), cls)
        if cls is dict or cls is Any:  # train.loss.x: checked once the model is known
            return Any
        if cls is ModelConfig and name != "name":   # model.stages=6: the architecture checks it
            return Any
        if not is_dataclass(cls):
            raise ConfigError(f"override {override!r}: {'.'.join(path[:i])} is not a section")
        names = [f.name for f in fields(cls)]
        if name not in names:
            raise ConfigError(f"override {override!r}: " + _unknown_key_message('.'.join(path[:i + 1]), name, names))
        cls = get_type_hints(cls)[name]
    return cls


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set dotted keys in a raw config dict: ``["train.iterations=200", "data.hr_dirs=[a, b]"]``.

    Values are parsed with ``yaml.safe_load`` (so numbers, booleans, lists and ``null`` work);
    unknown keys fail here, naming the override.
    """
    data = dict(data or {})
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        path = key.strip().split(".")
        if not all(path):
            raise ConfigError(f"override {item!r}: empty key")
        _schema_type(path, item)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = data
        for name in path[:-1]:
            child = node.get(name)
            child = dict(child) if isinstance(child, dict) else {}
            node[name] = child
            node = child
        node[path[-1]] = value
    return data


# ---------------------------------------------------------------------------------- files

def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a recipe, apply overrides, validate. ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    data = apply_overrides(data, overrides)
    if data.get("name") is None:
        data["name"] = path.stem
    return config_from_dict(data, str(path))


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML atomically (the run folder's ``config.yaml``)."""
    from ..io import atomic_write_bytes

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write_bytes(path, text.encode("utf-8"))
