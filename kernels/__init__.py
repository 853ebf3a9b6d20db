"""Numba kernels: plain functions over arrays, one concern each.

Floor 1 of the import ladder (see DESIGN.md): numpy and numba only. The
Python-level wrappers in ``eie_runtime`` validate and allocate; nothing here
checks bounds, so nothing here may be called with unvalidated arrays.
"""
