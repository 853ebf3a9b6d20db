"""`eie convert`, `eie run`, `eie export` end to end."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
torch = pytest.importorskip("torch", reason="needs the [torch] extra")

from eie_runtime.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10)).eval()
    x = np.random.default_rng(0).standard_normal((12, 40)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), str(d / "mlp.onnx"), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    np.save(d / "x.npy", x)
    return d


def test_convert_run_export(files, capsys):
    d = files
    assert main(["convert", str(d / "mlp.onnx"), "-o", str(d / "m.eie"), "--density", "0.2", "--bits", "3",
                 "--pes", "8", "--layer", "/2/Gemm=0.5", "--calibrate", f"x={d / 'x.npy'}", "-q"]) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()
            if line.startswith("| /")}
    assert sorted(rows) == ["/0/Gemm", "/2/Gemm", "/4/Gemm"]
    assert rows["/2/Gemm"][4] == "0.5" and rows["/0/Gemm"][4] == "0.2" and rows["/0/Gemm"][5] == "3"
    assert main(["run", str(d / "m.eie"), "--input", f"x={d / 'x.npy'}", "-o", str(d / "out.npz")]) == 0
    y = np.load(d / "out.npz")["y"]
    assert y.shape == (12, 10)
    assert main(["run", str(d / "m.eie"), "--input", str(d / "x.npy"), "--mode", "fixed16", "-o", str(d / "o16.npz")]) == 0
    y16 = np.load(d / "o16.npz")["y"]
    assert 0 < np.abs(y16 - y).max() < 0.05 * np.abs(y).max()
    assert main(["export", str(d / "m.eie"), "-o", str(d / "dense.onnx")]) == 0
    sess = ort.InferenceSession(str(d / "dense.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": np.load(d / "x.npy")})[0]
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_run_imports_neither_torch_nor_onnx(files):
    d = files
    assert main(["convert", str(d / "mlp.onnx"), "-o", str(d / "n.eie"), "-q"]) == 0
    code = (f"import sys; from eie_runtime.cli import main; "
            f"rc = main(['run', {str(d / 'n.eie')!r}, '--input', {str(d / 'x.npy')!r}]); "
            f"bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
            f"assert rc == 0 and not bad, (rc, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_cli_errors(files, capsys):
    d = files
    assert main(["convert", str(d / "x.npy"), "-o", str(d / "bad.eie")]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    assert main(["convert", str(d / "mlp.onnx"), "-o", str(d / "bad.eie"), "--layer", "fc9=0.1", "-q"]) == 2
    assert "fc9" in capsys.readouterr().err
    assert main(["convert", str(d / "mlp.onnx"), "-o", str(d / "e.eie"), "-q"]) == 0
    capsys.readouterr()
    assert main(["run", str(d / "e.eie")]) == 2
    assert "missing input 'x'" in capsys.readouterr().err
    np.save(d / "wrong.npy", np.zeros((3, 41), np.float32))
    assert main(["run", str(d / "e.eie"), "--input", f"x={d / 'wrong.npy'}"]) == 2
    assert "input 'x' has shape (3, 41)" in capsys.readouterr().err
    assert main(["run", str(d / "e.eie"), "--input", f"x={d / 'nope.npy'}"]) == 2
    capsys.readouterr()
    assert main(["run", str(d / "e.eie"), "--input", f"x={d / 'x.npy'}", "--mode", "fixed16"]) == 2
    assert "--calibrate" in capsys.readouterr().err
