#!/usr/bin/env python3
"""Reference log-mel features in numpy, for tests/mel.rs.

The speaker embedder's recipe (librosa.feature.melspectrogram with n_fft 512,
win_length 400, hop 160, 40 mels, center=False, power 2, then log10(S + floor)),
written out with numpy alone, in float64:

    mel_reference.py IN.f32 OUT.f32 [hamming|hann] [slaney|htk] [log10|ln] [FLOOR]

IN is raw little-endian float32 samples at 16 kHz; OUT gets frames x 40
little-endian float32 values, frame after frame.
"""

import sys

import numpy as np

SR, N_FFT, WIN, HOP, N_MELS = 16000, 512, 400, 160, 40


def window(kind):
    n = np.arange(WIN)
    a, b = (0.54, 0.46) if kind == "hamming" else (0.5, 0.5)
    w = a - b * np.cos(2 * np.pi * n / WIN)  # periodic: period WIN, not WIN - 1
    left = (N_FFT - WIN) // 2
    return np.concatenate([np.zeros(left), w, np.zeros(N_FFT - WIN - left)])


def hz_to_mel(f, scale):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m, scale):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def filterbank(scale):
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(SR / 2, scale), N_MELS + 2), scale)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(up, down))
    return tri * (2.0 / (hi - lo))  # Slaney area normalisation


def log_mel(audio, kind="hamming", scale="slaney", log="log10", floor=1e-10):
    n = 0 if len(audio) < N_FFT else 1 + (len(audio) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    frames = audio.astype(np.float64)[idx] * window(kind)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ filterbank(scale).T + floor
    return np.log10(mel) if log == "log10" else np.log(mel)


def main(argv):
    audio = np.fromfile(argv[1], dtype="<f4")
    kind = argv[3] if len(argv) > 3 else "hamming"
    scale = argv[4] if len(argv) > 4 else "slaney"
    log = argv[5] if len(argv) > 5 else "log10"
    floor = float(argv[6]) if len(argv) > 6 else 1e-10
    log_mel(audio, kind, scale, log, floor).astype("<f4").tofile(argv[2])


if __name__ == "__main__":
    main(sys.argv)
