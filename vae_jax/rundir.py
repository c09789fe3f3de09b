"""A run on disk: its results schema, atomic JSON files and restoring its latest state.

Below training, evaluation, the figures, downstream tasks, sweeps and reports: all of
them read and write a workdir through this module.

    workdir/config.json  checkpoints/  metrics.json  events.out.tfevents.*  figures/  .lock

One process at a time works on a workdir (`hold_workdir`: vae_jax.workdir_lock), and
with one config: `check_workdir_config` refuses a config whose run-defining keys
differ from config.json's (configlib.RESUMABLE_KEYS may change).

metrics.json (and a sweep's results.json, which adds provenance) is a `RunResults`:
what was trained, on what, and one `MemberResults` per ensemble member holding every
evaluated metric under its registered name (vae_jax.metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Iterator

import jax
import ml_collections

from vae_jax import checkpoints, configlib, models, objectives, parallel, state as state_lib, workdir_lock
from vae_jax.data import get_dataset, holdout as holdout_lib
from vae_jax.data.grid import FactorDataset, dataset_note

METRICS_NAME = "metrics.json"
HISTORY_NAME = "eval_history.jsonl"  # The learning curve, one sub-grid evaluation per line.
SECONDS_NAME = "train_seconds.json"  # Training seconds up to the latest checkpoint, across resumptions.
CONFIG_NAME = "config.json"


def write_json_atomic(path: str, payload: dict[str, Any]) -> None:
  """Writes `payload` to `path` so that a reader sees the old file or the whole new one."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


@dataclasses.dataclass
class MemberResults:
  """One ensemble member's evaluation.

  metrics: {metric name: its result dict} (e.g. "mig": {"value", "factors", ...});
  images / subgrid_sizes: what was evaluated (the grid or a sub-grid of it).
  """

  member: int
  seed: int
  hparams: dict[str, float]
  metrics: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  images: int | None = None
  subgrid_sizes: list[int] | None = None

  def to_json(self) -> dict[str, Any]:
    """The JSON record: member, seed, hyperparameters (β also at the top), evaluated sizes, metrics."""
    out: dict[str, Any] = {"member": self.member, "seed": self.seed, "hparams": dict(self.hparams)}
    if "beta" in self.hparams:
      out["beta"] = self.hparams["beta"]
    if self.images is not None:
      out["images"] = self.images
      out["subgrid_sizes"] = self.subgrid_sizes
    return out | self.metrics

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> "MemberResults":
    """Reads `to_json`'s record (and older ones, which carry β but no "hparams")."""
    hparams = dict(record.get("hparams") or ({"beta": record["beta"]} if "beta" in record else {}))
    metrics = {k: v for k, v in record.items() if isinstance(v, dict) and k != "hparams"}
    return cls(member=int(record.get("member", 0)), seed=int(record.get("seed", 0)), hparams=hparams,
               metrics=metrics, images=record.get("images"), subgrid_sizes=record.get("subgrid_sizes"))


@dataclasses.dataclass
class RunResults:
  """A run's metrics.json: what was trained, on what, and each member's evaluation.

  extra: other top-level fields (a sweep's provenance: run, config, machine, ...).
  """

  checkpoint_step: int
  dataset: str
  dataset_note: str
  objective: str
  estimator: str
  architecture: str
  holdout: str
  members: list[MemberResults]
  train: dict[str, Any] = dataclasses.field(default_factory=dict)
  train_seconds: float | None = None
  resumed_from_step: int | None = None
  eval_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    """The JSON record (the members as `MemberResults.to_json`)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("members", "extra")}
    out = {k: v for k, v in out.items() if v is not None}
    return self.extra | out | {"members": [m.to_json() for m in self.members]}

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> "RunResults":
    """Reads `to_json`'s record; unknown top-level fields go to `extra`."""
    names = {f.name for f in dataclasses.fields(cls)} - {"members", "extra"}
    known = {k: record[k] for k in names if k in record}
    known.setdefault("checkpoint_step", 0)
    for key in ("dataset", "dataset_note", "objective", "estimator", "architecture", "holdout"):
      known.setdefault(key, "")
    return cls(members=[MemberResults.from_json(m) for m in record.get("members", [])],
               extra={k: v for k, v in record.items() if k not in names and k != "members"}, **known)


def run_results(config: ml_collections.ConfigDict, dataset: FactorDataset, step: int,
                evaluations: list[MemberResults] | None = None) -> RunResults:
  """The RunResults of `config`'s run at `step`: its members' evaluations, or their identities."""
  hparams = configlib.member_hparams(config)
  members = evaluations or [MemberResults(member=m, seed=config.seed + m, hparams={})
                            for m in range(config.ensemble.num_members)]
  for m in members:
    m.seed = config.seed + m.member
    m.hparams = {k: v[m.member] for k, v in hparams.items()}
  return RunResults(
      checkpoint_step=step,
      dataset=dataset.name,
      dataset_note=dataset_note(dataset),
      objective=config.loss.objective,
      estimator=config.loss.estimator,
      architecture=config.model.architecture,
      holdout=config.data.holdout,
      members=members,
  )


def append_history(workdir: str, entry: dict[str, Any]) -> None:
  """Appends one learning-curve point to workdir/eval_history.jsonl (kept across resumptions)."""
  with open(os.path.join(workdir, HISTORY_NAME), "a") as f:
    f.write(json.dumps(entry, sort_keys=True) + "\n")


def read_history(workdir: str, up_to_step: int) -> list[dict[str, Any]]:
  """The learning curve of workdir up to `up_to_step`, one point per step (the latest written wins)."""
  path = os.path.join(workdir, HISTORY_NAME)
  if not os.path.isfile(path):
    return []
  points = {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
      except json.JSONDecodeError:  # A line cut short by a kill.
        continue
      if entry.get("step", up_to_step + 1) <= up_to_step:
        points[entry["step"]] = entry
  return [points[s] for s in sorted(points)]


def write_train_seconds(workdir: str, step: int, seconds: float) -> None:
  """Records that training reached `step` after `seconds` of training in all (at a checkpoint)."""
  write_json_atomic(os.path.join(workdir, SECONDS_NAME), {"step": step, "seconds": seconds})


def train_seconds_at(workdir: str, step: int) -> float:
  """Training seconds spent before `step` (the restored checkpoint's), or 0.0 if not recorded."""
  path = os.path.join(workdir, SECONDS_NAME)
  if step == 0 or not os.path.isfile(path):
    return 0.0
  with open(path) as f:
    record = json.load(f)
  return float(record["seconds"]) if record.get("step") == step else 0.0


def write_metrics(workdir: str, results: RunResults) -> None:
  """Writes workdir/metrics.json atomically."""
  write_json_atomic(os.path.join(workdir, METRICS_NAME), results.to_json())


def read_results(path: str) -> RunResults:
  """Reads a metrics.json or results.json file."""
  with open(path) as f:
    return RunResults.from_json(json.load(f))


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes workdir/config.json atomically."""
  path = os.path.join(workdir, CONFIG_NAME)
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(path + ".tmp", path)


class WorkdirConfigError(ValueError):
  """A workdir was trained with a config that differs from the one given in a key that defines the run."""


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises WorkdirConfigError if workdir/config.json differs from `config` outside configlib.RESUMABLE_KEYS.

  A workdir without config.json passes (a new run, or checkpoints written by hand).
  """
  path = os.path.join(workdir, CONFIG_NAME)
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirConfigError(f"Cannot read {path} ({e}); move it aside to use this workdir, or use another "
                             "--workdir.") from None
  differences = configlib.config_differences(saved, config)
  if differences:
    shown = [f"{k}={new!r} (config.json: {old!r})" for k, (old, new) in list(differences.items())[:5]]
    more = f" and {len(differences) - 5} more" if len(differences) > 5 else ""
    raise WorkdirConfigError(
        f"{workdir} was trained with another config: {', '.join(shown)}{more}.\n"
        f"Pass the values of {path} to resume or read it, or train this config into a new --workdir "
        "(num_train_steps, eval.*, logging, checkpointing and input settings may change).")


def require_checkpoints(workdir: str) -> str:
  """workdir/checkpoints, or FileNotFoundError (creating nothing) when it is not there."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(f"No checkpoint under {ckpt_dir}: train first with --mode=train and the same --workdir "
                            "and --config.")
  return ckpt_dir


@contextlib.contextmanager
def hold_workdir(workdir: str, *, existing: bool = False) -> Iterator[None]:
  """Holds workdir's lock (vae_jax.workdir_lock) for the life of the context, on process 0.

  Every mode that writes into a workdir holds it, so a second process on the same
  workdir stops at once with workdir_lock.WorkdirLockedError naming the holder's PID.
  Other processes of a multi-host job hold nothing (they share process 0's workdir).
  existing=True (modes that read a trained run): FileNotFoundError, before anything
  is created, when the workdir has no checkpoints.
  """
  if existing:
    require_checkpoints(workdir)
  if jax.process_index() != 0:
    yield
    return
  with workdir_lock.hold(workdir):
    yield


@dataclasses.dataclass
class Run:
  """A restored run: its dataset, model, objective, mesh and latest train state."""

  dataset: FactorDataset
  model: models.VAE
  objective: objectives.Objective
  mesh: Any
  state: state_lib.TrainState

  @property
  def params(self) -> Any:
    """The VAE's parameters [S, ...]."""
    return self.state.params["vae"]

  @property
  def step(self) -> int:
    """The restored checkpoint's step."""
    return int(parallel.fetch(self.state.step)[0])


def build(config: ml_collections.ConfigDict, dataset: FactorDataset, train_size: int):
  """(model, objective, optimizers, initial ensemble state) of `config` for `dataset`.

  train_size: the number of training images (the objective's N).
  """
  model = models.create_model(config.model, dataset.image_shape)
  objective = objectives.create(config.loss, train_size)
  optimizers = objective.create_optimizers(config.optimizer)
  initial = state_lib.create_ensemble_state(model, objective, optimizers, dataset.image_shape, config.seed,
                                            config.ensemble.num_members, configlib.member_hparams(config))
  return model, objective, optimizers, initial


def restore_run(config: ml_collections.ConfigDict, workdir: str, *, with_holdout: bool = True) -> Run:
  """Restores workdir's latest checkpoint with `config`.

  The dataset is the whole grid, with config.data.holdout applied (a HoldoutDataset)
  if `with_holdout` and one is set. Raises FileNotFoundError when there is no
  checkpoint (creating nothing), WorkdirConfigError when the workdir was trained with
  another config, ValueError when the config does not fit the dataset,
  checkpoints.CheckpointError when the checkpoint cannot be read.
  """
  ckpt_dir = require_checkpoints(workdir)
  check_workdir_config(workdir, config)
  full = get_dataset(config.data)
  configlib.validate_dataset(config, full)
  train_data = holdout_lib.apply_holdout(full, config.data.holdout)
  dataset = train_data if with_holdout else full
  model, objective, _, target = build(config, full, len(train_data))
  mesh = parallel.mesh_for(config)
  target = jax.device_put(target, parallel.state_sharding(mesh))
  ckpt = checkpoints.Checkpointer(ckpt_dir)
  try:
    state = ckpt.restore_latest(target)
  finally:
    ckpt.close()
  if state is None:
    raise FileNotFoundError(f"No checkpoint under {ckpt_dir}: train first with --mode=train and the same --workdir "
                            "and --config.")
  return Run(dataset, model, objective, mesh, state)
