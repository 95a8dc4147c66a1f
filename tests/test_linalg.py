"""The CPU-safe linear algebra wrappers: same numbers as jnp.linalg, and no hang when batched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from codeal_jax import linalg


def _batch(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_wrappers_match_numpy_under_vmap():
    a = _batch((5, 7, 4))
    sym = jnp.einsum("bij,bkj->bik", a, a)  # (5, 7, 7) rank-4 symmetric: pinv is not inv
    b = _batch((5, 7), seed=1)
    u, s, vt = jax.jit(jax.vmap(linalg.svd))(a)
    a64, sym64, b64 = (np.asarray(v, np.float64) for v in (a, sym, b))
    np.testing.assert_allclose(np.asarray(u * s[:, None, :]) @ np.asarray(vt), a64, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(linalg.singular_values)(a), np.linalg.svd(a64, compute_uv=False), rtol=1e-4)
    np.testing.assert_allclose(
        jax.vmap(linalg.pinv_hermitian)(sym), np.linalg.pinv(sym64, rcond=1e-5, hermitian=True), rtol=1e-3, atol=1e-3
    )
    x = jax.vmap(linalg.lstsq)(a, b)
    want = np.stack([np.linalg.lstsq(a64[i], b64[i], rcond=None)[0] for i in range(5)])
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)
    q = jax.vmap(linalg.qr_q)(a)
    np.testing.assert_allclose(np.einsum("bij,bik->bjk", q, q), np.broadcast_to(np.eye(4), (5, 4, 4)), atol=1e-5)
    # Nested vmaps (replications x subproblems) loop twice and agree too.
    s2 = jax.vmap(jax.vmap(linalg.singular_values))(jnp.stack([a, a + 1]))
    np.testing.assert_allclose(s2[1], np.linalg.svd(a64 + 1, compute_uv=False), rtol=1e-4)


def test_many_batched_calls_in_one_program_do_not_hang():
    """Regression: 12 batched pinv/eigh calls in one program hung jaxlib's CPU LAPACK on 2 cores."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        from codeal_jax import linalg

        @jax.jit
        def f(xs):
            out = 0.0
            for a in xs:
                s = a @ jnp.swapaxes(a, 1, 2)
                out = out + jax.vmap(linalg.pinv_hermitian)(s).sum() + jax.vmap(linalg.singular_values)(s).sum()
            return out

        xs = [jax.random.normal(jax.random.PRNGKey(i), (64, 40, 40)) for i in range(12)]
        for _ in range(3):
            f(xs).block_until_ready()
        print("NO_HANG")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert "NO_HANG" in proc.stdout, proc.stderr[-2000:]
