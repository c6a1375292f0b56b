"""How the hybrid model's sepsis risk moves when its circuit runs on noisy hardware.

    python bench/qnn_noise.py --data ../shared/data/physionet2019_training_setA.tar.gz

Held-out hours (patients the shipped model never saw; 1/3 of them positive so the ranking
is measurable) go through the trained pre-layers to get the circuit's angles; the circuit
then runs
  * exactly (``default.qubit``, as Vigil runs it),
  * with a finite number of shots (``default.qubit``, shots = 100 / 1,000 / 10,000, seeded),
  * with a depolarising channel of strength p on every qubit after every layer
    (``default.mixed``, p = 0.001 / 0.01 / 0.05),
and the same read-out and calibration turn expectation values into risks. For each setting:
how far the risk moves (mean and 99th percentile), whether the ranking survives (Spearman
rank correlation with the exact risks, AUROC of the noisy risks on these hours), and how
many alert decisions at the deployed threshold flip. Prints a table and one JSON line, and
writes ``docs/evaluation/qnn-noise.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml
from rich.console import Console
from rich.table import Table

from vigil.evaluation.data import feature_table
from vigil.evaluation.metrics import auroc
from vigil.kinds.sepsis import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.calibration import apply_platt
from vigil.models.hybrid import angles, readout
from vigil.settings import VigilSettings


def circuit(n: int, layers: int, device, noise: float | None):  # type: ignore[no-untyped-def]
    @qml.qnode(device, interface="jax")
    def run(a, w):
        for layer in range(layers):
            qml.AngleEmbedding(a, wires=range(n), rotation="Y")
            qml.StronglyEntanglingLayers(w[layer:layer + 1], wires=range(n))
            if noise:
                for i in range(n):
                    qml.DepolarizingChannel(noise, wires=i)
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    return run


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--plot", type=Path, default=Path("docs/evaluation/qnn-noise.png"))
    args = ap.parse_args()

    art = ModelArtifact.load(args.model or shipped_model())
    table = feature_table(args.data, VigilSettings(), progress=False)
    trained = set(art.training_patients)
    held = np.array([sid not in trained for sid in table.source_ids])
    rows = np.flatnonzero(held[table.patient])
    rng = np.random.default_rng(args.seed)
    pos, neg = rows[table.label[rows] == 1], rows[table.label[rows] == 0]
    k = args.rows // 3
    pick = np.r_[rng.choice(pos, k, replace=False), rng.choice(neg, args.rows - k, replace=False)]
    y = table.label[pick]
    Z = art.normaliser.transform(table.X[pick])
    params = jax.tree_util.tree_map(jnp.asarray, art.params)
    A = np.asarray(angles(params, jnp.asarray(Z)))
    W = params["circuit"]
    n, layers = art.spec.n_qubits, art.spec.layers
    a, b = art.calibration
    threshold = art.levels[0][0]

    def risks(expvals: np.ndarray) -> np.ndarray:
        return apply_platt(np.asarray(readout(params, jnp.asarray(expvals))), a, b)

    exact_fn = jax.jit(jax.vmap(lambda x, w: jnp.stack(
        circuit(n, layers, qml.device("default.qubit", wires=n), None)(x, w)), in_axes=(0, None)))
    exact = risks(np.asarray(exact_fn(jnp.asarray(A), W)))

    settings = [("shots", 100), ("shots", 1_000), ("shots", 10_000),
                ("depolarising", 0.001), ("depolarising", 0.01), ("depolarising", 0.05)]
    results = []
    noisy_by = {}
    for kind, level in settings:
        t0 = time.perf_counter()
        if kind == "shots":
            dev = qml.device("default.qubit", wires=n, shots=int(level), seed=args.seed)
            run = circuit(n, layers, dev, None)
            ev = np.stack([np.asarray(jnp.stack(run(jnp.asarray(x), W))) for x in A])
        else:
            run = circuit(n, layers, qml.device("default.mixed", wires=n), float(level))
            fn = jax.jit(jax.vmap(lambda x, w, r=run: jnp.stack(r(x, w)), in_axes=(0, None)))
            ev = np.concatenate([np.asarray(fn(jnp.asarray(A[i:i + 100]), W))
                                 for i in range(0, len(A), 100)])
        noisy = risks(ev)
        noisy_by[f"{kind} {level:g}"] = noisy
        d = np.abs(noisy - exact)
        results.append({
            "noise": kind, "level": level,
            "mean_abs_risk_change": float(d.mean()),
            "p99_abs_risk_change": float(np.quantile(d, 0.99)),
            "spearman_vs_exact": spearman(exact, noisy),
            "auroc": auroc(y, noisy),
            "alert_decisions_flipped": float(np.mean((noisy >= threshold) != (exact >= threshold))),
            "seconds": round(time.perf_counter() - t0, 1),
        })

    t = Table(title=f"Hybrid sepsis risk under circuit noise ({len(pick)} held-out hours, "
                    f"exact AUROC {auroc(y, exact):.3f}, mean risk {exact.mean():.3f})")
    for col in ("noise", "level", "mean |Δrisk|", "p99 |Δrisk|", "Spearman", "AUROC",
                "alerts flipped"):
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(r["noise"], f"{r['level']:g}", f"{r['mean_abs_risk_change']:.4f}",
                  f"{r['p99_abs_risk_change']:.4f}", f"{r['spearman_vs_exact']:.3f}",
                  f"{r['auroc']:.3f}", f"{r['alert_decisions_flipped']:.1%}")
    Console().print(t)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, kind in zip(axes, ("shots", "depolarising")):
        for name, noisy in noisy_by.items():
            if name.startswith(kind):
                ax.scatter(exact, noisy, s=6, alpha=0.5, label=name)
        lim = max(exact.max(), 0.01) * 1.1
        ax.plot([0, lim], [0, lim], "k:", lw=0.8)
        ax.axvline(threshold, color="tab:red", lw=0.8, ls="--")
        ax.set(xlabel="risk, exact circuit", ylabel="risk, noisy circuit", title=kind)
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)

    print(json.dumps({"rows": int(len(pick)), "exact_auroc": auroc(y, exact),
                      "model": art.version, "settings": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
