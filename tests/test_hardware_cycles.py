"""The cycle model on hand-built cases whose cycle counts are worked out by hand.

Timeline conventions (docs/hardware.md): a broadcast in cycle t lands in the
queues at the end of t; the pointer read of a queued activation takes one
cycle; its first entry reaches the arithmetic unit two cycles after the
pointer read (pointer read, SpMat line read); entries stream one per cycle;
the last write leaves the 4-stage pipeline 3 cycles after its issue.
"""

import numpy as np
import pytest

from eie_runtime import EIEError, EIELinear, FixedPointParams, InterleavedCSC
from eie_runtime.hardware import HardwareConfig, simulate

CODEBOOK = np.array([0.0] + [0.25 * i for i in range(1, 16)], dtype=np.float32)
FIXED = FixedPointParams(in_frac=8, w_frac=8, out_frac=8)


def layer_of(codes, n_pe=1, relu=False):
    mat = InterleavedCSC.from_codes(np.asarray(codes, dtype=np.uint8), CODEBOOK, n_pe, name="t")
    return EIELinear(mat, activation="relu" if relu else None, fixed=FIXED, name="t")


def run(codes, x, **cfg):
    n_pe = cfg.pop("n_pe", 1)
    r = simulate(layer_of(codes, n_pe), np.asarray(x, dtype=np.float32), HardwareConfig(n_pe=n_pe, **cfg))
    return r.layers[0]


@pytest.mark.parametrize("n", [1, 3, 5, 8, 9])
def test_one_pe_one_column(n):
    # cycle 0 broadcast, 1 pointer read, 2 SpMat read, 3..n+2 issue, +3 drain -> n + 6
    codes = np.zeros((n, 1), dtype=np.uint8)
    codes[:, 0] = 3
    r = run(codes, [1.0])
    assert r.cycles == n + 6
    assert r.busy[0] == n and r.useful_macs == n and r.padding_issued == 0
    assert r.stalled[0] == 2  # pointer read and SpMat read with the activation queued
    assert r.starved[0] == 1 + 3  # cycle 0 (queue empty) and the pipeline drain
    assert r.ptr_reads == 1 and r.queue_pushes == 1
    assert r.spmat_reads == -(-n // 8)  # 8 entries per 64-bit line
    assert r.matches_kernel


def test_back_to_back_columns_have_no_bubble():
    # the second column's pointers are read while the first one issues
    codes = np.zeros((8, 2), dtype=np.uint8)
    codes[:3, 0] = 1
    codes[:4, 1] = 2
    r = run(codes, [1.0, 2.0])
    assert r.cycles == 3 + 4 + 6
    assert r.busy[0] == 7 and r.stalled[0] == 2


def test_fifo_full_stalls_the_broadcast():
    codes = np.zeros((3, 2), dtype=np.uint8)
    codes[:, :] = 1
    # depth 1: the queue holds column 0 until its last entry issues (cycle 5), so the
    # broadcast of column 1 waits in cycles 1..5, goes out in 6, issues 9..11 -> 12 + 3
    r1 = run(codes, [1.0, 1.0], fifo_depth=1)
    assert r1.broadcast_stalls == 5
    assert r1.cycles == 15
    # depth 2: both broadcast in cycles 0 and 1, no bubble between the columns -> 3 + 3 + 6
    r2 = run(codes, [1.0, 1.0], fifo_depth=2)
    assert r2.broadcast_stalls == 0
    assert r2.cycles == 12
    # starved: cycle 0 and cycle 6 (column 0 retired, column 1 not yet arrived) + drain
    assert r1.starved[0] == 2 + 3 and r2.starved[0] == 1 + 3
    assert r1.alu_utilization == pytest.approx(6 / 15) and r2.alu_utilization == pytest.approx(6 / 12)


def test_full_queue_of_one_pe_stalls_every_pe():
    # PE 0 has 6 entries per column, PE 1 one: with depth 1, PE 1 waits for PE 0 each column
    codes = np.zeros((12, 2), dtype=np.uint8)
    codes[0::2, :] = 1  # rows 0, 2, .., 10 -> PE 0
    codes[1, :] = 1  # row 1 -> PE 1
    r = run(codes, [1.0, 1.0], n_pe=2, fifo_depth=1)
    # column 0: broadcast 0, pointer read 1, issue 3..8; column 1: broadcast 9, issue 12..17
    assert r.cycles == 18 + 3
    assert r.busy.tolist() == [12, 2]
    assert r.starved[1] > r.starved[0]
    assert r.matches_kernel


def test_padding_entry_takes_a_slot_without_a_write():
    # one non-zero at row 17: a padding entry (z=15, lands on row 15) then z=1
    codes = np.zeros((20, 1), dtype=np.uint8)
    codes[17, 0] = 5
    r = run(codes, [1.0])
    assert r.padding_entries == 1 and r.stored_entries == 2
    assert r.padding_issued == 1 and r.useful_macs == 1
    assert r.busy[0] == 2
    assert r.cycles == 2 + 6
    assert r.energy.act_rw > 0 and r.matches_kernel


def test_empty_slice_costs_its_pointer_read_cycle():
    full = run([[2, 5]], [1.0, 1.0])
    with_empty = run([[2, 0, 5]], [1.0, 1.0, 1.0])
    assert full.cycles == 2 + 6
    assert with_empty.cycles == full.cycles + 1
    assert with_empty.empty_slices == 1 and with_empty.ptr_reads == 3
    assert with_empty.busy[0] == 2


def test_empty_slice_in_one_pe_only():
    # PE 1's slice of the column is empty: it reads its pointers (cycle 1) and is done
    r = run([[3], [0]], [1.0], n_pe=2)
    assert r.cycles == 1 + 6
    assert r.empty_slices == 1
    assert r.busy.tolist() == [1, 0]
    assert r.stalled[1] == 1 and r.starved[1] == r.cycles - 1


def test_zero_activations_are_never_broadcast():
    r = run(np.ones((4, 4), dtype=np.uint8), [0.0, 1.0, 0.0, 0.0])
    assert r.nonzero_activations == 1 and r.queue_pushes == 1 and r.ptr_reads == 1
    assert r.cycles == 4 + 6
    r0 = run(np.ones((4, 4), dtype=np.uint8), [0.0, 0.0, 0.0, 0.0])
    assert r0.cycles == 0 and r0.useful_macs == 0 and r0.matches_kernel


def test_bypass_avoids_the_accumulator_hazard():
    # two columns hitting the same (only) row back to back
    codes = [[1, 2]]
    with_bypass = run(codes, [1.0, 1.0])
    without = run(codes, [1.0, 1.0], bypass=False)
    assert with_bypass.cycles == 2 + 6 and with_bypass.hazard_stalls == 0
    # without it the second entry waits until the first write has left the pipeline (issue 3 -> 6)
    assert without.hazard_stalls == 2
    assert without.cycles == with_bypass.cycles + 2
    assert np.array_equal(with_bypass.output, without.output)


def test_wider_sram_reads_fewer_lines():
    codes = np.ones((32, 1), dtype=np.uint8)
    narrow = run(codes, [1.0], sram_width=8)
    wide = run(codes, [1.0], sram_width=128)
    assert narrow.spmat_reads == 32 and wide.spmat_reads == 2
    assert narrow.cycles == wide.cycles == 32 + 6


def test_output_passes_rebroadcast_the_activations():
    # 4 local rows on one PE, register file of 2: two passes over the same 1 column
    codes = np.ones((4, 1), dtype=np.uint8)
    r = run(codes, [1.0], regfile_entries=2)
    assert r.passes == 2
    assert r.cycles == 2 * (2 + 6)
    assert r.queue_pushes == 2 and r.ptr_reads == 2
    assert r.matches_kernel


def test_load_efficiency_counts_only_starved_cycles():
    r = run(np.ones((5, 1), dtype=np.uint8), [1.0])
    total = r.cycles
    assert r.busy[0] + r.stalled[0] + r.starved[0] == total
    assert r.load_efficiency == pytest.approx(1 - r.starved[0] / total)
    assert r.theoretical_cycles == pytest.approx(5.0)


# ------------------------------------------------ the modelling choices (docs/hardware.md)
def test_queue_release_on_pointer_read_frees_the_slot_early():
    codes = np.ones((3, 2), dtype=np.uint8)
    # depth 1, released on the pointer read: broadcast col 0 at 0, its pointers read at 1 (the slot
    # frees at the end of 1, so the broadcast is blocked only in cycle 1), col 1 broadcast at 2, pointers
    # read at 3 (ready at 5); col 0 issues 3..5, col 1 6..8, drain -> 9 + 3 = 12 (finished: 15)
    r = run(codes, [1.0, 1.0], fifo_depth=1, queue_release="pointer_read")
    assert r.broadcast_stalls == 1
    assert r.cycles == 12
    assert run(codes, [1.0, 1.0], fifo_depth=1).cycles == 15


def test_pointer_reads_in_order_pay_for_empty_slices():
    # 1 PE, columns: 3 entries, empty, empty, 1 entry
    codes = np.zeros((3, 4), dtype=np.uint8)
    codes[:, 0] = 1
    codes[0, 3] = 2
    x = [1.0, 1.0, 1.0, 1.0]
    # ahead: pointers of col 0 read at 1 (issues 3..5); cols 1 and 2 (empty) read at 2 and 3 while
    # col 0 waits; col 3 read at 4 (ready 6), issues at 6 -> 7 + 3 = 10, as without the empty columns
    ahead = run(codes, x)
    assert ahead.cycles == 10 == run(codes[:, [0, 3]], [1.0, 1.0]).cycles
    # in order: the address generator reaches col 0's last entry at 4 (issue 5 = read + 2), so the
    # empty cols are read at 4 and 5, col 3 at 6 (ready 8) -> 9 + 3 = 12: one cycle per empty slice
    in_order = run(codes, x, pointer_reads="in_order")
    assert in_order.cycles == 12
    assert in_order.empty_slices == ahead.empty_slices == 2 and in_order.ptr_reads == 4
    assert in_order.busy[0] == ahead.busy[0] == 4 and in_order.matches_kernel


def test_pointer_reads_in_order_leave_no_bubble_between_columns():
    # back-to-back columns of 3 and 1 entries: the next column's pointers are read while the
    # previous column's second-to-last entry issues, so entries stream 3, 4, 5 | 6 -> 7 + 3
    codes = np.zeros((3, 3), dtype=np.uint8)
    codes[:, 0] = 1
    codes[0, 1] = 2
    codes[1, 2] = 3
    r = run(codes, [1.0, 1.0, 1.0], pointer_reads="in_order")
    assert r.cycles == 3 + 1 + 1 + 6 == run(codes, [1.0, 1.0, 1.0]).cycles
    assert r.busy[0] == 5


def test_one_activation_memory_needs_no_output_passes():
    # 4 local rows, register file of 2: with passes 2 x (2 + 6); one memory: 4 + 6, one broadcast
    codes = np.ones((4, 1), dtype=np.uint8)
    r = run(codes, [1.0], regfile_entries=2, output_passes=False)
    assert r.passes == 1
    assert r.cycles == 4 + 6
    assert r.queue_pushes == 1 and r.ptr_reads == 1
    assert r.matches_kernel


def test_authors_simulator_preset_and_bad_options():
    c = HardwareConfig.authors_simulator(fifo_depth=2)
    assert (c.queue_release, c.pointer_reads, c.output_passes, c.fifo_depth) == ("pointer_read", "in_order",
                                                                                  False, 2)
    d = HardwareConfig()
    assert (d.queue_release, d.pointer_reads, d.output_passes) == ("finished", "ahead", True)
    for bad in ({"queue_release": "early"}, {"pointer_reads": 1}, {"output_passes": "no"}):
        with pytest.raises(EIEError, match=next(iter(bad))):
            HardwareConfig(**bad)
