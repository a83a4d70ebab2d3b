"""User dataset records: `ts:dataset:<name>` (serialized Dataset) and the `ts:datasets` set.
The bytes live on storage, named by their SHA-256 (see registry/datasets.py)."""
from __future__ import annotations

from trainserve.core.pb import dataset_pb2
from trainserve.store import keys
from trainserve.store.records import NamedRecords


class DatasetStore(NamedRecords):
    kind = keys.DATASET
    message_type = dataset_pb2.Dataset
