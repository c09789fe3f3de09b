"""Training: a pure train step, vmapped over an ensemble, and the loop that owns it.

`train_step(state, batch, rng)` updates one model: `compute_gradients`, then
`apply_gradients`. `ensemble_step_fn` runs it over the train state's leading ensemble
axis (one member per seed, each with its own β if asked) and `jit_ensemble_step`
jit-compiles that on a ('members', 'data') mesh: members split over 'members', each
member's batch over 'data'. `train_and_evaluate(config, workdir)` owns everything
stateful: the input stream, checkpoints, metric writers and the final evaluation.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Callable, Mapping

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vae_jax import checkpoints, configlib, evaluate, host_memory, objectives, parallel, rundir, writers
from vae_jax import state as state_lib
from vae_jax.data import get_dataset, holdout
from vae_jax.data import pipeline as data_pipeline

Metrics = dict[str, jax.Array]


TrainState = state_lib.TrainState


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the run stops without saving the broken state."""


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """What a train step needs besides the state: the objective, the VAE's apply function
  and one optimiser per network of the objective."""

  objective: objectives.Objective
  apply_fn: Callable
  optimizers: Mapping[str, optax.GradientTransformation]


def compute_gradients(state: TrainState, batch: jax.Array, rng: jax.Array, *,
                      spec: StepSpec) -> tuple[dict[str, Any], jax.Array, Metrics]:
  """Each network's gradients of its own loss for one model on batch [B, H, W, C].

  Returns (grads {network: tree like params[network]}, the sum of the losses [],
  metrics). Each loss is differentiated only w.r.t. the network it updates; the other
  networks' parameters enter it as constants.
  """
  grads, metrics, total = {}, {}, 0.0
  for name in spec.objective.NETWORKS:

    def loss_fn(own, name=name):
      params = {**state.params, name: own}
      return spec.objective.loss(name, params, batch, rng, state.hparams, state.step, spec.apply_fn)

    (loss, network_metrics), grads[name] = jax.value_and_grad(loss_fn, has_aux=True)(state.params[name])
    metrics.update(network_metrics)
    total = total + loss
  return grads, total, metrics


def apply_gradients(state: TrainState, grads: Mapping[str, Any], loss: jax.Array, *,
                    optimizers: Mapping[str, optax.GradientTransformation]) -> TrainState:
  """One optimiser update of every network of one model, recording the step if `loss` is NaN or Inf.

  Steps are numbered from 1: the state after step t has state.step == t.
  """
  first_bad = jnp.where((state.nonfinite_step < 0) & ~jnp.isfinite(loss), state.step + 1, state.nonfinite_step)
  return state.apply_updates(grads, optimizers).replace(nonfinite_step=first_bad.astype(jnp.int32))


def train_step(state: TrainState, batch: jax.Array, rng: jax.Array, *, spec: StepSpec) -> tuple[TrainState, Metrics]:
  """One optimiser step of one model on batch [B, H, W, C]; returns (state, metrics)."""
  grads, loss, metrics = compute_gradients(state, batch, rng, spec=spec)
  return apply_gradients(state, grads, loss, optimizers=spec.optimizers), metrics


def ensemble_step_fn(spec: StepSpec):
  """train_step over the ensemble axis: (state [S], batch [S, B, ...]) -> (state, metrics [S]).

  Members go through `parallel.vmap_members` (member by member on CPU). A single
  member's gradients are computed on the squeezed state, but its optimiser update,
  being elementwise, is vmapped over the stacked state itself: XLA:CPU then fuses
  Adam over the state's own buffers instead of recomputing the moments inside the
  parameter update, as it does when the squeezed update is re-stacked (MLP at batch
  256, neither donated: 94.0 against 98.3 ms per step, benchmarks/step_breakdown.py,
  this project's 2-core CPU). With several members unrolled, stacking their gradients
  first would copy them, so each member's update is stacked instead.
  """
  step = functools.partial(train_step, spec=spec)
  gradients = functools.partial(compute_gradients, spec=spec)
  update = functools.partial(apply_gradients, optimizers=spec.optimizers)

  def ensemble_step(state: TrainState, batch: jax.Array) -> tuple[TrainState, Metrics]:
    rngs = jax.vmap(jax.random.fold_in)(state.rng, state.step)
    if state.step.shape[0] > 1:
      return parallel.vmap_members(step)(state, batch, rngs)
    grads, loss, metrics = parallel.vmap_members(gradients)(state, batch, rngs)
    return jax.vmap(update)(state, grads, loss), metrics

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


def jit_ensemble_step(spec: StepSpec, mesh: jax.sharding.Mesh, state: TrainState):
  """The jitted ensemble step for states like `state` on `mesh`.

  The state [S, ...] is split over the mesh's 'members' axis (replicated when it has
  one device), the batch [S, B, ...] over 'members' and 'data'; each 'members' shard
  trains its own members (`parallel.shard_members`). The state is donated where
  `donates_state(state)` says.
  """
  members, batch = parallel.state_sharding(mesh), parallel.batch_sharding(mesh)
  step = parallel.shard_members(ensemble_step_fn(spec), mesh)
  return jax.jit(
      step,
      in_shardings=(members, batch),
      out_shardings=(members, members),
      donate_argnums=(0,) if donates_state(state) else (),
  )


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


def _check_finite(state: TrainState, ckpt: checkpoints.Checkpointer) -> None:
  """Raises NonFiniteLossError if any member's loss has been NaN or Inf (reads state.nonfinite_step)."""
  bad = parallel.fetch(state.nonfinite_step)
  if (bad >= 0).any():
    members = [int(m) for m in np.flatnonzero(bad >= 0)]
    step = int(bad[bad >= 0].min())
    latest = ckpt.latest_step()  # Only states checked finite are ever saved.
    kept = (f"the newest checkpoint (step {latest}) is intact and a rerun resumes from it" if latest is not None
            else "no checkpoint was written, so a rerun starts from step 0")
    raise NonFiniteLossError(
        f"The loss became NaN or Inf at step {step} (ensemble member(s) {members}); training stopped and {kept}. "
        "Lower optimizer.learning_rate, check the data, or use loss.likelihood='bernoulli' for binary images."
    )


def _check_resume_step(checkpoint_step: int | None, num_steps: int, ckpt_dir: str) -> None:
  if checkpoint_step is not None and checkpoint_step > num_steps:
    raise ValueError(f"The checkpoint in {ckpt_dir} is at step {checkpoint_step}, past num_train_steps={num_steps}: "
                     f"pass --config.num_train_steps>={checkpoint_step} to train on, or --mode=evaluate to evaluate "
                     "it as it is.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from workdir's latest checkpoint) and returns the final metrics.json record.

  Holds the workdir's lock throughout (rundir.hold_workdir). Writes workdir/config.json
  (once the checkpoint, if any, is restored), checkpoints/, TensorBoard events and
  metrics.json.

  Raises (before writing anything but the lock file):
    ValueError: an invalid config (configlib.validate_config), or a checkpoint already
      past config.num_train_steps.
    rundir.WorkdirConfigError: the workdir was trained with another config.
    workdir_lock.WorkdirLockedError: another process works on the workdir.
    checkpoints.CheckpointError, DatasetFileError: an unreadable checkpoint or dataset.
  and NonFiniteLossError when the loss becomes NaN or Inf.
  """
  configlib.validate_config(config)
  host_memory.retain_freed_memory()  # Steps reuse freed memory instead of page-faulting it in.
  parallel.initialize(config.multi_host)
  with rundir.hold_workdir(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  rundir.check_workdir_config(workdir, config)
  is_chief = jax.process_index() == 0
  num_steps = config.num_train_steps

  dataset = get_dataset(config.data)
  configlib.validate_dataset(config, dataset)
  train_data = holdout.apply_holdout(dataset, config.data.holdout)  # Evaluation keeps the whole grid.
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = checkpoints.Checkpointer(ckpt_dir, max_to_keep=config.max_checkpoints_to_keep,
                                  save_every_steps=config.checkpoint_every_steps)
  try:
    _check_resume_step(ckpt.latest_step(), num_steps, ckpt_dir)  # Before the restore's cost (and log lines).
    model, objective, optimizers, state = rundir.build(config, dataset, len(train_data))
    mesh = parallel.mesh_for(config)
    state = jax.device_put(state, parallel.state_sharding(mesh))
    restored = ckpt.restore_latest(state)
    if restored is not None:
      state = restored
    start_step = int(parallel.fetch(state.step)[0])
    _check_resume_step(start_step, num_steps, ckpt_dir)
    if is_chief:
      rundir.write_config(workdir, config)  # Only now: a refused or unreadable run leaves config.json as it was.
    logging.info("Training %d member(s) from step %d to %d on %d %s device(s) (mesh: %s).",
                 config.ensemble.num_members, start_step, num_steps, jax.device_count(), jax.devices()[0].platform,
                 dict(mesh.shape))

    step_fn = jit_ensemble_step(StepSpec(objective, model.apply, optimizers), mesh, state)
    num_members = config.ensemble.num_members
    local_members, local_positions = parallel.local_block(mesh, num_members, config.batch_size)
    seeds = [config.seed + m for m in range(num_members)][local_members]  # This process feeds only its block.
    stream = data_pipeline.train_stream(
        train_data, seeds, config.batch_size, start_step, num_steps,
        pipeline=config.data.pipeline, prefetch=config.data.prefetch, workers=config.data.workers,
        local=local_positions,
    )

    def evaluate_now(full: bool) -> list[rundir.MemberResults]:
      return evaluate.evaluate_ensemble(config.eval, model, objective, state.params["vae"], dataset, mesh,
                                        full=full, seed=config.seed)

    writer = writers.create_writer(workdir, tensorboard=config.tensorboard, just_logging=not is_chief,
                                   asynchronous=True)
    if start_step == 0:
      writer.write_hparams(member_scalars({k: np.asarray(v) for k, v in configlib.member_hparams(config).items()})
                           | {"batch_size": config.batch_size, "latent_dim": config.model.latent_dim,
                              "num_members": config.ensemble.num_members})
    progress = writers.report_progress(num_steps, writer, config.log_every_steps)
    pending = None  # (step, metrics) logged one step late so the host never waits on the device.
    last_metrics = None
    wait_time, t_start = 0.0, time.time()
    seconds_before = rundir.train_seconds_at(workdir, start_step)  # Training time of earlier invocations.

    def write_pending() -> None:
      values = parallel.fetch(pending[1])
      writer.write_scalars(pending[0], member_scalars(values))
      if not np.isfinite(np.asarray(values.get("loss", 0.0))).all():
        _check_finite(state, ckpt)  # Stops at the first logged NaN, not at the next checkpoint.

    with writers.ensure_flushes(writer):
      for step in range(start_step + 1, num_steps + 1):
        t0 = time.perf_counter()
        batch = parallel.global_batch(next(stream), mesh, num_members, config.batch_size)
        wait_time += time.perf_counter() - t0
        state, metrics = step_fn(state, batch)
        if pending is not None:
          write_pending()
          pending = None
        progress(step, time.time())
        if step % config.log_every_steps == 0 or step == num_steps:
          pending = (step, metrics)
        last_metrics = metrics
        if step % config.checkpoint_every_steps == 0 or step == num_steps:
          _check_finite(state, ckpt)  # Never save a state that has seen a NaN.
          ckpt.save(step, state, force=step == num_steps)
          if is_chief:
            rundir.write_train_seconds(workdir, step, seconds_before + time.time() - t_start)
        if config.eval.every_steps and step % config.eval.every_steps == 0 and step != num_steps:
          _check_finite(state, ckpt)
          subset = evaluate_now(full=False)
          writer.write_scalars(step, evaluate.summary_scalars(subset, "eval_subset"))
          if is_chief:
            rundir.append_history(workdir, history_entry(step, config.batch_size,
                                                         seconds_before + time.time() - t_start, subset))
      if pending is not None:
        write_pending()
    _check_finite(state, ckpt)
  finally:
    ckpt.close()
  elapsed = time.time() - t_start
  trained = num_steps - start_step
  logging.info("Trained %d steps in %.1f s (%.1f%% waiting for input).", trained, elapsed,
               100 * wait_time / max(elapsed, 1e-9))

  evaluations = []
  if config.eval.final != "none" and num_steps > 0:
    full = config.eval.final == "full"
    evaluations = evaluate_now(full=full)
    writer.write_scalars(num_steps, evaluate.summary_scalars(evaluations, "eval_full" if full else "eval_subset"))
  if config.eval.figures and num_steps > 0:
    from vae_jax import figures  # matplotlib is only needed here.

    figure_params, _ = parallel.process_local(state.params["vae"], mesh)
    for m in range(config.ensemble.num_members):
      figures.write_figures(model, objective, figure_params, train_data, workdir, member=m, step=num_steps,
                            mi=evaluations[m].metrics.get("mig") if evaluations else None, writer=writer,
                            subset_images=config.eval.subset_images, seed=config.seed)
  writer.flush()
  results = rundir.run_results(config, dataset, num_steps, evaluations)
  results.train = {k: np.asarray(v).tolist() for k, v in parallel.fetch(last_metrics or {}).items()}
  results.train_seconds = elapsed  # Of this invocation, which started at step resumed_from_step.
  results.resumed_from_step = start_step
  results.eval_history = rundir.read_history(workdir, num_steps)
  results.extra["train_seconds_total"] = seconds_before + elapsed
  if is_chief:
    rundir.write_metrics(workdir, results)
  for r in evaluations:
    logging.info("Member %d: %s.", r.member, evaluate.log_line(r))
  return results.to_json()


def history_entry(step: int, batch_size: int, seconds: float, evaluations: list) -> dict[str, Any]:
  """One point of the learning curve: step, images seen per member, training seconds so far
  (all invocations of the run), and each member's scalars of the sub-grid evaluation."""
  entry = {"step": step, "images": step * batch_size, "seconds": seconds}
  for r in evaluations:
    for k, v in evaluate.member_scalars(r).items():
      entry.setdefault(k, []).append(v)
  return entry
