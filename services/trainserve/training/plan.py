"""`Plan`: what one training inside a job does (the whole job, a fold, the final model)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from trainserve.training.data import PreparedData
from trainserve.training.paths import JobPaths


@dataclass(frozen=True)
class Plan:
    """One training inside a job: the whole job, a cross-validation fold, or the final model
    after cross-validation.

    `final_split` is evaluated with every metric at the end ("test"; "val" for a fold).
    `artifact`: write the artifact (rank 0), storing `stored_spec` (default: the trained spec)
    in it. `extra_metrics` join the final metrics (the `cv_*` summary).
    """
    data: PreparedData
    paths: JobPaths
    final_split: str = "test"
    artifact: bool = True
    stored_spec: object | None = None
    extra_metrics: Mapping[str, float] = field(default_factory=dict)
