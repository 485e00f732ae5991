"""Unit-length vectors: the one normalisation every embedding goes through (speaker embeddings,
voice profiles, passage and query vectors)."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """`x` (a vector, or rows along `axis`) scaled to unit length, as float32; zero stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norms, EPS)


def mean_direction(rows: np.ndarray) -> np.ndarray:
    """The unit vector of the mean of `rows` (one row or several of one speaker)."""
    rows = np.asarray(rows, dtype=np.float32)
    return normalize(rows.mean(axis=0) if rows.ndim == 2 else rows)
