"""Each SIMD kernel is used only where the CPU Numba compiles for has every feature its intrinsics need."""

import numba
import pytest

from eie_runtime.kernels import cpu, panel_batch, sliced_ell


@pytest.fixture
def target(monkeypatch):
    """Set the feature string Numba compiles for (as NUMBA_CPU_FEATURES would) for one test."""
    def use(features: str):
        monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
        cpu.compile_features.cache_clear()
    yield use
    monkeypatch.undo()
    cpu.compile_features.cache_clear()


def test_avx512f_without_bw_does_not_run_the_bw_kernels(target):
    # vpshufb / vpmaddwd on 512 bits are AVX512BW: LLVM cannot select them on an F-only CPU
    target("+avx2,+fma,+avx512f,-avx512bw")
    assert cpu.supports("avx512f") and not cpu.supports("avx512bw")
    assert not cpu.supports(*sliced_ell.REQUIRES)
    assert not cpu.supports(*panel_batch.FIXED16_REQUIRES)


def test_both_features_enable_the_sliced_ell(target):
    target("+avx512f,+avx512bw,+avx2")
    assert cpu.supports(*sliced_ell.REQUIRES) and cpu.supports(*panel_batch.FIXED16_REQUIRES)


def test_an_empty_feature_string_is_a_baseline_cpu(target):
    target("")
    assert cpu.compile_features() == frozenset() and not cpu.supports("sse2")


def test_the_module_flags_follow_this_target():
    assert sliced_ell.AVAILABLE == cpu.supports(*sliced_ell.REQUIRES)
    assert panel_batch.FIXED16_AVAILABLE == cpu.supports(*panel_batch.FIXED16_REQUIRES)
