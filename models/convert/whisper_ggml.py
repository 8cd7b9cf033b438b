"""CTranslate2 (faster-whisper) Whisper model -> whisper.cpp's ggml file.

The CT2 `model.bin` holds a version, the spec name, a revision, then every
variable (name, shape, dtype, raw data) and a list of aliases. whisper.cpp wants
the original OpenAI tensor names, the model's hyper-parameters, its own copy of
the mel filter bank and the GPT-2 byte-level vocabulary, then each tensor with
its dims reversed. Matrices are written as f16; 1-D tensors, conv biases and
positional embeddings as f32, as whisper.cpp's own converter does.

With `quantize = "q8_0"` or `"q5_0"` the 2-D weight matrices (attention, MLP,
token embedding) are written in that ggml block format instead, as
whisper.cpp's `quantize` tool would; the conv kernels stay f16, which is what
whisper.cpp expects of a quantised model.
"""

import json
import os
import shutil
import struct

import numpy as np

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
GGML_MAGIC = 0x67676D6C
N_FFT = 400
N_MELS = 80
SAMPLE_RATE = 16000
GGML_QNT_VERSION = 2
QUANT_BLOCK = 32  # values per block, for both formats
# name: (ggml_ftype written in the header, ggml_type of each quantised tensor)
QUANTS = {"q8_0": (7, 8), "q5_0": (8, 6)}


def _blocks(arr):
    """The matrix as rows of 32-value blocks, f32, shape [n_blocks, 32]."""
    if arr.shape[-1] % QUANT_BLOCK:
        raise ValueError(f"row length {arr.shape[-1]} is not a multiple of {QUANT_BLOCK}")
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(-1, QUANT_BLOCK)


def quantize_q8_0(arr):
    """ggml's block_q8_0: an f16 scale (largest magnitude / 127), then 32
    int8 values rounded half away from zero."""
    x = _blocks(arr)
    d = np.abs(x).max(axis=1) / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    v = x * inv[:, None]
    q = np.trunc(v + np.copysign(0.5, v)).astype(np.int8)  # |v| ≤ 127: no clipping needed
    out = np.empty((x.shape[0], 34), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def quantize_q5_0(arr):
    """ggml's block_q5_0: an f16 scale d = (value of largest magnitude) / -16,
    then 32 5-bit values q = x/d + 16 (truncated after adding 0.5, at most
    31): their high bits packed into a little-endian u32, value j at bit j,
    then their low nibbles, value j and value j+16 sharing byte j."""
    x = _blocks(arr)
    at = np.abs(x).argmax(axis=1)
    d = x[np.arange(x.shape[0]), at] / -16.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(31, (x * inv[:, None] + 16.5).astype(np.int8)).astype(np.uint8)
    high = ((q >> 4) & 1).astype(np.uint32) << np.arange(QUANT_BLOCK, dtype=np.uint32)
    qh = np.bitwise_or.reduce(high, axis=1).astype("<u4")
    qs = (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)
    out = np.empty((x.shape[0], 22), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:6] = qh.view(np.uint8).reshape(-1, 4)
    out[:, 6:] = qs
    return out.tobytes()


def read_ct2(path):
    """Returns ({name: array}, spec name) with aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = data[pos : pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"CTranslate2 model version {version}, expected 6")
    spec = string()
    take("<I")  # spec revision
    (count,) = take("<I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I") if rank else ()
        dtype, nbytes = take("<BI")
        if dtype not in CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CT2 dtype {dtype}")
        arr = np.frombuffer(data, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, pos)
        variables[name] = arr.reshape(shape)
        pos += nbytes
    (aliases,) = take("<I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables, spec


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS):
    """Slaney-normalised triangular mel filters, shape [n_mels, n_fft/2 + 1]."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    widths = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode: printable char -> raw byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def read_vocabulary(path):
    """The text tokens of a CT2 vocabulary (.txt, one per line, or a .json
    list) as raw bytes: everything before <|endoftext|>. whisper.cpp adds the
    special tokens itself."""
    with open(path, encoding="utf-8") as f:
        tokens = json.load(f) if str(path).endswith(".json") else f.read().split("\n")
    dec = _byte_decoder()
    return [bytes(dec[c] for c in t) for t in tokens[: tokens.index("<|endoftext|>")]]


def _joined_model(inputs, work_dir):
    """model.bin, or its parts model.bin.part1, .part2… joined in order."""
    if "model.bin" in inputs:
        return inputs["model.bin"]
    parts = sorted((k for k in inputs if k.startswith("model.bin.part")), key=lambda k: int(k.rsplit("part", 1)[1]))
    if not parts:
        raise ValueError("no model.bin or model.bin.partN among the inputs")
    joined = os.path.join(work_dir, "model.bin")
    with open(joined, "wb") as out:
        for k in parts:
            with open(inputs[k], "rb") as f:
                shutil.copyfileobj(f, out)
    return joined


def _tensors(v, n_enc, n_dec):
    """Yields (whisper name, array) in whisper.cpp's naming."""

    def lin(prefix, ct2):
        yield f"{prefix}.weight", v[f"{ct2}/weight"]
        yield f"{prefix}.bias", v[f"{ct2}/bias"]

    def ln(prefix, ct2):
        yield f"{prefix}.weight", v[f"{ct2}/gamma"]
        yield f"{prefix}.bias", v[f"{ct2}/beta"]

    def self_attn(prefix, ct2):
        w, b = v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_0/bias"]
        d = w.shape[0] // 3
        yield f"{prefix}.query.weight", w[:d]
        yield f"{prefix}.query.bias", b[:d]
        yield f"{prefix}.key.weight", w[d : 2 * d]  # Whisper's key has no bias (CT2 stores zeros)
        yield f"{prefix}.value.weight", w[2 * d :]
        yield f"{prefix}.value.bias", b[2 * d :]
        yield from lin(f"{prefix}.out", f"{ct2}/linear_1")

    def mlp(prefix, ct2):
        yield from lin(f"{prefix}.mlp.0", f"{ct2}/ffn/linear_0")
        yield from lin(f"{prefix}.mlp.2", f"{ct2}/ffn/linear_1")
        yield from ln(f"{prefix}.mlp_ln", f"{ct2}/ffn/layer_norm")

    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for c in ("conv1", "conv2"):
        yield f"encoder.{c}.weight", v[f"encoder/{c}/weight"]
        yield f"encoder.{c}.bias", v[f"encoder/{c}/bias"].reshape(-1, 1)
    for i in range(n_enc):
        p, c = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        yield from self_attn(f"{p}.attn", f"{c}/self_attention")
        yield from ln(f"{p}.attn_ln", f"{c}/self_attention/layer_norm")
        yield from mlp(p, c)
    yield from ln("encoder.ln_post", "encoder/layer_norm")

    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(n_dec):
        p, c = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        yield from self_attn(f"{p}.attn", f"{c}/self_attention")
        yield from ln(f"{p}.attn_ln", f"{c}/self_attention/layer_norm")
        yield from lin(f"{p}.cross_attn.query", f"{c}/attention/linear_0")
        w, b = v[f"{c}/attention/linear_1/weight"], v[f"{c}/attention/linear_1/bias"]
        d = w.shape[0] // 2
        yield f"{p}.cross_attn.key.weight", w[:d]
        yield f"{p}.cross_attn.value.weight", w[d:]
        yield f"{p}.cross_attn.value.bias", b[d:]
        yield from lin(f"{p}.cross_attn.out", f"{c}/attention/linear_2")
        yield from ln(f"{p}.cross_attn_ln", f"{c}/attention/layer_norm")
        yield from mlp(p, c)
    yield from ln("decoder.ln", "decoder/layer_norm")


def _layers(v, side):
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def convert(inputs, out_path, quantize=None):
    """inputs: "model.bin" (or "model.bin.part1", "…part2", …) and
    "vocabulary.txt" or "vocabulary.json"; quantize: None (f16), "q8_0" or
    "q5_0"."""
    if quantize is not None and quantize not in QUANTS:
        raise ValueError(f"quantize must be one of {sorted(QUANTS)}, not {quantize!r}")
    ftype, qtype = QUANTS[quantize] if quantize else (1, None)
    pack = {"q8_0": quantize_q8_0, "q5_0": quantize_q5_0}.get(quantize)
    v, spec = read_ct2(_joined_model(inputs, os.path.dirname(out_path)))
    if spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: {spec}")
    n_enc, n_dec = _layers(v, "encoder"), _layers(v, "decoder")
    n_vocab, d_text = v["decoder/embeddings/weight"].shape
    n_audio_ctx, d_audio = v["encoder/position_encodings/encodings"].shape
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    head_dim = 64  # every Whisper size uses 64-wide heads
    hparams = [n_vocab, n_audio_ctx, d_audio, d_audio // head_dim, n_enc, n_text_ctx, d_text, d_text // head_dim, n_dec, n_mels]
    hparams.append(ftype + GGML_QNT_VERSION * 1000 if quantize else ftype)
    filters = mel_filters(n_mels=n_mels)
    tokens = read_vocabulary(inputs.get("vocabulary.txt") or inputs["vocabulary.json"])
    with open(out_path, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        f.write(struct.pack(f"<{len(hparams)}i", *hparams))
        f.write(struct.pack("<ii", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("<i", len(t)))
            f.write(t)
        for name, arr in _tensors(v, n_enc, n_dec):
            arr = np.asarray(arr)
            keep_f32 = arr.ndim < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))
            quantized = pack is not None and arr.ndim == 2 and not keep_f32
            if quantized:
                ttype, data = qtype, pack(arr)
            elif keep_f32:
                ttype, data = 0, np.ascontiguousarray(arr, dtype=np.float32).tobytes()
            else:
                ttype, data = 1, np.ascontiguousarray(arr, dtype=np.float16).tobytes()
            encoded = name.encode()
            f.write(struct.pack("<iii", arr.ndim, len(encoded), ttype))
            f.write(struct.pack(f"<{arr.ndim}i", *reversed(arr.shape)))
            f.write(encoded)
            f.write(data)
