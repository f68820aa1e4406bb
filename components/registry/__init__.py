"""Model registry: save, load, register, promote (gate) and roll back the adaptor.

One module per job: :mod:`.packaging` (the pyfunc model: save/log), :mod:`.load`,
:mod:`.register` (new version → ``@challenger``, ``validation_status=pending``),
:mod:`.gate` (pure decision), :mod:`.promote` (aliases, tags, rollback), :mod:`.report`
(review report), :mod:`.evaluation_set` (the frozen set everything is scored on),
:mod:`.config` (``registry:`` in params.yaml) and :mod:`.cli`. Imports here stay light:
MLflow is imported inside the functions that use it.

Example:
    >>> from components.registry import register_run_model
    >>> mv = register_run_model(run_id, Path("runs/finetune/adaptor"), metrics, meta,
    ...                         model_name="matryoshka-adaptor")  # doctest: +SKIP
"""

from components.registry.config import CHALLENGER, CHAMPION, RegistryConfig
from components.registry.evaluation_set import EvaluationSet, load_evaluation_set
from components.registry.gate import DimensionCheck, GateDecision, decide
from components.registry.load import load_champion, model_uri
from components.registry.packaging import build_model_metadata, save_adaptor_model
from components.registry.promote import PromotionOutcome, promote, review_version, rollback
from components.registry.register import register_run_model
from components.registry.report import ReviewReport, build_review_report
from components.registry.wiring import gate_from_params, registry_settings, review_from_params

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DimensionCheck",
    "EvaluationSet",
    "GateDecision",
    "PromotionOutcome",
    "RegistryConfig",
    "ReviewReport",
    "build_model_metadata",
    "build_review_report",
    "decide",
    "load_champion",
    "load_evaluation_set",
    "model_uri",
    "gate_from_params",
    "promote",
    "registry_settings",
    "review_from_params",
    "register_run_model",
    "review_version",
    "rollback",
    "save_adaptor_model",
]
