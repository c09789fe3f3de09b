"""The evaluated models of many runs: read from their records, grouped and labelled.

A model is one evaluated ensemble member of one run (a workdir's metrics.json, or the
results.json vae_jax.sweep copies next to a study). `load_models` reads every run dir
given (or its subfolders, one level down); `group_models` groups the models by dataset,
architecture, objective (with β-TCVAE's estimator) and hyperparameters, in the order
tables list them, and `group_labels` names each group ("β-TCVAE (MWS) β=6"). vae_jax.report
draws and tabulates the groups.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from vae_jax import objectives, rundir

# The two MIG conventions in metrics.json: (key, short name).
CONVENTIONS = (("mig", "MIG, sampling estimator"), ("mig_histogram", "MIG, histogram estimator"))
# Objectives in the order tables list them; others follow, by name.
_OBJECTIVE_ORDER = ("ae", "vae", "betavae", "betatcvae", "factorvae", "dipvae_i", "dipvae_ii", "annealedvae")


@dataclasses.dataclass(frozen=True)
class Model:
  """One evaluated ensemble member of one run."""

  run: str
  member: int
  seed: int
  hparams: tuple[tuple[str, float], ...]  # The objective's per-member hyperparameters, sorted by name.
  objective: str
  estimator: str  # β-TCVAE's minibatch estimator (mws / mss).
  architecture: str
  dataset: str
  dataset_note: str
  step: int
  mig: dict  # convention key -> {"value", "estimator", "factors", "images"}
  scores: dict = dataclasses.field(default_factory=dict)  # every metric with a headline "value": name -> value

  @property
  def beta(self) -> float:
    """β if the objective has one, else NaN."""
    return dict(self.hparams).get("beta", float("nan"))


# A run's record: metrics.json in its workdir, or results.json where vae_jax.sweep copied it.
RECORD_NAMES = ("metrics.json", "results.json")


def _record(folder: str) -> str | None:
  return next((p for p in (os.path.join(folder, n) for n in RECORD_NAMES) if os.path.isfile(p)), None)


def find_metrics(run_dir: str) -> list[str]:
  """The run record (metrics.json or results.json) of run_dir itself or, if it has none, of its direct subfolders."""
  own = _record(run_dir)
  if own:
    return [own]
  if not os.path.isdir(run_dir):
    return []
  return sorted(filter(None, (_record(os.path.join(run_dir, d)) for d in os.listdir(run_dir))))


# Numbers without a headline "value" that the report shows: (metric, key) -> column name.
EXTRA_SCORES = {("elbo_decomposition", "total_correlation"): "total correlation (nats)"}


def headline_scores(metrics: dict) -> dict[str, float]:
  """{column: value} of one model's metrics: every metric's headline "value" (by its name)
  and the EXTRA_SCORES (the ELBO decomposition's full-dataset total correlation)."""
  scores = {k: float(v["value"]) for k, v in metrics.items() if isinstance(v.get("value"), (int, float))}
  for (metric, key), column in EXTRA_SCORES.items():
    if isinstance(metrics.get(metric, {}).get(key), (int, float)):
      scores[column] = float(metrics[metric][key])
  return scores


def load_models(run_dirs: Sequence[str]) -> tuple[list[Model], list[str]]:
  """The evaluated models of every run dir, and one message per run dir or file that gave none."""
  models, problems = [], []
  for run_dir in run_dirs:
    paths = find_metrics(run_dir)
    if not paths:
      why = "does not exist" if not os.path.exists(run_dir) else "has no metrics.json or results.json (nor do its subfolders)"
      problems.append(f"{run_dir}: {why}; train it (python -m vae_jax.main --mode=train ...) or evaluate its "
                      "checkpoint (--mode=evaluate) first.")
      continue
    for path in paths:
      run = os.path.dirname(path)
      try:
        results = rundir.read_results(path)
      except (OSError, ValueError, TypeError, KeyError) as e:
        problems.append(f"{path}: cannot be read ({e}).")
        continue
      found = 0
      for m in results.members:
        if not all(isinstance(m.metrics.get(k), dict) and "value" in m.metrics[k] for k, _ in CONVENTIONS):
          continue
        found += 1
        models.append(Model(
            run=run,
            member=m.member,
            seed=m.seed,
            hparams=tuple(sorted((k, float(v)) for k, v in m.hparams.items())),
            objective=results.objective or "?",
            estimator=results.estimator,
            architecture=results.architecture or "?",
            dataset=results.dataset or "?",
            dataset_note=results.dataset_note,
            step=int(results.checkpoint_step),
            mig={k: dict(value=float(m.metrics[k]["value"]), estimator=str(m.metrics[k].get("estimator", k)),
                         factors=tuple(m.metrics[k].get("factors", ())), images=int(m.images or 0))
                 for k, _ in CONVENTIONS},
            scores=headline_scores(m.metrics),
        ))
      if not found:
        problems.append(f"{path}: no evaluated members (the run had eval.final='none' or stopped before its "
                        "evaluation); run --mode=evaluate on it.")
  return models, problems


def group_key(model: Model) -> tuple:
  """The grouping: dataset, architecture, objective (with its TC estimator for β-TCVAE) and hyperparameters."""
  objective = model.objective + (f"/{model.estimator}" if model.objective == "betatcvae" and model.estimator else "")
  return (model.dataset, model.architecture, objective, model.hparams)


def group_models(models: Sequence[Model]) -> dict[tuple, list[Model]]:
  """Models grouped by group_key, objectives in _OBJECTIVE_ORDER (AE, VAE, β-VAE, β-TCVAE, FactorVAE, …), then hyperparameters ascending."""
  groups: dict[tuple, list[Model]] = {}
  for m in models:
    groups.setdefault(group_key(m), []).append(m)

  def order(key):
    dataset, arch, objective, hparams = key
    base = objective.split("/")[0]
    rank = _OBJECTIVE_ORDER.index(base) if base in _OBJECTIVE_ORDER else len(_OBJECTIVE_ORDER)
    return (dataset, arch, rank, objective, hparams)

  return {k: sorted(groups[k], key=lambda m: (m.run, m.member)) for k in sorted(groups, key=order)}


def _symbol(cls, hparam: str) -> str:
  """The symbol of `hparam`: its objective's, else any objective's (records from older runs), else its name."""
  if cls is not None and hparam in cls.SYMBOLS:
    return cls.SYMBOLS[hparam]
  for name in objectives.available():
    if hparam in objectives.get(name).SYMBOLS:
      return objectives.get(name).SYMBOLS[hparam]
  return hparam


def group_labels(keys: Sequence[tuple]) -> list[str]:
  """Short labels: the objective and β always; dataset and architecture only where the groups differ in them."""
  vary_data = len({k[0] for k in keys}) > 1
  vary_arch = len({k[1] for k in keys}) > 1
  labels = []
  for dataset, arch, objective, hparams in keys:
    base, _, est = objective.partition("/")
    cls = objectives.get(base) if base in objectives.available() else None
    name = ((cls.TITLE if cls else "") or base) + (f" ({est.upper()})" if est else "")
    # The key hyperparameters always; the others where they differ from the objective's default.
    shown = [(k, v) for k, v in hparams if cls is None or k in cls.KEY_HPARAMS or v != cls.HPARAMS.get(k)]
    text = " ".join([name] + [f"{_symbol(cls, k)}={v:g}" for k, v in shown])
    prefix = ", ".join(([dataset] if vary_data else []) + ([arch] if vary_arch else []))
    labels.append(f"{prefix}: {text}" if prefix else text)
  return labels


def summarize(values: Sequence[float]) -> dict[str, float]:
  """n, median, first and third quartiles, IQR of values."""
  v = np.asarray(values, np.float64)
  q1, med, q3 = np.percentile(v, [25, 50, 75])
  return dict(n=int(v.size), median=float(med), q1=float(q1), q3=float(q3), iqr=float(q3 - q1))
