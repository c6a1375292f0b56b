"""Circuits per second for the hybrid model's circuit, three ways, by batch size.

    python bench/qnn.py [--batches 1,64,256,1024] [--qubits 8] [--layers 3] [--precision highest]

Runs wherever JAX finds a device (CPU here; on a lent H100 see docs/benchmarks/qnn-h100.txt).

(a) naive: the PennyLane QNode called once per sample, as a first implementation would;
(b) jit+vmap: the QNode vmapped over the batch and jax.jit-compiled (what Vigil runs);
(c) statevector: the same gates written as a plain JAX statevector simulation, jit+vmap.

The three are checked to give the same expectation values before anything is timed. Prints
a table, then one JSON line (``jit_vs_naive`` = naive time / jit time per circuit and
``jit_vs_statevector`` = jit time / statevector time, both at batch 1024).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from vigil.models import statevector
from vigil.models.hybrid import _qnode


def timed(fn, *args, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeats`` calls, results blocked until ready."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="1,64,256,1024")
    ap.add_argument("--qubits", type=int, default=8)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--naive-samples", type=int, default=32,
                    help="samples timed for the naive path (it is slow); per-circuit time scales")
    ap.add_argument("--precision", choices=("highest", "default"), default="highest",
                    help="float32 matmul precision: 'default' lets a GPU use TF32 (H100: "
                         "expectations then differ by ~3e-3, so the check is loosened)")
    args = ap.parse_args()
    # vigil.models.hybrid pins "highest" on import; "default" undoes that for comparison
    jax.config.update("jax_default_matmul_precision",
                      "highest" if args.precision == "highest" else None)
    atol = 2e-5 if args.precision == "highest" else 1e-2
    batches = [int(b) for b in args.batches.split(",")]
    n, layers = args.qubits, args.layers
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.uniform(0, 2 * np.pi, (layers, n, 3)), jnp.float32)
    qnode = _qnode(n, layers)

    def naive(angles):  # type: ignore[no-untyped-def]
        return [jnp.stack(qnode(a, weights)) for a in angles]

    vm = jax.jit(jax.vmap(lambda a, w: jnp.stack(qnode(a, w)), in_axes=(0, None)))
    sv = jax.jit(statevector.batched)

    # correctness first
    check = jnp.asarray(rng.uniform(-np.pi, np.pi, (8, n)), jnp.float32)
    ref = np.stack([np.asarray(x) for x in naive(check)])
    np.testing.assert_allclose(np.asarray(vm(check, weights)), ref, atol=atol)
    np.testing.assert_allclose(np.asarray(sv(check, weights)), ref, atol=atol)

    device = jax.devices()[0]
    rows, figures = [], {}
    for b in batches:
        angles = jnp.asarray(rng.uniform(-np.pi, np.pi, (b, n)), jnp.float32)
        vm_fresh = jax.jit(jax.vmap(lambda a, w: jnp.stack(qnode(a, w)), in_axes=(0, None)))
        sv_fresh = jax.jit(statevector.batched)
        t0 = time.perf_counter()
        jax.block_until_ready(vm_fresh(angles, weights))
        compile_jit = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(sv_fresh(angles, weights))
        compile_sv = time.perf_counter() - t0
        t_jit = timed(vm_fresh, angles, weights) / b
        t_sv = timed(sv_fresh, angles, weights) / b
        k = min(b, args.naive_samples)
        t_naive = timed(naive, angles[:k], repeats=2) / k
        rows.append((b, 1 / t_naive, 1 / t_jit, 1 / t_sv, t_naive / t_jit, t_jit / t_sv,
                     compile_jit, compile_sv))
        figures[b] = {"naive_per_s": 1 / t_naive, "jit_per_s": 1 / t_jit, "statevector_per_s": 1 / t_sv,
                      "jit_vs_naive": t_naive / t_jit, "jit_vs_statevector": t_jit / t_sv,
                      "compile_jit_s": compile_jit, "compile_statevector_s": compile_sv}

    console = Console()
    t = Table(title=f"{n}-qubit, {layers}-layer circuit, circuits/s on {device.platform} "
                    f"({device}), {args.precision} matmul precision")
    for col in ("batch", "naive QNode", "jit+vmap QNode", "JAX statevector", "jit / naive",
                "jit vs statevector (time)", "compile jit s", "compile sv s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r[0]), f"{r[1]:,.0f}", f"{r[2]:,.0f}", f"{r[3]:,.0f}", f"{r[4]:,.0f}x",
                  f"{r[5]:.2f}x", f"{r[6]:.2f}", f"{r[7]:.2f}")
    console.print(t)
    top = figures[max(batches)]
    print(json.dumps({
        "device": device.platform,
        "precision": args.precision,
        "batch": max(batches),
        "jit_vs_naive": round(top["jit_vs_naive"], 1),
        "jit_vs_statevector": round(top["jit_vs_statevector"], 3),
        "jit_circuits_per_s": round(top["jit_per_s"], 1),
        "naive_circuits_per_s": round(top["naive_per_s"], 1),
        "statevector_circuits_per_s": round(top["statevector_per_s"], 1),
        "first_call_compile_s": round(top["compile_jit_s"], 2),
        "by_batch": {str(b): {k: round(v, 4) for k, v in f.items()} for b, f in figures.items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
