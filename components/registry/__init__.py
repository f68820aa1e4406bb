"""Model registry: save, load, register, promote (gate) and roll back the adaptor.

One module per job: :mod:`.packaging` (the pyfunc model: save/log), :mod:`.load`,
:mod:`.register` (new version → ``@challenger``, ``validation_status=pending``),
:mod:`.gate` (pure decision), :mod:`.promotion` (aliases, tags, rollback), :mod:`.report`
(review report), :mod:`.description` (the version page's Markdown),
:mod:`.evaluation_set` (the frozen set everything is scored on), :mod:`.config`
(``registry:`` in params.yaml) and :mod:`.cli`. Imports here stay light:
MLflow is imported inside the functions that use it.

Example:
    >>> from components.registry import register_run_model
    >>> mv = register_run_model(run_id, Path("runs/finetune/adaptor"), metrics, meta,
    ...                         model_name="matryoshka-adaptor")  # doctest: +SKIP
"""

from components.lazy import lazy_exports

# Names are imported on first use (components/lazy.py): importing one module of the
# package does not load the others.
_EXPORTS = {
    "CHALLENGER": "config",
    "CHAMPION": "config",
    "RegistryConfig": "config",
    "append_section": "description",
    "version_description": "description",
    "EvaluationSet": "evaluation_set",
    "load_evaluation_set": "evaluation_set",
    "DimensionCheck": "gate",
    "GateDecision": "gate",
    "decide": "gate",
    "load_champion": "load",
    "model_uri": "load",
    "build_model_metadata": "packaging",
    "save_adaptor_model": "packaging",
    "PromotionOutcome": "promotion",
    "promote": "promotion",
    "review_version": "promotion",
    "rollback": "promotion",
    "register_run_model": "register",
    "ReviewReport": "report",
    "build_review_report": "report",
    "gate_from_params": "wiring",
    "register_pipeline_run": "wiring",
    "registry_settings": "wiring",
    "review_from_params": "wiring",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
