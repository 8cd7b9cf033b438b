"""TensorFlow.js graph model -> ONNX, for the ops the COCO detectors use.

Written here instead of installing TensorFlow (a 1.6 GB venv) to run
tf2onnx: NanoDet needs only 17 TF op types. Every op maps to one or a few
ONNX ops with the same layout semantics; TF's NHWC convolutions and pooling
are wrapped in transposes to ONNX's NCHW, which onnxruntime's transpose
optimiser cancels against the model's own transposes. Integer subgraphs that
only compute constant shapes (SparseToDense + AddV2 feeding Reshape) are
folded here with numpy.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import tfjs

OPSET = 17
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _fold(op, ins, node):
    """numpy value of a node whose inputs are all constants, or None."""
    if op in ("Add", "AddV2"):
        return ins[0] + ins[1]
    if op == "Cast":
        return ins[0]
    if op == "Identity":
        return ins[0]
    if op == "SparseToDense":
        indices, shape, values, default = ins
        dense = np.full(shape, default, dtype=np.asarray(default).dtype)
        indices = np.asarray(indices).reshape(len(values), len(dense.shape))
        for i, idx in enumerate(indices):
            dense[tuple(idx)] = values[i]
        return dense
    return None


class Converter:
    def __init__(self, nodes, weights):
        self.nodes, self.consts = nodes, dict(weights)
        self.onnx_nodes, self.inits, self.used = [], {}, set()
        self.n = 0

    def name(self, ref):
        node, idx = tfjs.source(ref)
        return node if idx == 0 else f"{node}:{idx}"

    def const(self, ref):
        return self.consts[tfjs.source(ref)[0]]

    def init(self, ref, dtype=None):
        """An input that is a constant, as an initializer (cast if asked)."""
        arr = self.const(ref)
        if dtype is not None:
            arr = arr.astype(dtype)
        name = f"{tfjs.source(ref)[0]}__{arr.dtype}"
        self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        return name

    def emit(self, op, inputs, outputs=None, **attrs):
        self.n += 1
        outputs = outputs or [f"_{op.lower()}_{self.n}"]
        self.onnx_nodes.append(helper.make_node(op, inputs, outputs, name=f"n{self.n}_{op}", **attrs))
        return outputs[0]

    def convert(self):
        inputs, outputs = [], []
        for node in self.nodes:
            op, out = node["op"], node["name"]
            refs = node.get("input", [])
            if op == "Const":
                continue
            if op == "Placeholder":
                dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
                inputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, dims))
                continue
            if all(tfjs.source(r)[0] in self.consts for r in refs):
                folded = _fold(op, [self.const(r) for r in refs], node)
                if folded is not None:
                    self.consts[out] = np.asarray(folded)
                    continue
            x = self.name(refs[0]) if refs else None
            if op == "Identity":
                self.emit("Identity", [x], [out])
                if out.startswith("Identity"):
                    outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
            elif op == "Transpose":
                self.emit("Transpose", [x], [out], perm=[int(p) for p in self.const(refs[1])])
            elif op in ("Pad", "PadV2"):
                pads = self.const(refs[1]).astype(np.int64)
                self.consts[f"{out}/pads"] = np.concatenate([pads[:, 0], pads[:, 1]])
                args = [x, self.init(f"{out}/pads")]
                if op == "PadV2":
                    args.append(self.init(refs[2], np.float32))
                self.emit("Pad", args, [out], mode="constant")
            elif op == "Conv2D":
                self._conv(node, x, out)
            elif op == "MaxPool":
                self._nhwc_wrapped("MaxPool", node, x, out, kernel_shape=tfjs.attr(node, "ksize")[1:3], strides=tfjs.attr(node, "strides")[1:3])
            elif op in ("Add", "AddV2"):
                b = self.init(refs[1]) if tfjs.source(refs[1])[0] in self.consts else self.name(refs[1])
                a = self.init(refs[0]) if tfjs.source(refs[0])[0] in self.consts else x
                self.emit("Add", [a, b], [out])
            elif op == "LeakyRelu":
                self.emit("LeakyRelu", [x], [out], alpha=tfjs.attr(node, "alpha", 0.2))
            elif op == "Sigmoid":
                self.emit("Sigmoid", [x], [out])
            elif op == "ConcatV2":
                axis = int(self.const(refs[-1]))
                self.emit("Concat", [self.name(r) for r in refs[:-1]], [out], axis=axis)
            elif op == "SplitV":
                sizes = self.init(refs[1], np.int64)
                axis = int(self.const(refs[2]))
                n = tfjs.attr(node, "num_split")
                self.emit("Split", [x, sizes], [out] + [f"{out}:{i}" for i in range(1, n)], axis=axis)
            elif op == "Reshape":
                self.emit("Reshape", [x, self.init(refs[1], np.int64)], [out])
            elif op == "ResizeBilinear":
                self._resize(node, x, refs[1], out)
            else:
                raise NotImplementedError(f"TF op {op} ({out}) has no ONNX mapping here")
        outputs.sort(key=lambda o: o.name)
        graph = helper.make_graph(self.onnx_nodes, "tfjs", inputs, outputs, list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vx-models tfjs_onnx")
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
        return model

    def _nhwc_wrapped(self, op, node, x, out, **attrs):
        if tfjs.attr(node, "data_format", "NHWC") != "NHWC":
            raise NotImplementedError(f"{node['name']}: only NHWC is handled")
        if tfjs.attr(node, "padding") != "VALID":
            raise NotImplementedError(f"{node['name']}: only VALID padding is handled (the model pads explicitly)")
        nchw = self.emit("Transpose", [x], perm=TO_NCHW)
        y = self.emit(op, [nchw] + attrs.pop("extra_inputs", []), **attrs)
        self.emit("Transpose", [y], [out], perm=TO_NHWC)

    def _conv(self, node, x, out):
        refs = node["input"]
        hwio = self.const(refs[1])
        self.consts[f"{node['name']}/oihw"] = np.ascontiguousarray(hwio.transpose(3, 2, 0, 1))
        strides, dil = tfjs.attr(node, "strides"), tfjs.attr(node, "dilations", [1, 1, 1, 1])
        self._nhwc_wrapped(
            "Conv", node, x, out,
            extra_inputs=[self.init(f"{node['name']}/oihw")],
            kernel_shape=list(hwio.shape[:2]), strides=strides[1:3], dilations=dil[1:3],
        )

    def _resize(self, node, x, size_ref, out):
        if tfjs.attr(node, "align_corners") or not tfjs.attr(node, "half_pixel_centers"):
            raise NotImplementedError(f"{node['name']}: only half_pixel_centers resizing is handled")
        hw = self.init(size_ref, np.int64)
        shape = self.emit("Shape", [x])
        n = self.emit("Slice", [shape, self._i64("zero", [0]), self._i64("one", [1])])
        c = self.emit("Slice", [shape, self._i64("three", [3]), self._i64("four", [4])])
        sizes = self.emit("Concat", [n, c, hw], axis=0)  # N, C, H, W
        nchw = self.emit("Transpose", [x], perm=TO_NCHW)
        y = self.emit("Resize", [nchw, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel")
        self.emit("Transpose", [y], [out], perm=TO_NHWC)

    def _i64(self, name, values):
        self.consts[name] = np.array(values, np.int64)
        return self.init(name)


def convert(inputs, out_path):
    """inputs: {"model.json": path, "weights.bin": path}."""
    nodes, weights = tfjs.load(inputs["model.json"], [inputs["weights.bin"]])
    onnx.save(Converter(nodes, weights).convert(), out_path)
