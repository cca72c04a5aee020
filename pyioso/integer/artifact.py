"""The versioned artifact: the integer network on disk, and nothing float that golden needs.

A directory with

* ``manifest.json``: format and version, the network (input preprocessing, classes), how it was
  calibrated, every tensor's coding and storage permutation, and the graph of integer ops with
  their scalar fields;
* ``arrays.safetensors``: every integer array (weights, ISG codes, M and B tables,
  permutations), int64, in the safetensors layout (an 8-byte header length, a JSON header, raw
  little-endian data), written with sorted keys so equal networks give equal bytes.

The manifest records the arrays file's SHA-256 and a digest of everything it means (its own
content, that hash included), so an artifact edited after export is refused, not run. Loading
checks version, digest, hash, keys and shapes, every descriptor's own validation, and `validate`:
every field against the spec, naming the step and the field. Saving writes a temporary directory
and renames it, so no reader ever sees half an artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import golden
from golden.errors import PyiosoError
from golden.layers import (check_accumulator, check_bits, check_bn_product, check_multipliers,
                           check_zero_point, scaled_weights, uniform_tiles)
from golden.spec import GRANULARITY, W_ACC, W_M, W_T
from pyioso.data.datasets import FASHION, labelled_images, sample_photos
from pyioso.integer import intnet
from pyioso.quant.layer import Coding

FORMAT, VERSION = "pyioso-artifact", 2
MANIFEST, ARRAYS = "manifest.json", "arrays.safetensors"
_OPS = {cls.__name__: cls for cls in (golden.Conv, golden.Add, golden.AvgPool, golden.MaxPool)}
_NESTED = {"Requant": golden.Requant}


def _encode(obj, key: str, arrays: dict) -> object:
    """JSON for a descriptor field; tensors go to `arrays` under `key`."""
    if isinstance(obj, torch.Tensor):
        arrays[key] = obj.to(torch.int64).contiguous()
        return {"array": key}
    if dataclasses.is_dataclass(obj):
        return {"type": type(obj).__name__,
                **{f.name: _encode(getattr(obj, f.name), f"{key}.{f.name}", arrays)
                   for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _decode(value, arrays: dict):
    if isinstance(value, dict) and "array" in value:
        if value["array"] not in arrays:
            raise PyiosoError(f"array {value['array']!r} is missing")
        return arrays[value["array"]]
    if isinstance(value, dict) and "type" in value:
        cls = _OPS.get(value["type"]) or _NESTED.get(value["type"])
        if cls is None:
            raise PyiosoError(f"unknown op type {value['type']!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(value) - {"type"} != fields:
            raise PyiosoError(f"{value['type']} has fields {sorted(set(value) - {'type'})}, "
                              f"expected {sorted(fields)}")
        return cls(**{k: _decode(v, arrays) for k, v in value.items() if k != "type"})
    if isinstance(value, list):
        return tuple(value)
    return value


def manifest(net: intnet.IntNet, perms: dict[str, torch.Tensor], info: dict) -> tuple[dict, dict]:
    """(manifest without the hash, arrays) for an integer network; `info` holds the network
    and calibration description."""
    arrays: dict[str, torch.Tensor] = {}
    steps = [{"name": s.name, "inputs": list(s.inputs), "output": s.output,
              "op": _encode(s.op, f"{i:03d}.{s.name}", arrays)} for i, s in enumerate(net.steps)]
    tensors = {}
    for name, c in net.codings.items():
        tensors[name] = {"scale": c.scale, "zero_point": c.zero_point, "bits": c.bits,
                         "permutation": _encode(perms[name], f"perm.{name}", arrays)
                         if name in perms else None}
    doc = {"format": FORMAT, "version": VERSION, **info, "input": net.input_name,
           "output": net.output_name, "tensors": tensors, "steps": steps}
    return doc, arrays


def _safetensors(arrays: dict[str, torch.Tensor]) -> bytes:
    header, offset, blobs = {}, 0, []
    for key in sorted(arrays):
        data = arrays[key].numpy().astype("<i8").tobytes()
        header[key] = {"dtype": "I64", "shape": list(arrays[key].shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def _read_safetensors(raw: bytes) -> dict[str, torch.Tensor]:
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    base, arrays = 8 + size, {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        if meta.get("dtype") != "I64":
            raise PyiosoError(f"array {key!r} has dtype {meta.get('dtype')}, expected I64")
        lo, hi = meta["data_offsets"]
        data = np.frombuffer(raw[base + lo:base + hi], dtype="<i8")
        if data.size != int(np.prod(meta["shape"])):
            raise PyiosoError(f"array {key!r} holds {data.size} values for shape {meta['shape']}")
        arrays[key] = torch.from_numpy(data.reshape(meta["shape"]).astype(np.int64))
    return arrays


def save(directory: str | Path, net: intnet.IntNet, perms: dict, info: dict) -> Path:
    """Write the artifact atomically (a temp directory renamed into place)."""
    directory = Path(directory)
    doc, arrays = manifest(net, perms, info)
    blob = _safetensors(arrays)
    doc["arrays_sha256"] = hashlib.sha256(blob).hexdigest()
    doc["digest"] = _digest(doc)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        (tmp / ARRAYS).write_bytes(blob)
        (tmp / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        if directory.exists():
            if not (directory / MANIFEST).is_file():
                raise PyiosoError(f"{directory} exists and is not a pyioso artifact: choose "
                                  "another output directory")
            old = directory.with_name(f".{directory.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load(directory: str | Path) -> tuple[intnet.IntNet, dict]:
    """(the integer network, the manifest) of an artifact, validated."""
    directory = Path(directory)
    where = f"artifact {directory}"
    if not (directory / MANIFEST).is_file() or not (directory / ARRAYS).is_file():
        raise PyiosoError(f"{where} is missing {MANIFEST} or {ARRAYS}: point at a directory "
                          "written by `pyioso calibrate --out` or `pyioso export`")
    try:
        doc = json.loads((directory / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PyiosoError(f"{where}: {MANIFEST} is not valid JSON ({err}); re-export it") from err
    if doc.get("format") != FORMAT:
        raise PyiosoError(f"{where} is not a pyioso artifact (format {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise PyiosoError(f"{where} has format version {doc.get('version')}, this pyioso reads "
                          f"version {VERSION}: re-export it with `pyioso export`")
    if doc.get("digest") != _digest(doc):
        raise PyiosoError(f"{where}: {MANIFEST} was edited after export (its digest does not match "
                          "its content): re-export it with `pyioso export`")
    blob = (directory / ARRAYS).read_bytes()
    if hashlib.sha256(blob).hexdigest() != doc.get("arrays_sha256"):
        raise PyiosoError(f"{where}: {ARRAYS} does not match the hash in {MANIFEST} (corrupt or "
                          "edited): re-export it")
    try:
        arrays = _read_safetensors(blob)
        steps = tuple(intnet.Step(s["name"], _decode(s["op"], arrays), tuple(s["inputs"]),
                                  s["output"]) for s in doc["steps"])
        codings = {name: Coding(float(t["scale"]), int(t["zero_point"]), int(t["bits"]))
                   for name, t in doc["tensors"].items()}
        net = intnet.IntNet(steps, codings, doc["input"], doc["output"])
        validate(net, doc, arrays)
    except PyiosoError as err:
        raise PyiosoError(f"{where} is invalid: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise PyiosoError(f"{where} is invalid: malformed manifest ({type(err).__name__}: "
                          f"{err}); re-export it") from err
    return net, doc


def _digest(doc: dict) -> str:
    """SHA-256 of the manifest's content without its digest (the arrays' hash is part of it)."""
    content = {k: v for k, v in doc.items() if k != "digest"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate(net: intnet.IntNet, doc: dict, arrays: dict[str, torch.Tensor]) -> None:
    """Every field of an integer network against the spec (ARCHITECTURE §1-§7), each message
    naming the tensor or step and the field: codings, graph wiring and channel counts, each
    op's input and output codings against the tensors it reads and writes, M within W_M, the
    accumulator and t within §7's widths, ISG codes in whole K-tiles of the stored order (what
    a storage permutation is for), permutations."""
    for name, c in net.codings.items():
        if not (math.isfinite(c.scale) and c.scale > 0):
            raise PyiosoError(f"tensor {name!r}: scale {c.scale} must be a positive number")
        check_bits(c.bits, f"tensor {name!r}: bits")
        check_zero_point(c.zero_point, c.bits, f"tensor {name!r}: zero_point")
    channels = {net.input_name: doc.get("network", {}).get("channels")}
    for step in net.steps:
        try:
            channels[step.output] = _check_step(step, net.codings, channels)
        except PyiosoError as err:
            raise PyiosoError(f"step {step.name}: {err}") from err
    if net.output_name not in channels:
        raise PyiosoError(f"the output tensor {net.output_name!r} is never computed")
    for name, t in doc["tensors"].items():
        perm = t.get("permutation")
        if perm is None:
            continue
        if name == net.output_name:
            raise PyiosoError(f"tensor {name!r}: the network's output carries a permutation, which "
                              "would reorder its classes")
        values = arrays[perm["array"]]
        if channels.get(name) is not None and sorted(values.tolist()) != list(range(channels[name])):
            raise PyiosoError(f"tensor {name!r}: permutation is not a permutation of its "
                              f"{channels[name]} channels")


def _coding(codings: dict, tensor: str, bits: int, zero_point: int, field: str) -> None:
    """An op's own view of a tensor's coding must be the tensor's."""
    c = codings[tensor]
    if (bits, zero_point) != (c.bits, c.zero_point):
        raise PyiosoError(f"{field} (bits {bits}, zero-point {zero_point}) differ from tensor "
                          f"{tensor!r}'s coding (bits {c.bits}, zero-point {c.zero_point})")


def _check_step(step: intnet.Step, codings: dict, channels: dict) -> int | None:
    """One step against the tensors it reads and writes; returns its output's channel count."""
    missing = [t for t in step.inputs if t not in channels]
    if missing:
        raise PyiosoError(f"reads {missing} before any step writes them")
    if step.output not in codings:
        raise PyiosoError(f"its output {step.output!r} has no coding")
    op, ins = step.op, [channels[t] for t in step.inputs]
    arity = 2 if isinstance(op, golden.Add) else 1
    if len(step.inputs) != arity:
        raise PyiosoError(f"a {type(op).__name__} reads {arity} tensor(s), not {len(step.inputs)}")
    rq = getattr(op, "requant", None)
    if rq is not None:
        _coding(codings, step.output, rq.bits, rq.zero_point, "requant output")
        check_multipliers(rq.multiplier.tolist(), W_M, "requant multiplier M")
    if isinstance(op, golden.Conv):
        _coding(codings, step.inputs[0], op.in_bits, op.in_zero_point, "input")
        if ins[0] is not None and ins[0] != op.c_in:
            raise PyiosoError(f"weight takes {op.c_in} input channels, its input {step.inputs[0]!r} "
                              f"has {ins[0]}")
        if not uniform_tiles(op.isg_codes, GRANULARITY):
            raise PyiosoError(f"ISG codes are not one per K-tile of {GRANULARITY} stored channels (§4): "
                              f"the storage permutation of {step.inputs[0]!r} was not applied to them")
        scaled = scaled_weights(op.weight, op.isg_codes, op.isg_shift, op.groups)
        check_accumulator(scaled, op.in_bits, W_ACC)
        check_bn_product(scaled, op.in_bits, rq, W_T)
        return op.weight.shape[0]
    if isinstance(op, golden.Add):
        for k, tensor in enumerate(step.inputs):
            _coding(codings, tensor, op.in_bits[k], op.zero_points[k], f"input {k + 1}")
        if None not in ins and ins[0] != ins[1]:
            raise PyiosoError(f"adds tensors of {ins[0]} and {ins[1]} channels")
        return ins[0]
    if isinstance(op, golden.AvgPool):
        _coding(codings, step.inputs[0], op.in_bits, op.in_zero_point, "input")
    else:                       # MaxPool: the output keeps the input's coding
        c, out = codings[step.inputs[0]], codings[step.output]
        _coding(codings, step.inputs[0], op.bits, c.zero_point, "input")
        if (out.scale, out.zero_point, out.bits) != (c.scale, c.zero_point, c.bits):
            raise PyiosoError(f"a max pool keeps its input's coding, but {step.output!r} is coded "
                              f"otherwise than {step.inputs[0]!r}")
    return ins[0]


def label(doc: dict) -> str:
    """A name for what an artifact's runs write (network, size, digest): two artifacts of one
    network never share a record."""
    network = doc.get("network", {})
    return f"{network.get('name', 'net')}_{network.get('size', 32)}px_{doc['digest'][:10]}"


def layer_runs(directory: str | Path, seed: int = 1) -> tuple[dict, list[intnet.LayerRun], str]:
    """(manifest, every conv/FC layer's golden input and output codes, the image's source) of an
    artifact's network on one held-out image of the data it was calibrated on (its val/ or test/
    split), real activations for the hardware checks; a Fashion-MNIST test photo when that data
    is not on this machine (the source says so)."""
    net, doc = load(directory)
    size = int(doc.get("network", {}).get("size", 32))
    data = doc.get("calibration", {}).get("data", FASHION)
    if data != FASHION and Path(data).is_dir():
        image = labelled_images(data, "test", size, 1, seed)[0]
        source = f"{data}: one held-out image (seed {seed})"
    else:
        image = sample_photos(1, size, seed)
        source = f"Fashion-MNIST test photo (seed {seed})" + (
            "" if data == FASHION else f": the calibration data {data} is not on this machine")
    return doc, net.forward(net.quantize_input(image), record=True)[1], source
