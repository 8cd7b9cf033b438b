#!/usr/bin/env python3
"""Would batching frames across files speed up the vision models?

For CenterFace and NanoDet (the two vision models with a fixed batch of 1),
runs N frames one at a time against one batch of N (the input's batch dim
rewritten by models/convert/onnx_dims.py), with ONNX Runtime at graph
optimisation level 3, as vx runs them, on 1 and 2 threads; median of 7.

    $VX_CACHE/venv/bin/python bench/batching.py
"""

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))
from convert.onnx_dims import set_input_dims  # noqa: E402

CACHE = Path(os.environ.get("VX_CACHE_DIR", Path.home() / ".cache/vx")) / "models"
MODELS = [("centerface-480x640.onnx", (480, 640)), ("nanodet-416.onnx", (416, 416))]
ort.set_default_logger_severity(3)


def session(model, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])


def median_seconds(run, rounds=7):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


print("| model | frames | threads | one at a time | one batch | batched speed-up |")
print("|---|---|---|---|---|---|")
for file, hw in MODELS:
    single = onnx.load(CACHE / file)
    name = single.graph.input[0].name
    for n in (4, 8):
        batched = set_input_dims(onnx.load(CACHE / file), [n, 3, *hw])
        x = np.random.default_rng(0).random((n, 3, *hw), dtype=np.float32)
        for threads in (1, 2):
            s1, sn = session(single, threads), session(batched, threads)
            sn.run(None, {name: x})  # warm both
            s1.run(None, {name: x[:1]})
            a = median_seconds(lambda: [s1.run(None, {name: x[i : i + 1]}) for i in range(n)])
            b = median_seconds(lambda: sn.run(None, {name: x}))
            print(f"| {file} | {n} | {threads} | {a * 1000 / n:.1f} ms/frame | {b * 1000 / n:.1f} ms/frame | {a / b:.2f}× |")
