"""Training the hybrid model end to end: optax Adam on a class-weighted log loss.

About 2% of hours are labelled positive, so each positive row weighs n_neg / n_pos as much
as a negative one (balanced class weights). Mini-batches have a fixed size (the last partial
batch of an epoch is dropped) so the jitted step compiles once. After each epoch the model
is scored on the validation patients; the epoch with the best PhysioNet utility is kept
(early stopping with patience). Everything is seeded: the same data, spec and seed give
the same parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vigil.models.hybrid import HybridSpec, init_params, make_logit_fn
from vigil.progress import ProgressBar

__all__ = ["TrainConfig", "TrainResult", "fit_hybrid", "predict_logits"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 1024
    learning_rate: float = 3e-3
    patience: int = 2
    seed: int = 42


@dataclass
class TrainResult:
    params: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    compile_s: float = 0.0
    seconds: float = 0.0


def predict_logits(spec: HybridSpec, params: dict, X: np.ndarray,
                   batch_size: int = 4096) -> np.ndarray:
    """Logits for any number of rows, in fixed-shape padded chunks (one compilation)."""
    fn = _jitted_logits(spec)
    out = np.empty(len(X), np.float32)
    for start in range(0, len(X), batch_size):
        chunk = X[start:start + batch_size]
        m = len(chunk)
        if m < batch_size:
            chunk = np.vstack([chunk, np.zeros((batch_size - m, X.shape[1]), np.float32)])
        out[start:start + m] = np.asarray(fn(params, jnp.asarray(chunk)))[:m]
    return out


_JIT_CACHE: dict[HybridSpec, Callable] = {}


def _jitted_logits(spec: HybridSpec) -> Callable:
    if spec not in _JIT_CACHE:
        _JIT_CACHE[spec] = jax.jit(make_logit_fn(spec))
    return _JIT_CACHE[spec]


def fit_hybrid(spec: HybridSpec, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
               validate: Callable[[np.ndarray], float], config: TrainConfig | None = None,
               progress: bool = True, label: str = "hybrid", metric: str = "utility"
               ) -> TrainResult:
    """Train on (X, y); ``validate(logits_of_X_val) -> score`` (the ``metric``: utility,
    AUROC) picks the best epoch."""
    config = config or TrainConfig()
    logits_fn = make_logit_fn(spec)
    n_pos = max(1, int(y.sum()))
    pos_weight = (len(y) - n_pos) / n_pos
    opt = optax.adam(config.learning_rate)

    def loss(p, xb, yb):
        z = logits_fn(p, xb)
        w = jnp.where(yb > 0, pos_weight, 1.0)
        return jnp.sum(w * optax.sigmoid_binary_cross_entropy(z, yb)) / jnp.sum(w)

    @jax.jit
    def step(p, state, xb, yb):
        value, grads = jax.value_and_grad(loss)(p, xb, yb)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    rng = np.random.default_rng(config.seed)
    params = init_params(spec, jax.random.PRNGKey(config.seed))
    state = opt.init(params)
    yf = y.astype(np.float32)
    n_batches = len(X) // config.batch_size
    t0 = time.perf_counter()
    params, state, _ = step(params, state, jnp.asarray(X[:config.batch_size]),
                            jnp.asarray(yf[:config.batch_size]))
    params = init_params(spec, jax.random.PRNGKey(config.seed))  # the warm-up step compiled
    state = opt.init(params)
    result = TrainResult(params=params, best_epoch=-1, compile_s=time.perf_counter() - t0)
    best_u = -np.inf
    bar = ProgressBar(label, config.epochs * n_batches, enabled=progress)
    start = time.perf_counter()
    stale = 0
    for epoch in range(config.epochs):
        order = rng.permutation(len(X))
        losses = []
        for b in range(n_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            params, state, value = step(params, state, jnp.asarray(X[idx]), jnp.asarray(yf[idx]))
            if b % 50 == 0:
                losses.append(float(value))
            bar.advance()
        u = validate(predict_logits(spec, params, X_val))
        result.history.append({"epoch": epoch, "loss": float(np.mean(losses)),
                               f"val_{metric}": u, "seconds": time.perf_counter() - start})
        bar.print(f"{label} epoch {epoch}: loss {np.mean(losses):.4f}, "
                  f"validation {metric} {u:.3f}")
        if u > best_u:
            best_u, result.params, result.best_epoch, stale = u, params, epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    bar.stop()
    result.seconds = time.perf_counter() - start
    return result
