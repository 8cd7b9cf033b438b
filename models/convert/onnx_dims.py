"""Rewrites the fixed input dims an ONNX model was exported with.

CenterFace ships with input `input.1` fixed at [10, 3, 32, 32] and outputs
fixed to match. This sets the input to the frame size the plugin uses, drops
the stale output dims and intermediate shapes, and lets onnx re-infer them.
Weights that the old exporter also listed as graph inputs are made plain
initializers, so onnxruntime can constant-fold them.
"""

import onnx
from onnx import shape_inference


def set_input_dims(model, dims):
    weights = {i.name for i in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    inp = model.graph.input[0]
    shape = inp.type.tensor_type.shape
    for d, value in zip(shape.dim, dims):
        d.ClearField("dim_param")
        d.dim_value = value
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")
    del model.graph.value_info[:]
    return shape_inference.infer_shapes(model)


def convert(inputs, out_path, dims):
    """inputs: {"model.onnx": path}; dims: e.g. [1, 3, 480, 640]."""
    model = onnx.load(inputs["model.onnx"])
    model = set_input_dims(model, dims)
    onnx.checker.check_model(model)
    onnx.save(model, out_path)
