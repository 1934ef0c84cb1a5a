"""sim.detmath: BLAS-free small linear algebra, and the simulation using nothing else."""

import ast
from pathlib import Path

import numpy as np
import pytest

from sim.detmath import inv, matmul, norm, rigid_inv, transform

SIM = Path(__file__).resolve().parents[1] / "sim"


def test_matmul_matches_numpy_for_every_shape_the_simulation_uses():
    rng = np.random.default_rng(0)
    for a_shape, b_shape in [((6, 7), (7, 7)), ((7, 14), (14,)), ((3,), (3, 3)), ((5, 8, 4), (4, 4)),
                             ((64, 64, 4), (4, 4))]:
        a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
        np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="b must be"):
        matmul(np.ones((2, 2)), np.ones((2, 2, 2)))


def test_inv_inverts_a_mass_matrix_like_matrix_and_refuses_a_singular_one():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(7, 7))
    m = m @ m.T + 0.1 * np.eye(7)
    np.testing.assert_allclose(matmul(m, inv(m)), np.eye(7), atol=1e-9)
    perm = np.eye(3)[[2, 0, 1]]  # needs pivoting: a zero on the diagonal
    np.testing.assert_allclose(inv(perm), perm.T)
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        inv(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(ValueError, match="square"):
        inv(np.ones((2, 3)))


def test_norm_is_the_euclidean_norm():
    assert norm(np.array([3.0, 4.0])) == 5.0


def _blas_calls(tree: ast.AST) -> list[int]:
    """Lines of ``a @ b``, ``np.dot`` / ``np.matmul`` / ``np.linalg.inv`` / ``np.linalg.solve`` and a
    ``np.linalg.norm`` without ``axis`` (which calls BLAS dot)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.MatMult):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("np.dot", "np.matmul", "np.linalg.inv", "np.linalg.solve", "np.inner", "np.vdot"):
                lines.append(node.lineno)
            elif name == "np.linalg.norm" and not any(k.arg == "axis" for k in node.keywords):
                lines.append(node.lineno)
    return lines


def test_the_simulation_calls_no_blas_so_its_numbers_do_not_depend_on_the_cpu():
    # benchmarks/determinism.py measured every episode differing under another OpenBLAS kernel
    # before sim/ moved to sim.detmath; this keeps a stray ``@`` from bringing that back.
    found = {path.name: lines for path in sorted(SIM.glob("*.py")) if path.name != "detmath.py"
             if (lines := _blas_calls(ast.parse(path.read_text())))}
    assert found == {}


def test_transform_of_points_and_planes_and_the_rigid_inverse():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(4, 4))
    pts = rng.normal(size=(5, 7, 3))
    hom = np.concatenate([pts, np.ones((5, 7, 1))], axis=-1)
    np.testing.assert_allclose(transform(pts, m), hom @ m.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(transform(list(np.moveaxis(pts, -1, 0)), m), transform(pts, m))
    with pytest.raises(ValueError, match="3 coordinates"):
        transform(pts, np.eye(3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = q, rng.normal(size=3)
    np.testing.assert_allclose(rigid_inv(t) @ t, np.eye(4), atol=1e-12)
