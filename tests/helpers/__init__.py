"""Shared test helpers (importable as ``helpers.*``: ``pythonpath = ["tests"]`` in pyproject).

* :mod:`helpers.stages`: fixtures, fast params and environments for stage and CLI tests,
  ``assert_cli_failure``;
* :mod:`helpers.registry`: planted datasets and registry/MLflow helpers for gate tests;
* :mod:`helpers.embedding_servers`: real HTTP embedding servers on 127.0.0.1 with faults.
"""
