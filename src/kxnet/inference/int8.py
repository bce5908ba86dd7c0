"""int8 graphs for CPUs without bf16: a shipped model's quantisation, recorded once, applied to
every LR size's OpenVINO graph.

OpenVINO's graphs have static shapes, one per LR size, and quantising each with NNCF on first
use would cost more time (seconds to tens of seconds of calibration) than int8 saves on one
photo. What NNCF decides does not depend on the size, though: per-tensor activation ranges,
per-channel weight scales and bias corrections. So it is decided once, when a model is
shipped (``scripts/int8_recipe.py``, with NNCF and crops of the training photos), and stored
beside the weights as an :class:`Int8Recipe`; :func:`apply_recipe` then rewrites any size's
float graph into the graph NNCF would have made, in milliseconds, with no NNCF installed
(docs/speed.md, "int8 with accuracy control").

What stays float is the method's engine's to say (KXNet: ``KXNetEngine.int8_float_kept``). Node
names follow the module paths, so they are the same at every size and in the blind and
non-blind graphs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["RECIPE_VERSION", "Int8Recipe", "apply_recipe", "record_recipe", "load_recipe", "save_recipe"]

# Part of the cache key of every int8 graph: bump it when apply_recipe's rewrite changes.
RECIPE_VERSION = 1
LEVELS = 256                               # activations: uint8-like, asymmetric ranges
WEIGHT_LEVELS = 255                        # weights: symmetric int8, −127…127


@dataclass
class Int8Recipe:
    """What turns a float graph into its int8 form. ``activations``: source operation name →
    (input low, input high, output low, output high) of the quantiser on its output;
    ``weights``: convolution name → the per-output-channel ranges of the quantiser on its
    weights (4×C: input low, input high, output low, output high); ``biases``: bias constant
    name → its corrected values."""

    activations: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """A short hash of the recipe (and of the rewrite's version), for cache keys."""
        h = hashlib.sha256(f"v{RECIPE_VERSION}".encode())
        for name in sorted(self.activations):
            h.update(name.encode() + np.asarray(self.activations[name], np.float32).tobytes())
        for table in (self.weights, self.biases):
            for name in sorted(table):
                h.update(name.encode() + np.ascontiguousarray(table[name], np.float32).tobytes())
        return h.hexdigest()[:12]


def _opset():
    from openvino import opset13

    return opset13


def record_recipe(quantised) -> Int8Recipe:
    """The recipe of an NNCF-quantised OpenVINO model whose weights were left as FakeQuantize
    nodes (``backend_params={"compress_weights": False}``): the ranges of every quantiser, by
    the operation whose output it quantises or the convolution whose weights, and the biases of
    the convolutions it quantised (bias correction moved them)."""
    recipe = Int8Recipe()
    for node in quantised.get_ordered_ops():
        if node.get_type_name() != "FakeQuantize":
            continue
        source = node.input_value(0).get_node()
        ranges = [np.asarray(node.input_value(i).get_node().get_data(), np.float32).reshape(-1) for i in range(1, 5)]
        levels = int(node.get_attributes()["levels"])
        if source.get_type_name() == "Constant":
            for target in node.output(0).get_target_inputs():
                conv = target.get_node()
                if conv.get_type_name() != "Convolution" or levels != WEIGHT_LEVELS:
                    raise ValueError(f"{conv.get_friendly_name()}: weights quantised to {levels} levels for a "
                                     f"{conv.get_type_name()}, expected a convolution with {WEIGHT_LEVELS}")
                channels = conv.get_output_partial_shape(0)[1].get_length()
                recipe.weights[conv.get_friendly_name()] = np.stack([np.broadcast_to(r, (channels,)) for r in ranges])
                bias = _bias_constant(conv)
                if bias is not None:
                    recipe.biases[bias.get_friendly_name()] = np.asarray(bias.get_data(), np.float32).reshape(-1).copy()
        else:
            if levels != LEVELS or any(r.size != 1 for r in ranges):
                raise ValueError(f"{source.get_friendly_name()}: expected a per-tensor quantiser of {LEVELS} levels")
            recipe.activations[source.get_friendly_name()] = tuple(float(r[0]) for r in ranges)
    return recipe


def _bias_constant(conv):
    """The Constant a convolution's bias Add adds (the frontend's ``…/aten::_convolution/Add``)."""
    for target in conv.output(0).get_target_inputs():
        add = target.get_node()
        if add.get_type_name() == "Add":
            for value in add.input_values():
                if value.get_node().get_type_name() == "Constant":
                    return value.get_node()
    return None


def apply_recipe(model, recipe: Int8Recipe) -> None:
    """Rewrite the float OpenVINO ``model`` in place into its int8 form: a FakeQuantize after
    every recorded source, a quantiser with the recorded per-channel ranges on each recorded
    convolution's weights (folded into int8 constants, a Convert and a Multiply, as
    ``nncf.quantize`` leaves them) and the corrected biases. Every recorded name must be found."""
    ops = _opset()
    found = set()
    for node in model.get_ordered_ops():
        name = node.get_friendly_name()
        if name in recipe.activations:
            _quantise_output(node, recipe.activations[name], ops)
            found.add(name)
        if name in recipe.weights:
            _quantise_weights(node, recipe.weights[name], ops)
            found.add(name)
            bias = _bias_constant(node)
            if bias is not None and bias.get_friendly_name() in recipe.biases:
                values = recipe.biases[bias.get_friendly_name()]
                old = np.asarray(bias.get_data())
                if old.size != values.size:
                    raise ValueError(f"{bias.get_friendly_name()}: {old.size} biases in the graph, {values.size} in the recipe")
                new = ops.constant(values.reshape(old.shape).astype(old.dtype))
                new.set_friendly_name(bias.get_friendly_name())
                bias.output(0).replace(new.output(0))
                found.add(bias.get_friendly_name())
    missing = (set(recipe.activations) | set(recipe.weights) | set(recipe.biases)) - found
    if missing:
        raise ValueError(f"{len(missing)} operations of the int8 recipe are not in the graph "
                         f"(e.g. {sorted(missing)[0]}): the recipe was made for another graph")
    model.validate_nodes_and_infer_types()
    # the folding nncf.quantize ends with (a private module of OpenVINO's, which NNCF imports
    # too): rounding the weights any other way moved 30 of 48 ×2 convolutions by one level
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(model)


def _quantise_output(node, ranges, ops) -> None:
    consumers = list(node.output(0).get_target_inputs())
    constants = [ops.constant(np.float32(v)) for v in ranges]
    fq = ops.fake_quantize(node.output(0), *constants, LEVELS)
    fq.set_friendly_name(f"{node.get_friendly_name()}/fq_output_0")
    for target in consumers:
        target.replace_source_output(fq.output(0))


def _quantise_weights(conv, ranges: np.ndarray, ops) -> None:
    weights = conv.input_value(1)
    if weights.get_node().get_type_name() != "Constant":
        raise ValueError(f"{conv.get_friendly_name()}: its weights are not a constant")
    shape = (-1,) + (1,) * (len(weights.get_shape()) - 1)
    constants = [ops.constant(np.ascontiguousarray(r, np.float32).reshape(shape)) for r in ranges]
    fq = ops.fake_quantize(weights, *constants, WEIGHT_LEVELS)
    fq.set_friendly_name(f"{conv.get_friendly_name()}/fq_weights_1")
    conv.input(1).replace_source_output(fq.output(0))


# -- files ----------------------------------------------------------------------------------------


def save_recipe(recipe: Int8Recipe, path: str | os.PathLike) -> Path:
    """The recipe as safetensors (``act/…``, ``weights/…``, ``bias/…``), written atomically."""
    import torch
    from safetensors.torch import save as st_save

    from ..io.atomic import atomic_write_bytes

    tensors = {f"act/{k}": torch.tensor(v, dtype=torch.float32) for k, v in recipe.activations.items()}
    tensors.update({f"weights/{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in recipe.weights.items()})
    tensors.update({f"bias/{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in recipe.biases.items()})
    meta = {"format": "kxnet int8 recipe", "version": json.dumps(RECIPE_VERSION)}
    return atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_recipe(path: str | os.PathLike) -> Int8Recipe:
    """A recipe written by :func:`save_recipe`; anything else is a ``ValueError`` naming the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "kxnet int8 recipe":
                raise ValueError(f"{path}: not a kxnet int8 recipe")
            recipe = Int8Recipe()
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                kind, _, name = key.partition("/")
                value = f.get_tensor(key).astype(np.float32)
                if kind == "act":
                    recipe.activations[name] = tuple(float(v) for v in value)
                elif kind == "weights":
                    recipe.weights[name] = value
                elif kind == "bias":
                    recipe.biases[name] = value
                else:
                    raise ValueError(f"{path}: unknown entry {key!r}")
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"{path}: cannot read the int8 recipe ({exc})") from exc
    return recipe
