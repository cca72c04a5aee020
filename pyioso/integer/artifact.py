"""The versioned artifact: the integer network on disk, and nothing float that golden needs.

A directory with

* ``manifest.json``: format and version, the network (input preprocessing, classes), how it was
  calibrated, every tensor's coding and storage permutation, and the graph of integer ops with
  their scalar fields;
* ``arrays.safetensors``: every integer array (weights, ISG codes, M and B tables,
  permutations), int64, in the safetensors layout (an 8-byte header length, a JSON header, raw
  little-endian data), written with sorted keys so equal networks give equal bytes.

The manifest records the arrays file's SHA-256. Loading checks version, hash, keys, shapes and
every descriptor's own validation, and names what is wrong. Saving writes a temporary
directory and renames it, so no reader ever sees half an artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import golden
from golden.errors import PyiosoError
from pyioso.data.datasets import sample_photos
from pyioso.integer import intnet
from pyioso.quant.layer import Coding

FORMAT, VERSION = "pyioso-artifact", 1
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
        _check_graph(net)
    except PyiosoError as err:
        raise PyiosoError(f"{where} is invalid: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise PyiosoError(f"{where} is invalid: malformed manifest ({type(err).__name__}: "
                          f"{err}); re-export it") from err
    return net, doc


def _check_graph(net: intnet.IntNet) -> None:
    known = {net.input_name}
    for step in net.steps:
        missing = [t for t in step.inputs if t not in known]
        if missing:
            raise PyiosoError(f"step {step.name} reads {missing} before any step writes them")
        if step.output not in net.codings:
            raise PyiosoError(f"tensor {step.output!r} has no coding")
        known.add(step.output)
    if net.output_name not in known:
        raise PyiosoError(f"the output tensor {net.output_name!r} is never computed")


def layer_runs(directory: str | Path, seed: int = 1) -> tuple[dict, list[intnet.LayerRun]]:
    """(manifest, every conv/FC layer's golden input and output codes) of an artifact's network
    on one Fashion-MNIST test photo: real activations for the hardware checks."""
    net, doc = load(directory)
    size = int(doc.get("network", {}).get("size", 32))
    image = sample_photos(1, size, seed)
    return doc, net.forward(net.quantize_input(image), record=True)[1]
