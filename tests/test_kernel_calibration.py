"""Self-calibration of the kernel costs (cache per CPU, overrides, the dead band), the choices it feeds
(fixed16's scatter clamps, fixed16's own sliced-ELL threshold with the layout-sharing margin) and how a
choice is shown (``ExecLayout.describe``, ``eie inspect --kernels``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eie_runtime import kernel_calibration as kc
from eie_runtime import kernel_costs
from eie_runtime.execution import ExecLayout
from eie_runtime.execution.choice import LAYOUT_SHARING_MARGIN
from eie_runtime.execution.describe import layout_nbytes
from eie_runtime.fixed_point import to_fixed
from eie_runtime.format import InterleavedCSC
from eie_runtime.kernel_costs import KernelCosts
from eie_runtime.kernels import sliced_ell
from eie_runtime.paper_layers import random_activations, random_codes, shared_codebook

needs_avx512 = pytest.mark.skipif(not sliced_ell.AVAILABLE, reason="the sliced ELL kernel needs an AVX-512 host")


@pytest.fixture
def calibrating(monkeypatch, tmp_path):
    """Self-calibration on, its cache in a fresh folder, nothing remembered from earlier tests."""
    monkeypatch.delenv(kernel_costs.ENV_VAR, raising=False)
    monkeypatch.setenv(kc.CACHE_ENV_VAR, str(tmp_path / "cache"))
    kernel_costs.use(None)
    kernel_costs.self_calibration(True)
    kernel_costs._calibrated.clear()
    yield tmp_path / "cache"
    kernel_costs.self_calibration(None)
    kernel_costs._calibrated.clear()


def _fake_measure(calls):
    def measure(*args, **kwargs):
        calls.append(1)
        return {"scatter_fixed16_ns_per_entry": 3.0, "scatter_fixed16_scalar_ns_per_entry": 0.8,
                "gather_ns_per_entry": 0.25}
    return measure


def _matrix(m=96, k=256, density=0.2, seed=0):
    rng = np.random.default_rng(seed)
    return InterleavedCSC.from_codes(random_codes(m, k, density, rng), shared_codebook(rng), 4)


def test_first_use_measures_writes_the_cache_and_later_processes_read_it(calibrating, capfd, monkeypatch):
    # measured for real, on smaller layers and fewer rounds than by default (the suite runs niced on 2 cores)
    monkeypatch.setattr(kc, "LAYERS", {"table": (1024, 1024, 0.04, 0.375), "by_code": (256, 1024, 0.1, 0.35)})
    monkeypatch.setattr(kc, "ROUNDS", 3)
    costs, source = kernel_costs.current_with_source()
    path = kc.cache_path()
    assert path.parent == calibrating and path.name.startswith("kernel-costs-") and path.exists()
    assert source.startswith(f"self-calibrated: {path}")
    assert "measuring the kernel costs of this CPU" in capfd.readouterr().err
    doc = json.loads(path.read_text())
    assert doc["identity"] == kc.identity() and KernelCosts.from_dict(doc["costs"]) == costs
    for name in ("gather_ns_per_entry", "scatter_fixed16_ns_per_entry", "scatter_fixed16_scalar_ns_per_entry"):
        assert 0.01 < doc["measured"][name] < 100  # ns per unit of work: plausible figures, not seconds
    assert ExecLayout(_matrix()).costs == costs and ExecLayout(_matrix()).costs_source == source
    # another process (the in-memory copy forgotten): read back, nothing measured, nothing printed
    kernel_costs._calibrated.clear()
    monkeypatch.setattr(kc, "measure", lambda *a, **k: pytest.fail("measured again despite a valid cache"))
    assert kernel_costs.current_with_source() == (costs, source)
    assert capfd.readouterr().err == ""


def test_the_cache_is_keyed_per_cpu_and_version(calibrating, monkeypatch):
    ident = kc.identity()
    other = dict(ident, cpu_model="AMD EPYC 9B45 (Zen 5)")
    newer = dict(ident, eie_runtime="9.9.9")
    assert len({kc.cache_path(ident), kc.cache_path(other), kc.cache_path(newer)}) == 3
    calls = []
    monkeypatch.setattr(kc, "measure", _fake_measure(calls))
    kc.calibrate()
    cal = kc.read(kc.cache_path(ident), ident)
    with pytest.raises(ValueError, match="another CPU or version"):
        kc.read(kc.cache_path(ident), other)
    monkeypatch.setattr(kc, "identity", lambda: other)  # the same folder seen from another CPU: measured anew
    kc.calibrate()
    assert calls == [1, 1] and kc.cache_path(other).exists() and kc.cache_path(ident).exists()
    assert kc.read(kc.cache_path(other), other).costs == cal.costs
    for i in range(kc.KEEP_FILES + 2):  # many versions later: only the most recent files stay
        monkeypatch.setattr(kc, "identity", lambda i=i: dict(ident, eie_runtime=f"1.{i}"))
        kc.calibrate()
    assert len(list(calibrating.glob("kernel-costs-*.json"))) == kc.KEEP_FILES
    assert kc.cache_path(dict(ident, eie_runtime=f"1.{kc.KEEP_FILES + 1}")).exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format": 1}', "\x00\xff garbage"])
def test_a_corrupt_cache_file_is_named_then_measured_again(calibrating, monkeypatch, text):
    calls = []
    monkeypatch.setattr(kc, "measure", _fake_measure(calls))
    path = kc.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.warns(RuntimeWarning, match=f"{path}.*measuring again"):
        cal = kc.calibrate()
    assert calls == [1] and cal.source == str(path)
    assert kc.read(path, kc.identity()).costs == cal.costs  # rewritten whole


def test_an_unwritable_cache_folder_keeps_the_costs_in_memory(calibrating, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(kc, "measure", _fake_measure(calls))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(kc.CACHE_ENV_VAR, str(blocker / "cache"))
    costs, source = kernel_costs.current_with_source()
    assert calls == [1] and "measured, not cached" in source and str(blocker) in source
    assert costs.scatter_fixed16_ns_per_entry == 3.0
    assert kernel_costs.current_with_source() == (costs, source) and calls == [1]  # once per process


def test_overrides_and_switches(calibrating, monkeypatch, tmp_path):
    monkeypatch.setattr(kc, "measure", lambda *a, **k: pytest.fail("measured although turned off or overridden"))
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"sliced_ell_ns_per_step": 2.5}))
    monkeypatch.setenv(kernel_costs.ENV_VAR, str(path))
    costs, source = kernel_costs.current_with_source()
    assert costs.sliced_ell_ns_per_step == 2.5 and source == f"{kernel_costs.ENV_VAR}={path}"
    monkeypatch.delenv(kernel_costs.ENV_VAR)
    kernel_costs.self_calibration(False)
    assert kernel_costs.current_with_source() == (KernelCosts(), "defaults")
    kernel_costs.self_calibration(None)  # back to the environment
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv(kernel_costs.SELF_ENV_VAR, off)
        assert kernel_costs.source() == "defaults"
    with pytest.raises(TypeError, match="True, False or None"):
        kernel_costs.self_calibration("yes")
    assert not kc.cache_path().exists()


def test_importing_measures_nothing(tmp_path):
    env = dict(os.environ, EIE_SELF_CALIBRATE="1", EIE_CACHE_DIR=str(tmp_path))
    env.pop(kernel_costs.ENV_VAR, None)
    code = "import eie_runtime, eie_runtime.execution, eie_runtime.kernel_calibration, eie_runtime.cli"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "measuring" not in done.stderr and list(tmp_path.iterdir()) == []


def test_the_dead_band_keeps_the_defaults_unless_a_ratio_moves():
    base = KernelCosts().to_dict()
    rng = np.random.default_rng(0)
    slower = {name: v * 1.7 * (1 + rng.uniform(-0.1, 0.1)) for name, v in base.items()}  # uniformly slower
    assert kc.settle(slower) == (KernelCosts(), True)
    moved = dict(slower, scatter_fixed16_ns_per_entry=base["scatter_fixed16_ns_per_entry"] * 1.7 * 3)
    costs, snapped = kc.settle(moved)
    assert not snapped and costs.scatter_fixed16_ns_per_entry == moved["scatter_fixed16_ns_per_entry"]
    # only some measured (a host without AVX-512): the rest scaled by the common factor
    costs, snapped = kc.settle({"gather_ns_per_entry": 0.44, "scatter_ns_per_entry": 1.2,
                                "scatter_fixed16_ns_per_entry": 4.0})
    assert not snapped and costs.sliced_ell_ns_per_step == pytest.approx(KernelCosts().sliced_ell_ns_per_step * 2)


@pytest.mark.parametrize("out_frac", [22, 16, 8, -8])  # from saturating sums to shifts past 30
def test_fixed16_scatter_clamps_follow_the_costs_and_compute_the_same_bits(out_frac):
    from reference import fixed16_layer

    rng = np.random.default_rng(3)
    codes = random_codes(120, 160, 0.3, rng)
    cb = shared_codebook(rng, scale=0.5)
    mat = InterleavedCSC.from_codes(codes, cb, 4)
    x_q = to_fixed(random_activations(160, 0.2, rng) * 3, 12)
    bias = rng.normal(0, 2.0, 120).astype(np.float32)
    want = fixed16_layer(codes, cb, x_q, in_frac=12, w_frac=16, out_frac=out_frac, bias=bias)
    bias_q = to_fixed(bias, out_frac).astype(np.int32)
    vector = ExecLayout(mat, sliced_ell=False, costs=KernelCosts())
    scalar = ExecLayout(mat, sliced_ell=False, costs=KernelCosts(scatter_fixed16_ns_per_entry=3.0))
    assert vector.column_scatter.fixed16_vector and not scalar.column_scatter.fixed16_vector
    shift = 12 + 16 - out_frac
    for ex in (vector, scalar):
        np.testing.assert_array_equal(ex.run_fixed16(x_q, 16, bias_q, shift, False), want)
    if out_frac == 22:
        assert (np.abs(want.astype(int)) == 32767).any()  # the checked pass overflows: the clamped one runs
    assert any("scalar clamps" in r["kernel"] for r in scalar.describe())
    assert not any("scalar clamps" in r["kernel"] for r in vector.describe())


@needs_avx512
def test_fixed16_takes_its_own_threshold_only_past_the_sharing_margin():
    mat = _matrix(m=512, k=1024, density=0.1, seed=5)
    base = ExecLayout(mat, costs=KernelCosts()).ell_choice()
    assert base.kept
    # fixed16's crossover where float32's is: the same threshold (one layout for both modes)
    f32 = ExecLayout(mat, costs=KernelCosts()).column_scatter.ns_per_entry()  # this layer's float32 scatter
    same = KernelCosts(sliced_ell_fixed16_words_ns_per_step=0.87 * 1.1 * 0.65 / f32,  # 10% off float32's
                       scatter_fixed16_ns_per_entry=0.65, scatter_fixed16_scalar_ns_per_entry=0.75)
    ell = ExecLayout(mat, costs=same).ell_choice()
    assert ell.min_nonzero_fixed16[1] == pytest.approx(ell.threshold)
    # a scatter 4x dearer (a microcoded vector scatter, no cheaper scalar one): fixed16 moves to the sliced
    # ELL earlier than float32, but by at most the margin per side of its own crossover
    dear = KernelCosts(scatter_fixed16_ns_per_entry=2.6, scatter_fixed16_scalar_ns_per_entry=2.6)
    ell = ExecLayout(mat, costs=dear).ell_choice()
    own = mat.shape[1] * dear.sliced_ell_fixed16_words_ns_per_step * ExecLayout(mat).sliced_ell.steps / (
        2.6 * ExecLayout(mat).nnz)
    assert ell.min_nonzero_fixed16[1] < ell.threshold
    assert ell.min_nonzero_fixed16[1] == pytest.approx(own * (1 + LAYOUT_SHARING_MARGIN))
    ex = ExecLayout(mat, costs=dear)
    rows = {(r["mode"], r["kernel"]) for r in ex.describe(density=(ell.min_nonzero_fixed16[1] + 2) / 1024)}
    assert ("fixed16", "sliced_ell_fixed16") in rows and ("float32", "scatter_by_code_f32") in rows


@pytest.mark.parametrize("sliced", [False, pytest.param(None, marks=needs_avx512)])
def test_describe_predicts_the_kernels_and_their_exact_bytes(sliced):
    mat = _matrix(m=700, k=900, density=0.15, seed=7)
    ex = ExecLayout(mat, sliced_ell=sliced, costs=KernelCosts())
    rows = ex.describe()
    assert sum(ex.nbytes_by_strategy()[s.name] for s in ex.strategies if s.name != "sliced_ell") == 0  # built nothing
    modes = {r["mode"] for r in rows}
    assert modes == {"float32", "fixed16"} and any(r["input"] == "batch of 64" for r in rows)
    stored = mat.stored_entries
    for s in ex.strategies:
        s.arrays()
        assert layout_nbytes(ex, s.name) == s.nbytes()
        for r in rows:
            if r["layout"] == s.name:
                assert r["layout B/entry"] == round(s.nbytes() / stored, 2)
    # the single-vector ranges cover every count, and the kernel named is the one a call builds
    for density in (0.05, 0.3, 0.7, 1.0):
        fresh = ExecLayout(mat, sliced_ell=sliced, costs=KernelCosts())
        (f32,) = [r for r in fresh.describe(density=density) if r["mode"] == "float32" and r["input"].startswith("1")]
        x = random_activations(900, density, np.random.default_rng(1))
        fresh.run_float32(x, np.zeros(700, np.float32), False)
        built = {s.name for s in fresh.strategies if s.built}
        assert built == {f32["layout"]}, (density, f32, built)


def test_eie_inspect_kernels(tmp_path, capsys):
    from eie_runtime import save
    from eie_runtime.cli import main
    from eie_runtime.layer import EIELinear

    path = tmp_path / "m.eie"
    save([EIELinear(_matrix(m=64, k=128), name="fc1")], path)
    assert main(["inspect", "--kernels", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kernel costs: defaults" in out and "fc1 (64x128)" in out and "panel_batch_f32" in out
    assert main(["inspect", "--kernels", "--json", "--density", "0.5", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["costs_source"] == "defaults" and doc["costs"] == KernelCosts().to_dict()
    kernels = doc["layers"][0]["kernels"]
    assert [k["input"] for k in kernels if k["mode"] == "fixed16"][0] == "1 vector, 50% non-zero"
    assert main(["inspect", "--kernels", "--density", "1.5", str(path)]) != 0
    assert "--density" in capsys.readouterr().err
