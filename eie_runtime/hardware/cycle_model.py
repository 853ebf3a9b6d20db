"""EIE's cycle-level model: one layer pass, cycle by cycle (paper Sections IV, VI).

Like the paper's C++ simulator (Section V), every cycle has a *propagate*
phase (combinational logic: decisions computed from the registers as they
stand at the start of the cycle) and an *update* phase (the flip-flops take
their new values). Numba wants arrays rather than objects, so each hardware
module's registers are arrays indexed by PE and each module is one small
function; ``simulate_pass`` calls them in propagate/update order. Nothing
here is a compile-time constant: one compiled kernel serves every layer size
and configuration.

The timing assumptions, each next to the paper sentence it comes from, are
listed in ``docs/hardware.md``; the short version:

- CCU / LNZD: at most one non-zero activation broadcast per cycle, "disabled
  if any PE has a full queue" (queue state at the start of the cycle); it
  lands in every PE's queue at the end of that cycle.
- Activation queue: an activation stays in the queue until the PE has
  finished it ("each PE processes the activation at the head of its queue");
  ``release_on_read``: until its pointers are read (the authors' simulator).
- Pointer read unit: reads p_j and p_j+1 of the next queued activation in
  one cycle (even/odd banks). It runs one column ahead of the arithmetic
  unit (one register of pointers). An empty slice costs this one
  pointer-read cycle and nothing else. ``pointers_in_order``: it reads the
  next column only after the current one's last address (the authors'
  simulator), so empty slices are not hidden.
- SpMat read unit: one SRAM line (``entries_per_line`` entries) per read; the
  line is read the cycle before its first entry is needed, so a column's
  first entry reaches the arithmetic unit ``front_latency`` cycles after its
  pointer read (pointer read + SpMat read = 2 by default) and consecutive
  entries stream at one per cycle.
- Arithmetic unit: one (v, x) entry per cycle, ``arith_stages`` pipeline
  stages; with the bypass, back-to-back writes to one accumulator never
  stall; without it an entry waits until the previous write to its
  accumulator has left the pipeline. A padding entry takes an issue slot but
  writes nothing.

The arithmetic is docs/design.md's fixed16 (the same as the fast kernels'): the
accumulators end bit-identical to the kernel's.
"""

import numpy as np

from ..kernels.fixed16_arith import round_shift, saturate  # the one definition of the fixed16 steps
from ..kernels.jit import njit

# Columns of the per-PE counter array ``pe_stats``.
BUSY = 0  # cycles the arithmetic unit took an entry (useful or padding)
STALLED = 1  # cycles with work queued but no entry issued (pointer read, SRAM read, hazard)
STARVED = 2  # cycles with nothing to do: empty queue, nothing in flight (Figure 8's bubbles)
USEFUL = 3  # multiply-accumulates with a real weight
PADDING = 4  # padding entries issued (slot used, no write)
PTR_READS = 5  # pointer-pair reads (one per broadcast column per PE)
EMPTY_SLICES = 6  # columns whose slice in this PE was empty
SPMAT_READS = 7  # SpMat SRAM line reads
QUEUE_PUSHES = 8  # activations received into the queue
HAZARD_STALLS = 9  # cycles stalled on an accumulator hazard (only without the bypass)
N_PE_STATS = 10

# A cycle's class in ``trace_state`` (the same three as BUSY, STALLED, STARVED).
TRACE_BUSY = 0
TRACE_STALLED = 1
TRACE_STARVED = 2

# Entries of the CCU counter array ``ccu_stats``.
CCU_BROADCASTS = 0
CCU_FULL_STALLS = 1  # cycles a broadcast was ready but some queue was full
N_CCU_STATS = 2




@njit(cache=True)
def pass_slices(entries, ptr, rows_per_pass, n_pass, start, end, row0):
    """Split each PE's column slices by output pass (register-file capacity).

    Pass ``b`` owns local rows ``[b * rows_per_pass, (b + 1) * rows_per_pass)``;
    an entry belongs to the pass of the row it lands on (a padding entry to
    the row its zero run reaches). ``row0`` is the running row just before a
    slice's first entry, so the relative ``z`` fields stay exact.
    Outputs ``start``, ``end``, ``row0`` have shape (n_pass, n_pe, K).
    """
    n_pe = ptr.shape[0]
    k = ptr.shape[1] - 1
    for p in range(n_pe):
        for j in range(k):
            row = -1
            e = ptr[p, j]
            stop = ptr[p, j + 1]
            for b in range(n_pass):
                start[b, p, j] = e
                row0[b, p, j] = row
                limit = (b + 1) * rows_per_pass
                while e < stop:
                    r = row + (entries[e] >> 4) + 1
                    if r >= limit:
                        break
                    row = r
                    e += 1
                end[b, p, j] = e


# ----------------------------------------------------------------- modules
@njit(cache=True, inline="always")
def ccu_propagate(bcast, n_nz, oldest_head, depth):
    """Central unit: broadcast the next non-zero unless a queue is full (start-of-cycle state).

    ``oldest_head`` is the smallest ``q_head`` over the PEs (the fullest
    queue; the OR of the PEs' "full" signals is ``bcast - oldest_head >= depth``).
    Returns (push, blocked): push = broadcast this cycle; blocked = a
    non-zero was ready but a full queue disabled the broadcast.
    """
    if bcast >= n_nz:
        return False, False
    if bcast - oldest_head >= depth:
        return False, True
    return True, False


@njit(cache=True, inline="always")
def arith_propagate(p, t, entries, cur, acc, last_write, codebook_q, nz_shift, bypass, stages):
    """Arithmetic unit of PE ``p``: take the entry at ``cur[p, POS]`` if no hazard blocks it.

    Returns 0 = nothing to take, 1 = took a useful entry, 2 = took a padding
    entry, 3 = hazard stall. Performs the multiply-accumulate (its result is
    what the pipeline writes ``stages - 1`` cycles later).
    """
    pos = cur[p, 0]
    if pos >= cur[p, 1]:
        return 0
    b = entries[pos]
    row = cur[p, 2] + (b >> 4) + 1
    v = b & 0xF
    if v != 0 and not bypass and t - last_write[p, row] < stages - 1:
        return 3  # the previous write to this accumulator is still in the pipeline
    cur[p, 0] = pos + 1
    cur[p, 2] = row
    if v == 0:
        return 2
    prod = np.int64(codebook_q[v]) * cur[p, 3]
    acc[p, row] = saturate(acc[p, row] + round_shift(prod, nz_shift))
    last_write[p, row] = t
    return 1


@njit(cache=True)
def simulate_pass(entries, base, start, end, row0, nz_idx, nz_val, codebook_q, shift, acc,
                  depth, entries_per_line, front_latency, stages, bypass, release_on_read, pointers_in_order,
                  pe_stats, ccu_stats, trace_state, trace_queue):
    """Run one pass of one layer cycle by cycle; return the cycles it took.

    Parameters
    ----------
    entries : uint8 (E,)       stored entries, every PE's
    base : int64 (n_pe,)       each PE's first entry (SpMat lines are counted from it)
    start, end, row0 : int64 (n_pe, K)
                               this pass's slice of each (PE, column) and its starting row
    nz_idx, nz_val : int64 (n_nz,)
                               the non-zero activations in broadcast (ascending) order
    codebook_q : int64 (16,)   the codebook in fixed16
    shift : int                product shift (docs/design.md, fixed16)
    acc : int64 (n_pe, rows)   accumulators by local row, updated in place
    depth, entries_per_line, front_latency, stages : int
    bypass : bool
    release_on_read : bool     an activation leaves the queue when its pointers are read
                               (``queue_release="pointer_read"``) instead of when its column is finished
    pointers_in_order : bool   the pointer read unit reads the next column only when the address
                               generator has reached the current column's last entry
                               (``pointer_reads="in_order"``): no read-ahead, an empty slice costs a cycle
    pe_stats : int64 (n_pe, N_PE_STATS), ccu_stats : int64 (N_CCU_STATS,)
                               counters, incremented in place
    trace_state : uint8 (T, n_pe), trace_queue : int16 (T, n_pe)
                               per cycle and PE (the first T cycles; T = 0 records nothing): the
                               cycle's class (TRACE_BUSY, TRACE_STALLED, TRACE_STARVED) and the
                               activations in the PE's queue at the end of the cycle

    Every PE's queue holds the broadcast activations ``[q_head, bcast)``: by
    default an activation stays in it until the PE has finished it ("each PE
    processes the activation at the head of its queue"), so a depth-1 queue
    leaves no room to fetch the next column's pointers early; with
    ``release_on_read`` it leaves when its pointers are read. ``q_read``
    counts the activations whose pointers were read.
    """
    n_pe = start.shape[0]
    n_nz = nz_idx.shape[0]
    # --- registers (flip-flops)
    q_head = np.zeros(n_pe, dtype=np.int64)  # activations finished (popped)
    q_read = np.zeros(n_pe, dtype=np.int64)  # activations whose pointers were read
    cur = np.zeros((n_pe, 5), dtype=np.int64)  # column at the arithmetic unit: pos, end, row, a, queue slot
    nxt = np.zeros((n_pe, 6), dtype=np.int64)  # pointer register: pos, end, row, a, queue slot, ready cycle
    nxt_valid = np.zeros(n_pe, dtype=np.bool_)
    line_buf = np.full(n_pe, -1, dtype=np.int64)  # SpMat line held by the read unit
    last_write = np.full(acc.shape, -(1 << 40), dtype=np.int64)
    bcast = 0
    oldest_head = 0
    t = 0
    issued_any = False
    while True:
        if bcast >= n_nz:
            # done when every activation is finished: pointers read, nothing waiting or issuing
            done = True
            for p in range(n_pe):
                if q_read[p] < bcast or nxt_valid[p] or cur[p, 0] < cur[p, 1]:
                    done = False
                    break
            if done:
                break
        # ---------------- propagate: the CCU looks at the queues as they stand
        push, blocked = ccu_propagate(bcast, n_nz, oldest_head, depth)
        oldest_head = n_nz  # recomputed from the queues' new state below
        for p in range(n_pe):
            j = 0
            s = 0
            e = 0
            # arithmetic unit (fed by the SpMat read unit)
            pos_before = cur[p, 0]
            took = arith_propagate(p, t, entries, cur, acc, last_write, codebook_q, shift, bypass, stages)
            if took == 1 or took == 2:
                issued_any = True
                pe_stats[p, BUSY] += 1
                pe_stats[p, USEFUL if took == 1 else PADDING] += 1
                line = (pos_before - base[p]) // entries_per_line
                if line != line_buf[p]:  # read one cycle ahead; counted where it is used
                    pe_stats[p, SPMAT_READS] += 1
                    line_buf[p] = line
            elif took == 3:
                pe_stats[p, HAZARD_STALLS] += 1
            cur_done = cur[p, 0] >= cur[p, 1]
            # the pointer register moves to the arithmetic unit at the end of this cycle?
            move = cur_done and nxt_valid[p] and nxt[p, 5] <= t + 1
            # pointer read unit: read the next queued activation's pointers if the register is (being) freed
            unread = q_read[p] < bcast
            popped = False
            free = not nxt_valid[p] or move
            if pointers_in_order and free:
                # one address generator: it emits a column's addresses front_latency cycles before
                # their issue, and reaches the next column only after the current one's last entry
                left = cur[p, 1] - cur[p, 0]
                if nxt_valid[p]:
                    left += nxt[p, 1] - nxt[p, 0]
                free = left <= front_latency - 1
            if unread and free:
                popped = True
                j = nz_idx[q_read[p]]
                s = start[p, j]
                e = end[p, j]
                pe_stats[p, PTR_READS] += 1
            # cycle accounting (Figure 8: starved = nothing to work on)
            state = TRACE_BUSY
            if not (took == 1 or took == 2):
                if unread or nxt_valid[p] or not cur_done:
                    pe_stats[p, STALLED] += 1
                    state = TRACE_STALLED
                else:
                    pe_stats[p, STARVED] += 1
                    state = TRACE_STARVED
            # ---------------- update: this PE's flip-flops
            if move:
                for f in range(5):
                    cur[p, f] = nxt[p, f]
                nxt_valid[p] = False
            if popped:
                if s == e:
                    pe_stats[p, EMPTY_SLICES] += 1  # the pointer read was the whole job
                else:
                    nxt[p, 0] = s
                    nxt[p, 1] = e
                    nxt[p, 2] = row0[p, j]
                    nxt[p, 3] = nz_val[q_read[p]]
                    nxt[p, 4] = q_read[p]
                    nxt[p, 5] = t + front_latency
                    nxt_valid[p] = True
                q_read[p] += 1
            # the queue pops up to the oldest activation still in flight
            if release_on_read:
                q_head[p] = q_read[p]
            elif cur[p, 0] < cur[p, 1]:
                q_head[p] = cur[p, 4]
            elif nxt_valid[p]:
                q_head[p] = nxt[p, 4]
            else:
                q_head[p] = q_read[p]
            if q_head[p] < oldest_head:
                oldest_head = q_head[p]
            if t < trace_state.shape[0]:
                trace_state[t, p] = state
                trace_queue[t, p] = bcast + (1 if push else 0) - q_head[p]
        # ---------------- update: the CCU's broadcast lands in every queue
        if push:
            bcast += 1
            ccu_stats[CCU_BROADCASTS] += 1
            for p in range(n_pe):
                pe_stats[p, QUEUE_PUSHES] += 1
        elif blocked:
            ccu_stats[CCU_FULL_STALLS] += 1
        t += 1
    if issued_any:
        # the last entry's write leaves the arithmetic pipeline stages - 1 cycles later
        drain = stages - 1
        for p in range(n_pe):
            pe_stats[p, STARVED] += drain
            for d in range(drain):
                if t + d < trace_state.shape[0]:
                    trace_state[t + d, p] = TRACE_STARVED
                    trace_queue[t + d, p] = 0
        t += drain
    return t
