"""Prefect flows: thin orchestration over `components`.

Importing the package applies :mod:`pipelines.settings` (project-local ``PREFECT_HOME``,
startup timeout, telemetry off) before any flow module imports Prefect.
"""

from pipelines.settings import configure_flow_environment

configure_flow_environment()
