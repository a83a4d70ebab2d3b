"""GPU figures in the epoch report: present on CUDA, absent on the CPU."""
import pytest
import torch
from google.protobuf import json_format

from trainserve.core.pb import spec_pb2
from trainserve.training.loop import gpu_figures, train
from trainserve.training.reporting import ListReporter
from trainserve.training.validate import check_spec

XOR = {"dataset": {"name": "xor", "normalize": "none"}, "split": {"test_fraction": 0.25},
       "model": {"mlp": {"hidden": [8]}}, "training": {"epochs": 2, "batch_size": 16}}


def test_cpu_has_no_gpu_figures(tmp_path):
    assert gpu_figures(torch.device("cpu")) == {}
    rep = ListReporter()
    train(check_spec(json_format.ParseDict(XOR, spec_pb2.JobSpec())), tmp_path, rep)
    assert not [k for e in rep.epochs for k in e.metrics if k.startswith("gpu_")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_reports_gpu_memory_and_utilization(tmp_path):
    rep = ListReporter()
    train(check_spec(json_format.ParseDict(XOR, spec_pb2.JobSpec())), tmp_path, rep,
          device="cuda:0")
    for e in rep.epochs:
        assert e.metrics["gpu_memory_bytes"] > 0
        assert 0.0 <= e.metrics.get("gpu_utilization", 0.0) <= 1.0
