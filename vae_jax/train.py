"""Training: a pure train step, vmapped over an ensemble, and the loop that owns it.

`train_step(state, batch, rng)` updates one model: `compute_gradients`, then
`apply_gradients`. `ensemble_step_fn` runs it over the train state's leading ensemble
axis (one member per seed, each with its own β if asked) and `jit_ensemble_step`
jit-compiles that with the parameters replicated and the batch split over the mesh's
'data' axis. `train_and_evaluate(config, workdir)` owns everything
stateful: the input stream, checkpoints, metric writers and the final evaluation.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from vae_jax import checkpoints, configlib, evaluate, host_memory, losses, models, parallel, writers
from vae_jax.data import get_dataset, holdout
from vae_jax.data import pipeline as data_pipeline

Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Flax's TrainState plus what makes a step reproducible and reportable.

  rng: the member's base key; step t samples with fold_in(rng, t).
  hparams: the objective's weights {"alpha", "beta", "gamma"} (per member in an ensemble).
  nonfinite_step: −1, or the first step whose loss was NaN or Inf.
  """

  rng: jax.Array
  hparams: Mapping[str, jax.Array]
  nonfinite_step: jax.Array


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the run stops without saving the broken state."""


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the config's learning rate and moments."""
  o = config.optimizer
  return optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)


def create_train_state(
    model: models.VAE,
    optimizer: optax.GradientTransformation,
    image_shape: tuple[int, int, int],
    seed: jax.Array,
    hparams: Mapping[str, jax.Array],
) -> TrainState:
  """One member's initial state: parameters from `seed`, step 0, its hyperparameters."""
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  params = model.init(init_rng, dummy, init_rng)["params"]
  return TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=optimizer,
      rng=state_rng,
      hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
      nonfinite_step=jnp.asarray(-1, jnp.int32),
  )


def compute_gradients(
    state: TrainState,
    batch: jax.Array,
    rng: jax.Array,
    *,
    objective_fn: Callable[..., tuple[jax.Array, Metrics]],
) -> tuple[Any, jax.Array, Metrics]:
  """The loss's gradients for one model on batch [B, H, W, C]: (grads like params, loss [], metrics).

  `objective_fn(outputs, x, alpha=, beta=, gamma=)` is `losses.objective` with the
  objective's static settings bound.
  """

  def loss_fn(params):
    outputs = state.apply_fn({"params": params}, batch, rng)
    return objective_fn(outputs, batch, **state.hparams)

  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return grads, loss, metrics


def apply_gradients(state: TrainState, grads: Any, loss: jax.Array) -> TrainState:
  """One optimiser update of one model, recording the step if `loss` is NaN or Inf.

  Steps are numbered from 1: the state after step t has state.step == t.
  """
  first_bad = jnp.where((state.nonfinite_step < 0) & ~jnp.isfinite(loss), state.step + 1, state.nonfinite_step)
  return state.apply_gradients(grads=grads).replace(nonfinite_step=first_bad.astype(jnp.int32))


def train_step(
    state: TrainState,
    batch: jax.Array,
    rng: jax.Array,
    *,
    objective_fn: Callable[..., tuple[jax.Array, Metrics]],
) -> tuple[TrainState, Metrics]:
  """One optimiser step of one model on batch [B, H, W, C]; returns (state, metrics).

  `objective_fn(outputs, x, alpha=, beta=, gamma=)` is `losses.objective` with the
  objective's static settings bound.
  """
  grads, loss, metrics = compute_gradients(state, batch, rng, objective_fn=objective_fn)
  return apply_gradients(state, grads, loss), metrics


def ensemble_step_fn(objective_fn: Callable[..., tuple[jax.Array, Metrics]]):
  """train_step over the ensemble axis: (state [S], batch [S, B, ...]) -> (state, metrics [S]).

  Members go through `parallel.vmap_members` (member by member on CPU). A single
  member's gradients are computed on the squeezed state, but its optimiser update,
  being elementwise, is vmapped over the stacked state itself: XLA:CPU then fuses
  Adam over the state's own buffers instead of recomputing the moments inside the
  parameter update, as it does when the squeezed update is re-stacked (MLP at batch
  256, neither donated: 94.0 against 98.3 ms per step, benchmarks/step_breakdown.py).
  With several members unrolled, stacking their gradients first would copy them, so
  each member's update is stacked instead.
  """
  step = functools.partial(train_step, objective_fn=objective_fn)
  gradients = functools.partial(compute_gradients, objective_fn=objective_fn)

  def ensemble_step(state: TrainState, batch: jax.Array) -> tuple[TrainState, Metrics]:
    rngs = jax.vmap(jax.random.fold_in)(state.rng, state.step)
    if state.step.shape[0] > 1:
      return parallel.vmap_members(step)(state, batch, rngs)
    grads, loss, metrics = parallel.vmap_members(gradients)(state, batch, rngs)
    return jax.vmap(apply_gradients)(state, grads, loss), metrics

  return ensemble_step


# On CPU, the state is updated in place only from this size up (see `donates_state`).
CPU_DONATION_MIN_BYTES = 32 * 2**20


def donates_state(state: Any) -> bool:
  """Whether `jit_ensemble_step` donates (updates in place) a train state like `state`.

  Always on accelerators, where the state's memory matters. On CPU only for one
  member with a state of at least CPU_DONATION_MIN_BYTES. There in-place Adam moves
  far less memory: MLP at batch 256 (a 162.5 MiB state), 91.6 against 94.0 ms per step;
  Adam alone, 12.1 against 18.7 ms. A small state gains nothing, and XLA:CPU's
  in-place ordering costs time: conv64 (8.7 MiB) at batch 256, 295.1 against 277.4 ms.
  With several members each member's update is stacked into the state (see
  `ensemble_step_fn`), and XLA:CPU would copy every parameter and moment to update
  them in place: 3 MLP members at batch 256, 421 against 315 ms
  (benchmarks/step_breakdown.py).
  `state` may hold arrays or jax.ShapeDtypeStructs.
  """
  if jax.default_backend() != "cpu":
    return True
  nbytes = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state))
  return state.step.shape[0] == 1 and nbytes >= CPU_DONATION_MIN_BYTES


def jit_ensemble_step(config: ml_collections.ConfigDict, dataset_size: int, mesh: jax.sharding.Mesh,
                      state: TrainState):
  """The jitted ensemble step for `config` and states like `state`: state replicated, batch
  [S, B, ...] split over the mesh, the state donated where `donates_state(state)` says."""
  return jax.jit(
      ensemble_step_fn(make_objective_fn(config, dataset_size)),
      in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
      out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
      donate_argnums=(0,) if donates_state(state) else (),
  )


def make_objective_fn(config: ml_collections.ConfigDict, dataset_size: int):
  """`losses.objective` with the config's static settings bound."""
  return functools.partial(
      losses.objective,
      kind=config.loss.objective,
      likelihood=config.loss.likelihood,
      dataset_size=dataset_size,
      estimator=config.loss.estimator,
  )


def create_ensemble_state(
    config: ml_collections.ConfigDict, model: models.VAE, image_shape: tuple[int, int, int]
) -> TrainState:
  """The ensemble's initial state: every leaf has a leading axis of num_members."""
  num_members = config.ensemble.num_members
  seeds = jnp.arange(num_members) + config.seed
  hparams = dict(
      alpha=jnp.full((num_members,), config.loss.alpha, jnp.float32),
      beta=jnp.asarray(configlib.member_betas(config), jnp.float32),
      gamma=jnp.full((num_members,), config.loss.gamma, jnp.float32),
  )
  optimizer = create_optimizer(config)
  init = functools.partial(create_train_state, model, optimizer, image_shape)
  return jax.jit(jax.vmap(init))(seeds, hparams)


def member_scalars(metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Flat scalars for the writers: "name" for one member, "name/member_m" for several."""
  out = {}
  for name, values in metrics.items():
    values = np.asarray(values).reshape(-1)
    if values.size == 1:
      out[name] = float(values[0])
    else:
      out.update({f"{name}/member_{m}": float(v) for m, v in enumerate(values)})
  return out


def _check_finite(state: TrainState) -> None:
  bad = np.asarray(jax.device_get(state.nonfinite_step))
  if (bad >= 0).any():
    members = [int(m) for m in np.flatnonzero(bad >= 0)]
    step = int(bad[bad >= 0].min())
    raise NonFiniteLossError(
        f"The loss became NaN or Inf at step {step} (ensemble member(s) {members}). Training stopped; "
        "the last checkpoint (written before that step) is intact. Lower optimizer.learning_rate, "
        "check the data, or use loss.likelihood='bernoulli' for binary images."
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from workdir's latest checkpoint) and returns the final metrics.

  Writes workdir/config.json, checkpoints/, TensorBoard events and metrics.json.
  """
  configlib.validate_config(config)
  host_memory.retain_freed_memory()  # Steps reuse freed memory instead of page-faulting it in.
  os.makedirs(workdir, exist_ok=True)
  parallel.initialize(config.multi_host)
  is_chief = jax.process_index() == 0
  if is_chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2))

  dataset = get_dataset(config.data)
  train_data = holdout.apply_holdout(dataset, config.data.holdout)  # Evaluation keeps the whole grid.
  model = models.create_model(config.model, dataset.image_shape, config.loss.objective)
  mesh = parallel.create_mesh()
  state = create_ensemble_state(config, model, dataset.image_shape)
  state = jax.device_put(state, parallel.replicated(mesh))

  ckpt = checkpoints.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      max_to_keep=config.max_checkpoints_to_keep,
      save_every_steps=config.checkpoint_every_steps,
  )
  restored = ckpt.restore_latest(state)
  if restored is not None:
    state = restored
  start_step = int(jax.device_get(state.step)[0])
  num_steps = config.num_train_steps
  logging.info("Training %d member(s) from step %d to %d.", config.ensemble.num_members, start_step, num_steps)

  step_fn = jit_ensemble_step(config, len(train_data), mesh, state)
  seeds = [config.seed + m for m in range(config.ensemble.num_members)]
  stream = data_pipeline.train_stream(
      train_data, seeds, config.batch_size, start_step, num_steps,
      pipeline=config.data.pipeline, prefetch=config.data.prefetch, workers=config.data.workers,
      process_index=jax.process_index(), process_count=jax.process_count(),
  )

  writer = writers.create_writer(workdir, just_logging=not is_chief, asynchronous=True)
  if start_step == 0:
    writer.write_hparams(member_scalars({"beta": np.asarray(configlib.member_betas(config))}) | {
        "batch_size": config.batch_size, "latent_dim": config.model.latent_dim,
        "num_members": config.ensemble.num_members})
  progress = writers.report_progress(num_steps, writer, config.log_every_steps)
  pending = None  # (step, metrics) logged one step late so the host never waits on the device.
  last_metrics = None
  wait_time, t_start = 0.0, time.time()
  eval_history = []  # Sub-grid evaluations during training: the learning curve in metrics.json.
  try:
    with writers.ensure_flushes(writer):
      for step in range(start_step + 1, num_steps + 1):
        t0 = time.perf_counter()
        batch = parallel.global_batch(next(stream), mesh)
        wait_time += time.perf_counter() - t0
        state, metrics = step_fn(state, batch)
        if pending is not None:
          writer.write_scalars(pending[0], member_scalars(jax.device_get(pending[1])))
          pending = None
        progress(step, time.time())
        if step % config.log_every_steps == 0 or step == num_steps:
          pending = (step, metrics)
        last_metrics = metrics
        if step % config.checkpoint_every_steps == 0 or step == num_steps:
          _check_finite(state)  # Never save a state that has seen a NaN.
          ckpt.save(step, state, force=step == num_steps)
        if config.eval.every_steps and step % config.eval.every_steps == 0 and step != num_steps:
          _check_finite(state)
          subset = evaluate.evaluate_ensemble(config, model, state.params, dataset, mesh, full=False, seed=config.seed)
          writer.write_scalars(step, evaluate.summary_scalars(subset, "eval_subset"))
          eval_history.append(history_entry(step, config.batch_size, time.time() - t_start, subset))
      if pending is not None:
        writer.write_scalars(pending[0], member_scalars(jax.device_get(pending[1])))
    _check_finite(state)
  finally:
    ckpt.close()
  elapsed = time.time() - t_start
  trained = num_steps - start_step
  logging.info("Trained %d steps in %.1f s (%.1f%% waiting for input).", trained, elapsed,
               100 * wait_time / max(elapsed, 1e-9))

  results = []
  if config.eval.final != "none" and num_steps > 0:
    full = config.eval.final == "full"
    results = evaluate.evaluate_ensemble(config, model, state.params, dataset, mesh, full=full, seed=config.seed)
    writer.write_scalars(num_steps, evaluate.summary_scalars(results, "eval_full" if full else "eval_subset"))
  if config.eval.figures and num_steps > 0:
    from vae_jax import visualize  # matplotlib is only needed here.

    for m in range(config.ensemble.num_members):
      visualize.write_figures(config, model, state.params, train_data, workdir, member=m, step=num_steps,
                              mi=results[m]["mig"] if results else None, writer=writer)
  writer.flush()
  payload = results_payload(config, dataset, num_steps, results)
  payload["train"] = {k: np.asarray(v).tolist() for k, v in jax.device_get(last_metrics or {}).items()}
  payload["train_seconds"] = elapsed  # Of this invocation, which started at step resumed_from_step.
  payload["resumed_from_step"] = start_step
  payload["eval_history"] = eval_history
  if is_chief:
    evaluate.write_metrics_json(workdir, payload)
  for m, r in enumerate(results):
    logging.info("Member %d: MIG %.3f (%s; %s), histogram MIG %.3f, ELBO %.1f, log p(x) >= %.1f, TC %.2f.", m,
                 r["mig"]["value"], r["mig"]["estimator"], ", ".join(r["mig"]["factors"]), r["mig_histogram"]["value"],
                 r["likelihood"]["elbo"], r["likelihood"]["log_px_iw"], r["elbo_decomposition"]["total_correlation"])
  return payload


def history_entry(step: int, batch_size: int, seconds: float, evaluations: list) -> dict[str, Any]:
  """One point of the learning curve: step, images seen per member, seconds since this
  invocation started, and each member's sub-grid MIG (both estimators)."""
  return {
      "step": step, "images": step * batch_size, "seconds": seconds,
      "mig": [r["mig"]["value"] for r in evaluations],
      "mig_histogram": [r["mig_histogram"]["value"] for r in evaluations],
  }


def results_payload(config: ml_collections.ConfigDict, dataset, step: int, evaluations: list) -> dict[str, Any]:
  """The metrics.json record: what was trained, on what, and each member's evaluation."""
  betas = configlib.member_betas(config)
  return {
      "checkpoint_step": step,
      "dataset": dataset.name,
      "dataset_note": "procedurally generated grid, not the original dataset file"
                      if dataset.name.endswith("_procedural") else "",
      "objective": config.loss.objective,
      "estimator": config.loss.estimator,
      "architecture": config.model.architecture,
      "holdout": config.data.holdout,
      "members": [
          {"member": m, "seed": config.seed + m, "beta": betas[m], **(evaluations[m] if evaluations else {})}
          for m in range(config.ensemble.num_members)
      ],
  }

