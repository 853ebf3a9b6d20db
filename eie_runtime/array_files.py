"""Reading users' ``.npy``/``.npz`` input files for the command line."""

from __future__ import annotations

import zipfile

import numpy as np

from .errors import EIEInputError


def load_array_file(path: str, what: str):
    """A ``.npy`` array, or a ``.npz`` as {name: array}; unreadable files raise :class:`EIEInputError`."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {k: data[k] for k in data.files}
        return data
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise EIEInputError(f"{what}: {path} is not a readable .npy/.npz file ({exc.__class__.__name__}: {exc})") from None
