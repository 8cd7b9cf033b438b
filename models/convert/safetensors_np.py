"""Reads a .safetensors file into numpy arrays: an 8-byte little-endian header
length, a JSON header (name -> dtype, shape, byte offsets), then raw data."""

import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], DTYPES[meta["dtype"]]).reshape(meta["shape"])
    return out
