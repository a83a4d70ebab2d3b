"""Hyperparameter searches on Ray Tune: a job whose spec has `search` (see spec.proto).

`space` parses and applies search spaces, `algorithms` registers searchers and schedulers,
`validate` checks a search at submission, `trial` is the trainable each trial runs, and
`driver` runs the search in a Ray task and picks the best trial.
"""
