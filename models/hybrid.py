"""The hybrid quantum model: classical projection -> variational circuit -> classical read-out.

    x (normalised features + missingness indicators)
      -> Dense(n_inputs -> hidden) . GELU -> Dense(hidden -> n_qubits) . tanh . pi   (angles)
      -> circuit: `layers` x [AngleEmbedding(angles, Y) ; StronglyEntanglingLayers]  (data
         re-uploading: the angles enter again before every entangling layer)
      -> <Z_i> for every qubit
      -> Dense(n_qubits -> 1) = logit

The circuit is a PennyLane QNode on ``default.qubit`` with the JAX interface
(``diff_method="backprop"``), batched with ``jax.vmap`` and compiled with ``jax.jit``: the
stream always calls it with the same batch shape, so it compiles once per process.

``kind="classical"`` is the ablation the evaluation needs: the circuit is replaced by a
classical layer with exactly as many parameters (Dense(n_qubits -> n_qubits) . tanh has
n_qubits^2 + n_qubits parameters; the circuit has layers * n_qubits * 3, and the read-out
sees the same width), so the comparison says whether the circuit earns its place.
Parameters are pytrees passed in, never globals (as in Flax's examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml

# On GPUs JAX computes float32 matmuls in TF32 by default: on an H100 the circuit's
# expectation values then moved by up to 3.8e-3 (bench/qnn.py, docs/benchmarks/qnn-h100.txt)
# and it was not faster. Full precision keeps a GPU worker's risks equal to the evaluation's.
jax.config.update("jax_default_matmul_precision", "highest")

__all__ = ["HybridSpec", "angles", "init_params", "make_logit_fn", "param_count", "readout"]


@dataclass(frozen=True)
class HybridSpec:
    n_inputs: int
    hidden: int = 32
    n_qubits: int = 8
    layers: int = 3  # 3 x 8 x 3 = 72 circuit parameters = Dense(8 -> 8) in the ablation
    kind: str = "quantum"  # or "classical" (the ablation)

    def __post_init__(self) -> None:
        if self.kind not in ("quantum", "classical"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.kind == "classical" and self.circuit_params != self.n_qubits * (self.n_qubits + 1):
            # keep the ablation honest: same parameter count where the circuit was
            raise ValueError("the classical ablation needs layers * 3 == n_qubits + 1 "
                             f"(got layers={self.layers}, n_qubits={self.n_qubits})")

    @property
    def circuit_params(self) -> int:
        return self.layers * self.n_qubits * 3


def init_params(spec: HybridSpec, key: jax.Array) -> dict:
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def dense(k, n_in, n_out):
        lim = math.sqrt(6.0 / (n_in + n_out))  # Glorot uniform
        return {"w": jax.random.uniform(k, (n_in, n_out), minval=-lim, maxval=lim),
                "b": jnp.zeros(n_out)}

    params = {"pre1": dense(k1, spec.n_inputs, spec.hidden),
              "pre2": dense(k2, spec.hidden, spec.n_qubits),
              "out": dense(k4, spec.n_qubits, 1)}
    if spec.kind == "quantum":
        params["circuit"] = jax.random.uniform(k3, (spec.layers, spec.n_qubits, 3),
                                               minval=0.0, maxval=2 * math.pi)
    else:
        # Dense(n_qubits -> n_qubits): n_qubits^2 + n_qubits = layers * n_qubits * 3 parameters
        params["circuit"] = dense(k3, spec.n_qubits, spec.n_qubits)
    return params


def param_count(params: dict) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def _qnode(n_qubits: int, layers: int):  # type: ignore[no-untyped-def]
    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev, interface="jax", diff_method="backprop")
    def circuit(angles, weights):  # angles (n_qubits,), weights (layers, n_qubits, 3)
        for layer in range(layers):
            qml.AngleEmbedding(angles, wires=range(n_qubits), rotation="Y")
            qml.StronglyEntanglingLayers(weights[layer:layer + 1], wires=range(n_qubits))
        return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]

    return circuit


def make_logit_fn(spec: HybridSpec):  # type: ignore[no-untyped-def]
    """``logits(params, X) -> (batch,)``, not yet jitted (callers jit what they compose)."""
    if spec.kind == "quantum":
        circuit = _qnode(spec.n_qubits, spec.layers)

        def middle(p, angles):  # (batch, n_qubits) -> (batch, n_qubits)
            q = jax.vmap(circuit, in_axes=(0, None))(angles, p["circuit"])
            return jnp.stack(q, axis=-1)
    else:
        def middle(p, angles):
            return jnp.tanh(angles @ p["circuit"]["w"] + p["circuit"]["b"])

    def logits(p, X):
        return readout(p, middle(p, angles(p, X)))

    return logits


def angles(p: dict, X):  # type: ignore[no-untyped-def]
    """The classical pre-layers: inputs -> one rotation angle per qubit, in (-pi, pi)."""
    h = jax.nn.gelu(X @ p["pre1"]["w"] + p["pre1"]["b"])
    return jnp.tanh(h @ p["pre2"]["w"] + p["pre2"]["b"]) * jnp.pi


def readout(p: dict, z):  # type: ignore[no-untyped-def]
    """The classical post-layer: <Z> per qubit (or the ablation's layer) -> logit."""
    return (z @ p["out"]["w"] + p["out"]["b"])[:, 0]

