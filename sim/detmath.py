"""Small dense linear algebra whose results do not depend on the BLAS / LAPACK kernel.

NumPy's ``@``, ``dot``, ``linalg.inv`` and the flattened ``linalg.norm`` call BLAS / LAPACK, and
OpenBLAS picks its kernels per CPU (Haswell, SkylakeX, Prescott...). The kernels sum in different
orders and some fuse multiply-adds, so the last bits of a product depend on the machine. The
simulation is chaotic at contact: one such bit grows into a different trajectory within an episode,
and the same seed writes a different dataset on another machine (measured: every episode's checksum
differed under ``OPENBLAS_CORETYPE=Prescott``; ``benchmarks/determinism.py``).

These functions use element-wise NumPy multiplies, divides and subtracts (each correctly rounded
under IEEE 754, whatever the SIMD width) and additions in an order fixed by the array shapes, never
fused. They are meant for the simulation's small matrices (7x7 mass matrix, 6x7 Jacobian, 4x4 camera
matrices applied to a few thousand points); they cost a few microseconds where BLAS costs one or two.
"""

from __future__ import annotations

import math

import numpy as np


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for float64 ``a`` (..., n, k) or (k,) and ``b`` (k, m) or (k,), summed in a fixed order.

    The multiply and the sum are separate ufuncs, so no multiply-add is fused whatever the CPU. For
    many points through one small matrix, ``transform`` is faster.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if b.ndim == 1:
        return (a * b).sum(axis=-1)
    if b.ndim != 2:
        raise ValueError(f"matmul: b must be (k,) or (k, m), got shape {b.shape}")
    if a.ndim == 1:
        return (a[:, None] * b).sum(axis=0)
    return (a[..., :, :, None] * b).sum(axis=-2)


def transform(points: np.ndarray | list[np.ndarray], m: np.ndarray) -> np.ndarray:
    """``[points, 1] @ m.T``: points (..., k - 1), or their k - 1 coordinate planes, through an
    (n, k) matrix ``m`` whose last column multiplies the implicit 1; returns (..., n).

    Computed plane by plane over whole arrays, each output coordinate summed over k in index order:
    the same value as ``matmul`` of the homogeneous points, far faster for a few thousand pixels.
    """
    m = np.asarray(m, dtype=np.float64)
    planes = points if isinstance(points, list) else list(np.moveaxis(np.asarray(points, dtype=np.float64), -1, 0))
    if len(planes) != m.shape[1] - 1:
        raise ValueError(f"transform: {len(planes)} coordinates for a matrix of shape {m.shape}")
    out = []
    for row in m:
        acc = planes[0] * row[0]
        for k in range(1, len(planes)):
            acc = acc + planes[k] * row[k]
        out.append(acc + row[-1])
    return np.stack(out, axis=-1)


def rigid_inv(t: np.ndarray) -> np.ndarray:
    """The inverse of a (4, 4) rigid transform ``[R p; 0 1]``: ``[R^T -R^T p; 0 1]``."""
    t = np.asarray(t, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -matmul(t[:3, :3].T, t[:3, 3])
    return out


def inv(a: np.ndarray) -> np.ndarray:
    """The inverse of a square float64 matrix (n, n), by Gauss-Jordan elimination with partial pivoting.

    Raises:
        np.linalg.LinAlgError: when ``a`` is singular (an exact zero pivot).
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"inv: expected a square matrix, got shape {a.shape}")
    aug = np.hstack([a, np.eye(n)])
    for col in range(n):
        pivot = col + int(np.abs(aug[col:, col]).argmax())
        if aug[pivot, col] == 0.0:
            raise np.linalg.LinAlgError("inv: singular matrix")
        if pivot != col:
            aug[[col, pivot]] = aug[[pivot, col]]
        row = aug[col] / aug[col, col]
        aug -= aug[:, col:col + 1] * row  # zeroes column col everywhere, row col included ...
        aug[col] = row  # ... which then takes the normalised pivot row
    return aug[:, n:]


def norm(v: np.ndarray) -> float:
    """Euclidean norm of a vector, summed in index order (``np.linalg.norm`` of a vector calls BLAS dot)."""
    v = np.asarray(v, dtype=np.float64)
    return math.sqrt(float((v * v).sum()))
