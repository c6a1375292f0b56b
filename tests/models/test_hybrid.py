"""The hybrid model: shapes, parameter counts, jit == eager, and the circuit's gates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vigil.models import statevector
from vigil.models.hybrid import HybridSpec, _qnode, init_params, make_logit_fn, param_count


def test_quantum_and_classical_ablation_have_the_same_parameter_count() -> None:
    q = init_params(HybridSpec(n_inputs=20), jax.random.PRNGKey(0))
    c = init_params(HybridSpec(n_inputs=20, kind="classical"), jax.random.PRNGKey(0))
    assert param_count(q) == param_count(c)
    assert HybridSpec(n_inputs=20).circuit_params == 72 == 8 * 9
    with pytest.raises(ValueError):
        HybridSpec(n_inputs=20, layers=2, kind="classical")  # 48 != 72: not a fair ablation


def test_jitted_batch_equals_eager_rows() -> None:
    spec = HybridSpec(n_inputs=12, hidden=6, n_qubits=4, layers=2)
    p = init_params(spec, jax.random.PRNGKey(1))
    f = make_logit_fn(spec)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 12)), jnp.float32)
    batched = np.asarray(jax.jit(f)(p, X))
    one_by_one = np.array([float(f(p, X[i:i + 1])[0]) for i in range(5)])
    assert batched.shape == (5,)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_circuit_matches_an_independent_statevector_simulation() -> None:
    rng = np.random.default_rng(3)
    n, layers = 4, 3
    angles = jnp.asarray(rng.uniform(-np.pi, np.pi, size=(6, n)), jnp.float32)
    weights = jnp.asarray(rng.uniform(0, 2 * np.pi, size=(layers, n, 3)), jnp.float32)
    qnode = _qnode(n, layers)
    pl = np.stack([np.asarray(jnp.stack(qnode(a, weights))) for a in angles])
    sv = np.asarray(statevector.batched(angles, weights))
    np.testing.assert_allclose(pl, sv, atol=2e-5)
    assert np.all(np.abs(sv) <= 1 + 1e-6)
