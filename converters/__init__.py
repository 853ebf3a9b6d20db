"""Converters: pruning, k-means weight sharing, compression into EIE layers,
and (in later modules) the torch and ONNX importers.

Floor 3 of the import ladder: they build core objects and never import a
front end.
"""

from .prune import magnitude_prune, prune_mask
from .weight_sharing import kmeans_share
from .compress import compress_matrix, quantize_matrix

__all__ = ["magnitude_prune", "prune_mask", "kmeans_share", "compress_matrix", "quantize_matrix"]
