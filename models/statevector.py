"""The hybrid model's circuit written directly as a JAX statevector simulation.

Same gates as the PennyLane QNode in :mod:`vigil.models.hybrid`: per layer, RY(angle_i) on
every wire (AngleEmbedding, rotation Y), then a one-layer StronglyEntanglingLayers: Rot(phi,
theta, omega) = RZ(omega) RY(theta) RZ(phi) on every wire followed by CNOT(i, i+1 mod n) for
i = 0..n-1 (range 1, PennyLane's default for a single layer). It is the yardstick of
``bench/qnn.py`` (how close PennyLane's jit+vmap path comes to hand-written JAX) and an
independent check that the QNode computes what the docstrings say (tests compare them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["expvals"]


def _ry(theta):  # type: ignore[no-untyped-def]
    c, s = jnp.cos(theta / 2), jnp.sin(theta / 2)
    return jnp.array([[c, -s], [s, c]], dtype=jnp.complex64)


def _rz(phi):  # type: ignore[no-untyped-def]
    return jnp.array([[jnp.exp(-0.5j * phi), 0], [0, jnp.exp(0.5j * phi)]], dtype=jnp.complex64)


def _apply_1q(state, gate, wire: int, n: int):  # type: ignore[no-untyped-def]
    state = jnp.tensordot(gate, state, axes=([1], [wire]))
    return jnp.moveaxis(state, 0, wire)


def _apply_cnot(state, control: int, target: int):  # type: ignore[no-untyped-def]
    # where control is 1, flip the target axis
    one = jnp.take(state, 1, axis=control)
    t = target if target < control else target - 1
    one = jnp.flip(one, axis=t)
    zero = jnp.take(state, 0, axis=control)
    return jnp.stack([zero, one], axis=control)


def expvals(angles, weights):  # type: ignore[no-untyped-def]
    """<Z_i> for one input: angles (n,), weights (layers, n, 3) -> (n,)."""
    n = angles.shape[0]
    layers = weights.shape[0]
    state = jnp.zeros((2,) * n, jnp.complex64).at[(0,) * n].set(1.0)
    for layer in range(layers):
        for w in range(n):
            state = _apply_1q(state, _ry(angles[w]), w, n)
        for w in range(n):
            phi, theta, omega = weights[layer, w]
            rot = _rz(omega) @ _ry(theta) @ _rz(phi)
            state = _apply_1q(state, rot, w, n)
        for w in range(n):
            state = _apply_cnot(state, w, (w + 1) % n)
    probs = jnp.abs(state) ** 2
    out = []
    for w in range(n):
        p = jnp.moveaxis(probs, w, 0).reshape(2, -1).sum(axis=1)
        out.append(p[0] - p[1])
    return jnp.stack(out)


batched = jax.vmap(expvals, in_axes=(0, None))
