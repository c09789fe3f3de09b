"""Metric writers: clu's where TensorFlow is installed, JSON lines where it is not."""

import json
import os
import sys

import pytest

from vae_jax import writers


def test_json_lines_writer_appends_one_record_per_call(tmp_path):
  writer = writers.JsonLinesWriter(str(tmp_path))
  writer.write_hparams({"beta": 6, "objective": "betatcvae"})
  writer.write_scalars(10, {"loss": 1.5, "mig": 0.25})
  writer.write_images(10, {"figure": None})  # Images are not kept.
  writer.write_scalars(20, {"loss": 1.0})
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert records == [{"hparams": {"beta": 6.0, "objective": "betatcvae"}},
                     {"step": 10, "loss": 1.5, "mig": 0.25}, {"step": 20, "loss": 1.0}]
  quiet = writers.JsonLinesWriter(str(tmp_path / "other"), just_logging=True)
  quiet.write_scalars(1, {"loss": 2.0})
  assert not (tmp_path / "other").exists()


def test_without_tensorflow_the_fallbacks_are_used(tmp_path, monkeypatch):
  for name in [m for m in sys.modules if m == "clu.metric_writers" or m.startswith("clu.metric_writers.")]:
    monkeypatch.delitem(sys.modules, name)
  import clu

  monkeypatch.delattr(clu, "metric_writers", raising=False)  # Else `from clu import metric_writers` finds it.
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now raises ImportError.
  writer = writers.create_writer(str(tmp_path))
  assert isinstance(writer, writers.JsonLinesWriter)
  progress = writers.report_progress(100, writer, every_steps=10)
  with writers.ensure_flushes(writer):
    for step, t in [(1, 0.0), (5, 1.0), (10, 2.0), (20, 4.0)]:
      progress(step, t)
  with open(tmp_path / "metrics.jsonl") as f:
    rates = [json.loads(line) for line in f]
  assert rates == [{"step": 10, "steps_per_sec": pytest.approx(4.5)}, {"step": 20, "steps_per_sec": pytest.approx(5.0)}]


def test_tensorboard_false_logs_to_json_lines_where_tensorflow_is_installed(tmp_path):
  pytest.importorskip("tensorflow")
  assert not isinstance(writers.create_writer(str(tmp_path / "tb")), writers.JsonLinesWriter)
  writer = writers.create_writer(str(tmp_path), tensorboard=False)
  assert isinstance(writer, writers.JsonLinesWriter)
  progress = writers.report_progress(10, writer, every_steps=5)
  for step, t in [(0, 0.0), (5, 2.0), (10, 3.0)]:
    progress(step, t)
  with open(tmp_path / "metrics.jsonl") as f:
    rates = [json.loads(line) for line in f]
  assert rates == [{"step": 5, "steps_per_sec": pytest.approx(2.5)}, {"step": 10, "steps_per_sec": pytest.approx(5.0)}]
  assert not any(f.startswith("events.out") for f in os.listdir(tmp_path))
