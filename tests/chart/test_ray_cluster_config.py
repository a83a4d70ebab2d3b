"""cluster/ray-cluster.yaml against the Ray cluster launcher's own schema (shipped with ray)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_launcher_config_matches_rays_schema():
    import ray
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["max_workers"] == len(config["provider"]["worker_ips"])
    commands = config["setup_commands"] + config["head_start_ray_commands"]
    assert all(isinstance(c, str) for c in commands)
    assert any("gen_protos.py" in c and "pip install -q ." in c for c in commands)
    assert any("torch==2.13.0" in c for c in commands)
    head = " ".join(config["head_start_ray_commands"])
    assert "--head" in head and "--port=6379" in head and "TRAINSERVE_STORAGE_DIR=" in head
