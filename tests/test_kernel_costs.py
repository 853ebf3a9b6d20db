"""Kernel-choice costs: validation, the file format, the environment override, and their effect on layouts."""

import json
import math

import numpy as np
import pytest

from eie_runtime import kernel_costs
from eie_runtime.paper_layers import random_activations, random_codes, shared_codebook
from eie_runtime.execution import ExecLayout
from eie_runtime.format import InterleavedCSC
from eie_runtime.kernel_costs import KernelCosts
from eie_runtime.kernels import sliced_ell

needs_avx512 = pytest.mark.skipif(not sliced_ell.AVAILABLE, reason="the sliced ELL kernel needs an AVX-512 host")


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(kernel_costs.ENV_VAR, raising=False)
    kernel_costs.use(None)
    yield
    kernel_costs.use(None)


def _matrix(m=96, k=256, density=0.2, seed=0):
    rng = np.random.default_rng(seed)
    return InterleavedCSC.from_codes(random_codes(m, k, density, rng), shared_codebook(rng), 4)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "1.0", True, None])
def test_a_cost_must_be_a_positive_finite_number(bad):
    with pytest.raises(ValueError, match="gather_ns_per_entry"):
        KernelCosts(gather_ns_per_entry=bad)


def test_file_round_trip_and_partial_files(tmp_path):
    path = tmp_path / "costs.json"
    costs = KernelCosts(sliced_ell_ns_per_step=1.25, scatter_ns_per_entry=0.9)
    path.write_text(json.dumps(costs.to_dict()))
    assert KernelCosts.load(path) == costs
    path.write_text(json.dumps({"gather_ns_per_entry": 0.3}))  # the rest keep their defaults
    assert KernelCosts.load(path) == KernelCosts(gather_ns_per_entry=0.3)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"gather_ns_per_entry": 0.2, "warp_speed": 9}', "unknown kernel cost.*warp_speed"),
    ('{"scatter_ns_per_entry": -0.5}', "scatter_ns_per_entry must be a positive"),
])
def test_bad_files_are_refused_by_name(tmp_path, text, match):
    path = tmp_path / "costs.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        KernelCosts.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="could not be read"):
        KernelCosts.load(tmp_path / "missing.json")


def test_environment_file_then_use_then_back(tmp_path, monkeypatch):
    assert kernel_costs.current() == KernelCosts()
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"sliced_ell_ns_per_step": 2.5}))
    monkeypatch.setenv(kernel_costs.ENV_VAR, str(path))
    assert kernel_costs.current().sliced_ell_ns_per_step == 2.5
    chosen = KernelCosts(scatter_ns_per_entry=0.7)
    kernel_costs.use(chosen)
    assert kernel_costs.current() is chosen and ExecLayout(_matrix()).costs is chosen
    kernel_costs.use(None)
    assert kernel_costs.current().sliced_ell_ns_per_step == 2.5
    monkeypatch.setenv(kernel_costs.ENV_VAR, str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match="absent.json"):
        ExecLayout(_matrix())
    with pytest.raises(TypeError, match="KernelCosts"):
        kernel_costs.use({"gather_ns_per_entry": 0.3})
    with pytest.raises(TypeError, match="KernelCosts"):
        ExecLayout(_matrix(), costs={"gather_ns_per_entry": 0.3})


@needs_avx512
def test_costs_move_the_layouts_choices_not_their_results():
    matrix = _matrix(m=160, k=512, density=0.15, seed=3)
    keep = KernelCosts(gather_ns_per_entry=50.0)  # the sliced ELL always beats the gather
    a = ExecLayout(matrix, costs=keep)
    b = ExecLayout(matrix, costs=KernelCosts(gather_ns_per_entry=50.0, sliced_ell_ns_per_step=2 * keep.sliced_ell_ns_per_step))
    assert a.ell_choice().kept and b.ell_choice().kept
    # a dearer step: taken from more non-zeros
    assert b.ell_choice().min_nonzero == pytest.approx(2 * a.ell_choice().min_nonzero)
    assert not ExecLayout(matrix, costs=KernelCosts(sliced_ell_ns_per_step=1e6)).ell_choice().kept  # never worth it

    x = random_activations(512, 0.5, np.random.default_rng(4)).astype(np.float32)
    bias = np.zeros(160, np.float32)
    ell_first = ExecLayout(matrix, costs=KernelCosts(gather_ns_per_entry=50.0, scatter_ns_per_entry=50.0,
                                                     scatter_by_code_ns_per_entry=50.0))
    scatter_first = ExecLayout(matrix, costs=KernelCosts(gather_ns_per_entry=50.0, sliced_ell_ns_per_step=50.0))
    assert ell_first.ell_choice().min_nonzero < 256 < scatter_first.ell_choice().min_nonzero  # one call, two kernels
    ref = np.maximum(matrix.toarray() @ x, 0)
    for ex in (ell_first, scatter_first):
        np.testing.assert_allclose(ex.run_float32(x, bias, True), ref, rtol=1e-5, atol=1e-6)
    # each built only the layout of the kernel it ran
    assert ell_first.sliced_ell.built and not ell_first.column_scatter.built
    assert scatter_first.column_scatter.built and not scatter_first.sliced_ell.built


def test_calibrate_writes_a_costs_file_layouts_accept(tmp_path, capsys):
    pytest.importorskip("torch", reason="bench.calibrate pins torch's threads too: needs the [torch] extra")
    from bench import calibrate

    path = tmp_path / "costs.json"
    assert calibrate.main(["--quick", "--threads", "1", "--write", str(path)]) == 0
    costs = KernelCosts.load(path)
    measured = json.loads(path.read_text())
    assert set(measured) == set(KernelCosts().to_dict())
    assert all(0 < v < 1e3 for v in measured.values())  # ns per unit of work: not seconds, not zero
    if sliced_ell.AVAILABLE:  # the fixed16 step does more work than the float32 one
        assert costs.sliced_ell_fixed16_ns_per_step > costs.sliced_ell_ns_per_step
    out = capsys.readouterr().out
    assert "sliced_ell_ns_per_step" in out and f"EIE_KERNEL_COSTS={path}" in out
    assert ExecLayout(_matrix(), costs=costs).costs == costs
