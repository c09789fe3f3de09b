"""Metric writers and progress reports that also work where TensorFlow is not installed.

clu's writers (TensorBoard event files) and its ReportProgress need TensorFlow. A
machine with only JAX (a bare accelerator VM, say), or a run with config.tensorboard
False (no TensorFlow import: seconds less start-up), still gets every scalar:
they are logged and appended to WORKDIR/metrics.jsonl, one JSON object per step; images
are skipped there (the figures are PNG files anyway).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator, Mapping

import numpy as np
from absl import logging


def _clu_metric_writers():
  """clu.metric_writers, or None where TensorFlow (which it imports) is missing."""
  try:
    from clu import metric_writers
  except ImportError as e:
    logging.log_first_n(logging.WARNING, "No TensorBoard events (%s); scalars go to metrics.jsonl.", 1, e)
    return None
  return metric_writers


class JsonLinesWriter:
  """The clu MetricWriter methods vae_jax uses, writing scalars to workdir/metrics.jsonl."""

  def __init__(self, workdir: str, just_logging: bool = False):
    self._path = None if just_logging else os.path.join(workdir, "metrics.jsonl")

  def _write(self, record: dict[str, Any]) -> None:
    logging.info("%s", record)
    if self._path:
      with open(self._path, "a") as f:
        f.write(json.dumps(record) + "\n")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self._write({"step": int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}})

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._write({"hparams": {k: v if isinstance(v, (str, bool)) else float(v) for k, v in hparams.items()}})

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def create_writer(workdir: str, *, tensorboard: bool = True, just_logging: bool = False,
                  asynchronous: bool = False):
  """clu's default writer (TensorBoard + logging), or a JsonLinesWriter when `tensorboard` is
  False (config.tensorboard; importing TensorFlow costs seconds at start-up) or TensorFlow is missing."""
  metric_writers = _clu_metric_writers() if tensorboard else None
  if metric_writers is None:
    return JsonLinesWriter(workdir, just_logging)
  return metric_writers.create_default_writer(workdir, just_logging=just_logging, asynchronous=asynchronous)


def ensure_flushes(writer) -> contextlib.AbstractContextManager:
  """clu's ensure_flushes for its writers; a context that flushes at exit for a JsonLinesWriter."""
  if not isinstance(writer, JsonLinesWriter):
    return _clu_metric_writers().ensure_flushes(writer)

  @contextlib.contextmanager
  def flushing() -> Iterator[None]:
    try:
      yield
    finally:
      writer.flush()

  return flushing()


class _StepRate:
  """Reports steps/s and progress every `every_steps` steps (clu's ReportProgress without TensorFlow)."""

  def __init__(self, num_train_steps: int, writer, every_steps: int):
    self._num, self._writer, self._every = num_train_steps, writer, max(1, every_steps)
    self._last = None  # (step, time)

  def __call__(self, step: int, t: float) -> None:
    if self._last is None:
      self._last = (step, t)
      return
    if step % self._every and step != self._num:
      return
    rate = (step - self._last[0]) / max(t - self._last[1], 1e-9)
    logging.info("%.1f steps/s, %.1f%% (%d/%d)", rate, 100 * step / self._num, step, self._num)
    self._writer.write_scalars(step, {"steps_per_sec": rate})
    self._last = (step, t)


def report_progress(num_train_steps: int, writer, every_steps: int):
  """A callable (step, time) that reports training progress to `writer`: clu's ReportProgress
  for clu's writers, the same report without TensorFlow for a JsonLinesWriter."""
  if isinstance(writer, JsonLinesWriter):
    return _StepRate(num_train_steps, writer, every_steps)
  from clu import periodic_actions

  return periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer, every_steps=every_steps)
