"""An independent executor for TensorFlow.js graph models, in float64 numpy,
following TensorFlow's own op semantics in TF's NHWC layout. It shares only
the file reader with the converter, so agreement between it and onnxruntime
running the converted model checks the conversion, not a copy of it."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convert import tfjs


def _conv2d(x, w, strides):
    kh, kw = w.shape[:2]
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, :: strides[1], :: strides[2]]  # n h w c kh kw
    return np.tensordot(win, w, axes=([3, 4, 5], [2, 0, 1]))


def _max_pool(x, ksize, strides):
    win = sliding_window_view(x, tuple(ksize[1:3]), axis=(1, 2))[:, :: strides[1], :: strides[2]]
    return win.max(axis=(-2, -1))


def _resize_bilinear_half_pixel(x, size):
    def axis_weights(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(src)
        frac = src - lo
        return np.clip(lo, 0, n_in - 1).astype(int), np.clip(np.ceil(src), 0, n_in - 1).astype(int), frac

    (y0, y1, fy), (x0, x1, fx) = axis_weights(x.shape[1], size[0]), axis_weights(x.shape[2], size[1])
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bot = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def run(json_path, bin_path, feeds):
    """Runs the graph; returns {node name: value} for every Identity output."""
    nodes, weights = tfjs.load(json_path, [bin_path])
    vals = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in weights.items()}
    vals.update({k: np.asarray(v, np.float64) for k, v in feeds.items()})

    def get(ref):
        node, idx = tfjs.source(ref)
        v = vals[node]
        return v[idx] if isinstance(v, tuple) else v

    for n in nodes:
        op, name, ins = n["op"], n["name"], [get(r) for r in n.get("input", [])]
        if op in ("Const", "Placeholder"):
            continue
        if op in ("Identity", "Cast"):
            out = ins[0]
        elif op == "Transpose":
            out = np.transpose(ins[0], ins[1])
        elif op == "Pad":
            out = np.pad(ins[0], ins[1])
        elif op == "PadV2":
            out = np.pad(ins[0], ins[1], constant_values=ins[2])
        elif op == "Conv2D":
            out = _conv2d(ins[0], ins[1], tfjs.attr(n, "strides"))
        elif op == "MaxPool":
            out = _max_pool(ins[0], tfjs.attr(n, "ksize"), tfjs.attr(n, "strides"))
        elif op in ("Add", "AddV2"):
            out = ins[0] + ins[1]
        elif op == "LeakyRelu":
            out = np.where(ins[0] >= 0, ins[0], ins[0] * tfjs.attr(n, "alpha"))
        elif op == "Sigmoid":
            out = 1 / (1 + np.exp(-ins[0]))
        elif op == "ConcatV2":
            out = np.concatenate(ins[:-1], axis=int(ins[-1]))
        elif op == "SplitV":
            out = tuple(np.split(ins[0], np.cumsum(ins[1])[:-1], axis=int(ins[2])))
        elif op == "Reshape":
            out = ins[0].reshape(ins[1])
        elif op == "ResizeBilinear":
            out = _resize_bilinear_half_pixel(ins[0], ins[1])
        elif op == "SparseToDense":
            indices, shape, values, default = ins
            out = np.full(shape, default)
            for i, idx in enumerate(np.asarray(indices).reshape(len(values), len(out.shape))):
                out[tuple(idx)] = values[i]
        else:
            raise NotImplementedError(op)
        vals[name] = out
    return {n["name"]: vals[n["name"]] for n in nodes if n["op"] == "Identity" and n["name"].startswith("Identity")}
