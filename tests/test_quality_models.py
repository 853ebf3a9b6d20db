"""Pretrained models from pip packages through EIE compression (the full figures: python -m bench.quality)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
pytest.importorskip("silero_vad", reason="needs the [quality] extra (pip silero-vad)")

import eie_runtime.torch as et  # noqa: E402
from bench.quality_vad import CHUNK, SileroVAD, check_against_jit, to_chunks  # noqa: E402


@pytest.fixture(scope="module")
def vad_and_audio():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    tone = 0.4 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)  # bursts of a voiced-like tone
    wav = (tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    yield SileroVAD.pretrained(), wav
    torch.set_num_threads(threads)


def test_silero_rebuild_equals_the_packaged_torchscript_model(vad_and_audio):
    model, wav = vad_and_audio
    with torch.no_grad():
        assert check_against_jit(model, wav) < 1e-5
    assert to_chunks(wav).shape == (len(wav) // CHUNK, CHUNK + 64)


@pytest.mark.parametrize("lstm_bias", ["shared", "dense"])
def test_silero_lstm_compresses_and_fixed16_follows_float32(vad_and_audio, lstm_bias):
    model, wav = vad_and_audio
    x = to_chunks(wav)[None]
    small = et.compress(model, density=0.3, bits=4, lstm_bias=lstm_bias, filter_fn=lambda m, n: n == "lstm_cell",
                        mode="fixed16", calibration=[x])
    assert isinstance(small.lstm_cell, et.EIELSTMCell)
    with torch.no_grad():
        p16 = small(x)
        et.set_mode(small, "float32")
        p32 = small(x)
        ref = et.to_dense(small)(x)  # plain torch with the pruned-and-shared weights
    assert float((p32 - ref).abs().max()) < 1e-4
    assert float((p16 - p32).abs().max()) < 0.02
    layer = small.lstm_cell.eie_layers()[0]
    assert (layer.bias is not None) == (lstm_bias == "dense")
    assert layer.matrix.nnz <= 0.3 * layer.shape[0] * layer.shape[1] + 1
