"""The train step and loop: exact resumption, ensembles, data parallelism, NaN handling."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import checkpoints, parallel, rundir, train, workdir_lock
from vae_jax import state as state_lib
from vae_jax.data import get_dataset
from vae_jax.data import pipeline as data_pipeline


def restore_params(workdir, config):
  """The parameters of the latest checkpoint in workdir, as NumPy leaves."""
  dataset = get_dataset(config.data)
  *_, target = rundir.build(config, dataset, len(dataset))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  return jax.tree.map(np.asarray, state.params), state


@pytest.mark.parametrize("donated", [False, True], ids=["kept", "donated"])
def test_resume_is_exact(tmp_path, test_config, monkeypatch, donated):
  """2k steps straight vs k steps, stop, and k more from the checkpoint: identical parameters.

  With the state donated (updated in place), the straight run's checkpoint at step k,
  saved asynchronously while the next steps overwrite the state, must hold step k.
  """
  monkeypatch.setattr(train, "CPU_DONATION_MIN_BYTES", 0 if donated else 2**62)
  config = test_config
  config.eval.final = "none"
  config.eval.figures = False
  config.num_train_steps = 6
  config.checkpoint_every_steps = 3
  train.train_and_evaluate(config, str(tmp_path / "straight"))
  config.num_train_steps = 3
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  shutil.copytree(tmp_path / "straight" / "checkpoints", tmp_path / "straight_at_3" / "checkpoints")
  shutil.rmtree(tmp_path / "straight_at_3" / "checkpoints" / "6")
  for a, b in zip(jax.tree.leaves(restore_params(tmp_path / "straight_at_3", config)[0]),
                  jax.tree.leaves(restore_params(tmp_path / "resumed", config)[0])):
    np.testing.assert_array_equal(a, b)
  config.num_train_steps = 6
  results = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert results["checkpoint_step"] == 6
  straight, state = restore_params(tmp_path / "straight", config)
  resumed, _ = restore_params(tmp_path / "resumed", config)
  assert int(state.step[0]) == 6
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  # And training did change the parameters from their initial values.
  *_, fresh = rundir.build(config, get_dataset(config.data), 1)
  assert any(not np.allclose(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(fresh.params)))


def test_ensemble_equals_separate_runs(tmp_path, test_config):
  """An ensemble of 2 (seeds 0 and 1, β 2 and 9) equals two single runs with the same seeds and β."""
  config = test_config
  config.eval.final = "none"
  config.eval.figures = False
  config.num_train_steps = 4
  config.ensemble.num_members = 2
  config.ensemble.betas = (2.0, 9.0)
  results = train.train_and_evaluate(config, str(tmp_path / "ensemble"))
  ensemble, _ = restore_params(tmp_path / "ensemble", config)
  assert [(m["seed"], m["beta"]) for m in results["members"]] == [(0, 2.0), (1, 9.0)]
  for member, (seed, beta) in enumerate([(0, 2.0), (1, 9.0)]):
    config.ensemble.num_members = 1
    config.ensemble.betas = ()
    config.seed = seed
    config.loss.beta = beta
    single_results = train.train_and_evaluate(config, str(tmp_path / f"single{member}"))
    single, _ = restore_params(tmp_path / f"single{member}", config)
    for a, b in zip(jax.tree.leaves(ensemble), jax.tree.leaves(single)):
      np.testing.assert_allclose(a[member], b[0], rtol=1e-4, atol=1e-5)
    assert results["train"]["loss"][member] == pytest.approx(single_results["train"]["loss"][0], rel=1e-4)
  # The members really differ (different seeds and β).
  assert not np.allclose(jax.tree.leaves(ensemble)[0][0], jax.tree.leaves(ensemble)[0][1])


def test_four_devices_match_one_device(test_config):
  """The jitted ensemble step on a 4-device mesh gives the loss and update of a 1-device mesh."""
  assert jax.device_count() == 4, "tests/conftest.py forces 4 CPU devices"
  config = test_config
  config.ensemble.num_members = 2
  dataset = get_dataset(config.data)
  model, objective, optimizers, initial = rundir.build(config, dataset, len(dataset))
  batch = data_pipeline.ensemble_batch(dataset, [0, 1], step=0, batch_size=config.batch_size)
  step_fn = train.ensemble_step_fn(train.StepSpec(objective, model.apply, optimizers))
  outputs = []
  for num_devices in (1, 4):
    mesh = parallel.create_mesh(num_devices)
    state = jax.device_put(initial, parallel.replicated(mesh))
    fn = jax.jit(step_fn, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)))
    global_batch = parallel.global_batch(batch, mesh)
    assert len(global_batch.sharding.device_set) == num_devices
    new_state, metrics = fn(state, global_batch)
    outputs.append((jax.tree.map(np.asarray, new_state.params), jax.tree.map(np.asarray, new_state.opt_state),
                    jax.tree.map(np.asarray, metrics)))
  (p1, o1, m1), (p4, o4, m4) = outputs
  for name in m1:
    np.testing.assert_allclose(m1[name], m4[name], rtol=1e-5, atol=1e-5, err_msg=name)
  # Adam's first moment after one step is (1 - b1) * gradient: the gradients agree.
  for a, b in zip(jax.tree.leaves(o1), jax.tree.leaves(o4)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_members,unroll", [(1, None), (2, True), (2, False)],
                         ids=["one_member", "member_by_member", "vmap"])
def test_ensemble_step_is_train_step_per_member(test_config, monkeypatch, num_members, unroll):
  """The ensemble step equals train_step on each member, however the members are run."""
  config = test_config
  config.ensemble.num_members = num_members
  config.ensemble.betas = (1.0, 8.0)[:num_members]
  dataset = get_dataset(config.data)
  model, objective, optimizers, state = rundir.build(config, dataset, len(dataset))
  spec = train.StepSpec(objective, model.apply, optimizers)
  # Members at different steps (Adam's bias corrections differ), one already marked non-finite.
  state = state.replace(step=jnp.asarray([3, 7][:num_members]), nonfinite_step=jnp.asarray([-1, 2][:num_members]))
  batch = jnp.asarray(data_pipeline.ensemble_batch(dataset, list(range(num_members)), step=0,
                                                   batch_size=config.batch_size))
  vmap_members = parallel.vmap_members
  monkeypatch.setattr(parallel, "vmap_members", lambda fn, *a, **k: vmap_members(fn, *a, unroll=unroll, **k))
  new_state, metrics = jax.jit(train.ensemble_step_fn(spec))(state, batch)
  for m in range(num_members):
    member = jax.tree.map(lambda a: a[m], state)
    expected, expected_metrics = train.train_step(member, batch[m], jax.random.fold_in(member.rng, member.step),
                                                  spec=spec)
    got = jax.tree.map(lambda a: a[m], new_state)
    assert int(got.step) == int(member.step) + 1
    assert int(got.nonfinite_step) == int(member.nonfinite_step)
    for a, b in zip(jax.tree.leaves((got.params, got.opt_state)), jax.tree.leaves((expected.params, expected.opt_state))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for name, value in expected_metrics.items():
      np.testing.assert_allclose(metrics[name][m], value, rtol=1e-5, atol=1e-5, err_msg=name)


def _state_like(num_members: int, num_floats: int):
  """A train state's shapes: `num_floats` float32 parameters and moments in all, num_members members."""
  leaf = jax.ShapeDtypeStruct((num_members, -(-num_floats // (3 * num_members))), jnp.float32)
  return train.TrainState(step=jax.ShapeDtypeStruct((num_members,), jnp.int32), params={"vae": leaf},
                          opt_state={"vae": (leaf, leaf)}, rng=None, hparams={}, nonfinite_step=None)


def test_donates_state_on_cpu_only_for_one_large_member():
  big = train.CPU_DONATION_MIN_BYTES // 4  # float32 values of that many bytes
  assert train.donates_state(_state_like(1, big))
  assert not train.donates_state(_state_like(1, big - 3000))
  assert not train.donates_state(_state_like(2, 4 * big))


def test_jit_ensemble_step_updates_the_state_in_place_when_it_donates(test_config, monkeypatch):
  config = test_config
  dataset = get_dataset(config.data)
  model, objective, optimizers, initial = rundir.build(config, dataset, len(dataset))
  spec = train.StepSpec(objective, model.apply, optimizers)
  mesh = parallel.create_mesh()
  batch = parallel.global_batch(data_pipeline.ensemble_batch(dataset, [0], step=0, batch_size=config.batch_size),
                                mesh)
  for min_bytes, donated in ((2**62, False), (0, True)):
    monkeypatch.setattr(train, "CPU_DONATION_MIN_BYTES", min_bytes)
    state = jax.device_put(initial, parallel.replicated(mesh))
    assert train.donates_state(state) == donated
    new_state, _ = train.jit_ensemble_step(spec, mesh, state)(state, batch)
    assert all(leaf.is_deleted() == donated for leaf in jax.tree.leaves(state.params))
    assert int(new_state.step[0]) == 1


def test_train_step_is_pure_and_reports_every_term(test_config):
  config = test_config
  dataset = get_dataset(config.data)
  model, objective, optimizers, _ = rundir.build(config, dataset, len(dataset))
  state = state_lib.create_train_state(model, objective, optimizers, dataset.image_shape, 0,
                                       dict(alpha=1.0, beta=6.0, gamma=1.0))
  batch = jnp.asarray(dataset.images(np.arange(8)))
  spec = train.StepSpec(objective, model.apply, optimizers)
  rng = jax.random.PRNGKey(3)
  s1, m1 = train.train_step(state, batch, rng, spec=spec)
  s2, m2 = train.train_step(state, batch, rng, spec=spec)
  assert set(m1) >= {"loss", "reconstruction", "kl", "mi", "tc", "dimwise_kl", "elbo"}
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(s1.step) == 1 and int(s1.nonfinite_step) == -1
  _, m3 = train.train_step(state, batch, jax.random.PRNGKey(4), spec=spec)
  assert float(m3["loss"]) != float(m1["loss"])  # The rng drives the sampling.


class NaNAfter:
  """Wraps a dataset so that every image rendered for step >= `first_bad_step` is NaN."""

  def __init__(self, dataset, first_bad_step):
    self._dataset, self._calls, self._first_bad = dataset, 0, first_bad_step
    for attr in ("name", "factor_names", "factor_sizes", "factor_values", "image_shape", "factor_value_labels",
                 "mig_excluded_factors", "nuisance_factors", "procedural"):
      setattr(self, attr, getattr(dataset, attr))

  def __len__(self):
    return len(self._dataset)

  def images(self, indices):
    self._calls += 1  # One call per step: one member, numpy pipeline renders steps in order.
    images = self._dataset.images(indices)
    return images * np.nan if self._calls >= self._first_bad else images


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, test_config, monkeypatch):
  config = test_config
  config.eval.final = "none"
  config.eval.figures = False
  config.num_train_steps = 8
  config.checkpoint_every_steps = 2
  monkeypatch.setattr(train, "get_dataset", lambda c: NaNAfter(get_dataset(c), first_bad_step=5))
  with pytest.raises(train.NonFiniteLossError, match=r"step 5 .*the newest checkpoint \(step 4\) is intact"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpoints.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 4
  ckpt.close()
  params, state = restore_params(tmp_path, config)
  assert int(state.nonfinite_step[0]) == -1
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_a_nan_stops_training_at_the_next_log_step_and_says_no_checkpoint_exists(tmp_path, test_config, monkeypatch):
  config = test_config
  config.eval.final = "none"
  config.eval.figures = False
  config.num_train_steps = 1000
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 2
  datasets = []
  monkeypatch.setattr(train, "get_dataset", lambda c: datasets.append(NaNAfter(get_dataset(c), 3)) or datasets[-1])
  with pytest.raises(train.NonFiniteLossError, match="at step 3 .*no checkpoint was written"):
    train.train_and_evaluate(config, str(tmp_path))
  assert datasets[0]._calls < 50  # Stopped at log step 4 (seen at step 5), plus the prefetched batches.
  assert not any(d.isdigit() for d in os.listdir(tmp_path / "checkpoints"))


def test_another_config_or_fewer_steps_is_refused_before_anything_is_written(tmp_path, test_config):
  config = test_config
  config.eval.final = "none"
  config.eval.figures = False
  config.num_train_steps = 4
  train.train_and_evaluate(config, str(tmp_path))
  written = {name: (tmp_path / name).read_bytes() for name in ("config.json", "metrics.json")}
  config.loss.beta = 2.0
  config.num_train_steps = 6
  with pytest.raises(rundir.WorkdirConfigError, match=r"loss\.beta=2\.0 \(config\.json: 6\.0\)"):
    train.train_and_evaluate(config, str(tmp_path))
  config.loss.beta = 6.0
  config.num_train_steps = 3
  with pytest.raises(ValueError, match=r"at step 4, past num_train_steps=3: pass --config\.num_train_steps>=4"):
    train.train_and_evaluate(config, str(tmp_path))
  assert {name: (tmp_path / name).read_bytes() for name in written} == written
  ckpt = checkpoints.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.all_steps()[-1] == 4
  ckpt.close()


def test_training_holds_the_workdir_lock(tmp_path, test_config):
  with workdir_lock.hold(str(tmp_path)):  # As another process would.
    with pytest.raises(workdir_lock.WorkdirLockedError, match="in use by another vae_jax process"):
      train.train_and_evaluate(test_config, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [".lock"]
