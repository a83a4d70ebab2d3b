"""Training core: datasets, splits and normalization, the model zoo, the training loop,
checkpoints, artifacts and the Ray launcher (see docs/architecture.md, "train/").

Importing this package imports neither torch nor Ray; `validate`, `datasets`, `data`,
`launch` and `reporting` stay torch-free so the API and dispatcher processes can use them.
"""
