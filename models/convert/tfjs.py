"""Reads a TensorFlow.js graph model: `model.json` (the graph and a weights
manifest) and its `.bin` shard(s) (the weights back to back, in manifest
order). Weights quantised to float16 are widened back to float32."""

import json
from pathlib import Path

import numpy as np

DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def load(json_path, bin_paths=None):
    """Returns (nodes, weights): graph nodes as dicts, weights by name."""
    model = json.loads(Path(json_path).read_text())
    weights = {}
    for group in model["weightsManifest"]:
        paths = bin_paths or [Path(json_path).with_name(p) for p in group["paths"]]
        data = b"".join(Path(p).read_bytes() for p in paths)
        pos = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"], dtype=np.int64))
            q = w.get("quantization")
            stored = QUANT[q["dtype"]] if q else DTYPES[w["dtype"]]
            arr = np.frombuffer(data, stored, count, pos).reshape(w["shape"])
            pos += count * np.dtype(stored).itemsize
            if q and q["dtype"] != "float16":
                arr = arr.astype(np.float32) * q["scale"] + q["min"]
            weights[w["name"]] = arr.astype(DTYPES[w["dtype"]])
        if pos != len(data):
            raise ValueError(f"weights manifest covers {pos} of {len(data)} bytes")
    return model["modelTopology"]["node"], weights


def attr(node, key, default=None):
    """A node attribute as a plain Python value."""
    import base64

    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "list" in a:
        return [int(i) for i in a["list"].get("i", [])]
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "f" in a:
        return float(a["f"])
    if "i" in a:
        return int(a["i"])
    if "b" in a:
        return bool(a["b"])
    return a


def source(name):
    """("node", output index) for an input reference like "node:1"."""
    node, _, idx = name.partition(":")
    return node, int(idx or 0)
