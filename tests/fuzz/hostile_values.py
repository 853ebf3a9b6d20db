"""Integers that break careless size and offset arithmetic: sign, int16/int32/int64 and uint64 edges."""

BIG_INTS = [-(2**63), -(2**31) - 1, -2, -1, 0, 1, 2, 3, 15, 16, 17, 255, 256, 2**15, 2**16, 2**24, 2**24 + 1,
            2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 10**30]
