"""silero-vad's pretrained 16 kHz model as a torch module, and speech synthesised with espeak-ng (bench/quality.py vad).

``SileroVAD`` rebuilds the network of the pip package ``silero-vad`` (16 kHz)
with the weights of its default TorchScript model, following the layer list of
the package's ``tinygrad_model.py``: an STFT as a fixed Conv1d, four Conv1d + ReLU blocks,
``nn.LSTMCell(128, 128)`` carried across 32 ms chunks, ReLU, a 1x1 Conv1d and
a sigmoid. It runs a whole clip at once: input ``(B, T, 576)`` chunks (64
samples of context + 512 new ones), output ``(B, T)`` speech probabilities.
``check_against_jit`` compares it with the package's own TorchScript model.

Audio: sentences spoken by ``espeak-ng`` (several voices, speeds and pitches),
resampled to 16 kHz, laid out with pauses, and mixed with white, pink or brown
noise at a random SNR, plus stretches of noise only and of silence.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np
import torch
from torch import nn

RATE = 16000
CHUNK = 512
CONTEXT = 64


class SileroVAD(nn.Module):
    """silero-vad 16 kHz: features per chunk, an LSTMCell over chunks, a speech probability per chunk."""

    def __init__(self):
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    @classmethod
    def pretrained(cls) -> "SileroVAD":
        """The weights of the package's default model (its TorchScript file's 16 kHz branch)."""
        from silero_vad import load_silero_vad
        sd = load_silero_vad().state_dict()
        names = {"stft_conv.weight": "stft.forward_basis_buffer", "final_conv.weight": "decoder.decoder.2.weight",
                 "final_conv.bias": "decoder.decoder.2.bias"}
        for i in range(4):
            for p in ("weight", "bias"):
                names[f"conv{i + 1}.{p}"] = f"encoder.{i}.reparam_conv.{p}"
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            names[f"lstm_cell.{p}"] = f"decoder.rnn.{p}"
        model = cls()
        model.load_state_dict({k: sd["_model." + v].float() for k, v in names.items()})
        return model.eval()

    def features(self, chunks):
        """(N, 576) chunks -> (N, 128) LSTM inputs."""
        x = nn.functional.pad(chunks.unsqueeze(1), (0, 64), mode="reflect")
        x = self.stft_conv(x)
        x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        return x.squeeze(-1)

    def forward(self, chunks):
        b, t, n = chunks.shape
        feats = self.features(chunks.reshape(b * t, n)).reshape(b, t, -1)
        h = c = feats.new_zeros(b, 128)
        outs = []
        for i in range(t):
            h, c = self.lstm_cell(feats[:, i], (h, c))
            outs.append(h)
        hs = torch.relu(torch.stack(outs, 1))  # (B, T, 128)
        return torch.sigmoid(self.final_conv(hs.reshape(b * t, 128, 1))).reshape(b, t)


def to_chunks(wav: np.ndarray) -> torch.Tensor:
    """A 16 kHz clip -> (T, 576) chunks: each 512 new samples with the 64 before them (zeros at the start)."""
    n = len(wav) // CHUNK * CHUNK
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), wav[:n].astype(np.float32)])
    idx = np.arange(0, n, CHUNK)[:, None] + np.arange(CHUNK + CONTEXT)[None, :]
    return torch.from_numpy(padded[idx])


def check_against_jit(model: SileroVAD, wav: np.ndarray) -> float:
    """Largest |probability difference| between ``model`` and the package's TorchScript model on ``wav``."""
    from silero_vad import load_silero_vad
    jit = load_silero_vad()
    jit.reset_states()
    ours = model(to_chunks(wav)[None])[0]
    with torch.no_grad():
        theirs = torch.stack([jit(torch.from_numpy(wav[i:i + CHUNK].astype(np.float32)), RATE)[0, 0]
                              for i in range(0, len(wav) // CHUNK * CHUNK, CHUNK)])
    return float((ours - theirs).abs().max())


VOICES = ("en", "en-us", "en-gb-x-rp", "en+f3", "en+m3", "en+f5", "de", "fr", "es")


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of ``text`` at 16 kHz, float32 in [-1, 1]."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, text],
                       check=True, capture_output=True, timeout=60)
        rate, data = wavfile.read(path)
    x = data.astype(np.float32) / 32768.0
    if rate != RATE:
        g = np.gcd(rate, RATE)
        x = resample_poly(x, RATE // g, rate // g).astype(np.float32)
    return x


def noise(kind: str, n: int, rng) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:  # pink (1/f) or brown (1/f^2) by shaping the spectrum
        f = np.fft.rfftfreq(n)
        f[0] = f[1]
        x = np.fft.irfft(np.fft.rfft(white) / (np.sqrt(f) if kind == "pink" else f), n)
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def clip(texts, rng, seconds: float = 8.0) -> np.ndarray:
    """One clip: speech of ``texts`` with pauses, noise at a random SNR, a stretch of noise or silence."""
    n = int(seconds * RATE)
    out = np.zeros(n, np.float32)
    pos = int(rng.uniform(0.2, 1.0) * RATE)
    for t in texts:
        s = speak(t, VOICES[rng.integers(len(VOICES))], int(rng.integers(120, 220)), int(rng.integers(20, 80)))
        s = s * rng.uniform(0.2, 0.9) / (np.abs(s).max() + 1e-9)
        if pos + len(s) > n:
            s = s[:n - pos]
        out[pos:pos + len(s)] += s
        pos += len(s) + int(rng.uniform(0.3, 1.5) * RATE)
        if pos >= n:
            break
    kind = ("white", "pink", "brown", "none")[rng.integers(4)]
    if kind != "none":
        speech_rms = np.sqrt(np.mean(out[out != 0] ** 2)) if (out != 0).any() else 0.05
        snr_db = rng.uniform(0, 25)
        out += noise(kind, n, rng) * speech_rms / 10 ** (snr_db / 20) * 3
    return np.clip(out, -1, 1)


def clips(sentences, n_clips: int, seed: int, seconds: float = 8.0) -> list[np.ndarray]:
    """``n_clips`` clips of 1-3 sentences each (a clip in six is noise or silence only)."""
    rng = np.random.default_rng(seed)
    out, k = [], 0
    for i in range(n_clips):
        m = 0 if i % 6 == 5 else int(rng.integers(1, 4))
        out.append(clip(sentences[k:k + m], rng, seconds))
        k += m
    return out
