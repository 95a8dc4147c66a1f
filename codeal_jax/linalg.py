"""Dense linear algebra that is safe to batch on XLA:CPU.

jaxlib's CPU LAPACK kernels split a batched call across the intra-op thread
pool and wait for the pieces on a pool thread. With several batched calls in
one program on a machine with few cores every pool thread can end up waiting
and the program hangs (seen with 2 cores: vmapped ``eigh``/``pinv``/``svd`` in
the staggered baselines). On CPU the wrappers here therefore batch with a
sequential loop (``jax.custom_batching.sequential_vmap``): each LAPACK call
sees one matrix, runs inline and cannot deadlock. On GPU and TPU they are the
plain ``jnp.linalg`` functions, batched by the solver libraries.

The backend is read when a function is traced (``jax.default_backend()``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_batching import sequential_vmap


def _cpu_sequential(fn):
    """``fn`` unchanged off CPU; on CPU, ``vmap`` of it becomes a loop over the batch."""
    looped = sequential_vmap(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        return looped(*args) if jax.default_backend() == "cpu" else fn(*args)

    return wrapper


@_cpu_sequential
def svd(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin SVD ``(u (m, k), s (k,), vt (k, n))``, k = min(m, n)."""
    return jnp.linalg.svd(a, full_matrices=False)


@_cpu_sequential
def singular_values(a: jax.Array) -> jax.Array:
    """Singular values (k,), descending."""
    return jnp.linalg.svd(a, compute_uv=False)


@_cpu_sequential
def pinv_hermitian(a: jax.Array) -> jax.Array:
    """Pseudo-inverse of a symmetric (n, n) matrix."""
    return jnp.linalg.pinv(a, hermitian=True)


@_cpu_sequential
def lstsq(a: jax.Array, b: jax.Array) -> jax.Array:
    """Minimum-norm least-squares solution of ``a x = b`` (a (m, n), b (m,) or (m, k))."""
    return jnp.linalg.lstsq(a, b)[0]


@_cpu_sequential
def qr_q(a: jax.Array) -> jax.Array:
    """The (m, k) orthonormal factor of a reduced QR decomposition."""
    return jnp.linalg.qr(a)[0]
