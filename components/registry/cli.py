"""``promote``, ``rollback`` and ``review-report`` subcommands (argparse).

Wire into a main CLI with :func:`add_registry_commands`; each subcommand sets
``args.handler(args) -> int`` (exit code: 0 ok, 1 challenger rejected, 2 usage/lookup error).
Standalone: ``python -m components.registry.cli promote --params params.yaml``.

Example:
    >>> import argparse
    >>> from components.registry.cli import add_registry_commands
    >>> parser = argparse.ArgumentParser(prog="matryoshka")
    >>> add_registry_commands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["rollback", "--version", "3"])
    >>> args.version, args.handler.__name__
    (3, 'run_rollback')
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from components.layout import DEFAULT_LAYOUT

EXIT_ERROR = 2
log = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params.yaml with the registry: section (default: %(default)s)",
    )
    parser.add_argument(
        "--model-name",
        default=None,
        help="registered model (default: registry.model_name, else mlflow.registered_model_name)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: MLFLOW_TRACKING_URI, params "
        "mlflow.tracking_uri, then sqlite:///mlflow/mlflow.db)",
    )


def _evaluation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embeddings-dir",
        type=Path,
        default=None,
        help="frozen evaluation embeddings (default: registry.embeddings_dir)",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="dataset folder with the labels (default: dataset.path)",
    )
    parser.add_argument("--split", default=None, help="label split (default: dataset.test_split)")


APPROVAL_NEEDS_FLOW = (
    "promote: registry.run_mode=approval needs a person to approve in the Prefect UI, so it "
    "runs inside a Prefect flow (the retraining deployment, or `prefect deployment run "
    "'matryoshka-promotion/promote-challenger' --param run_mode=approval`); nothing was "
    "changed. Here use --run-mode dry_run to see the decision, or --run-mode enabled to "
    "promote on a pass."
)


def add_registry_commands(subparsers: Any) -> None:
    """Add ``promote``, ``rollback`` and ``review-report`` to an argparse subparsers object."""
    promote = subparsers.add_parser(
        "promote",
        help="promotion gate: challenger vs @champion and baselines",
        description="Re-evaluate @challenger (or --version), @champion and the baselines on "
        "the frozen evaluation set; move @champion when every counted size passes "
        "(registry.run_mode: disabled | dry_run | enabled). Exit 1 when rejected. "
        "run_mode approval needs a person in the Prefect UI: it runs in the retraining or "
        "promotion flow, not here.",
    )
    _common(promote)
    _evaluation_args(promote)
    promote.add_argument(
        "--version", type=int, default=None, help="version to gate (default: @challenger)"
    )
    promote.add_argument(
        "--run-mode",
        choices=("disabled", "dry_run", "enabled", "approval"),
        default=None,
        help="override registry.run_mode",
    )
    promote.add_argument(
        "--report-dir", type=Path, default=None, help="also write the review report here"
    )
    promote.set_defaults(handler=run_promote)

    rollback = subparsers.add_parser(
        "rollback",
        help="move @champion back to a named version",
        description="Point @champion at --version N (tags previous_champion, promoted_at).",
    )
    _common(rollback)
    rollback.add_argument("--version", type=int, required=True, help="version to serve")
    rollback.add_argument(
        "--force", action="store_true", help="allow a version the gate marked failed"
    )
    rollback.set_defaults(handler=run_rollback)

    review = subparsers.add_parser(
        "review-report",
        help="write and attach the review report of a version",
        description="Re-evaluate version N against @champion and the baselines, write "
        "report.md / report.html / ndcg_vs_dim.png and attach them to the version.",
    )
    _common(review)
    _evaluation_args(review)
    review.add_argument("--version", type=int, required=True, help="version to review")
    review.add_argument(
        "--out",
        type=Path,
        default=None,
        help="local folder for the report (default: runs/review/vN)",
    )
    review.add_argument(
        "--no-attach", action="store_true", help="only write locally, do not log to MLflow"
    )
    review.set_defaults(handler=run_review_report)


def _params(args: argparse.Namespace) -> Any:
    from components.params import load_params

    return load_params(args.params)


def _root(args: argparse.Namespace) -> Path:
    """Relative params paths (dataset, embeddings) are relative to the params file."""
    return Path(args.params).resolve().parent


def _where(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line choices of store, model and evaluation set (None: the params')."""
    names = ("model_name", "tracking_uri", "embeddings_dir", "dataset", "split")
    found = {name: getattr(args, name, None) for name in names}
    return {("dataset_dir" if k == "dataset" else k): v for k, v in found.items() if k in args}


def run_promote(args: argparse.Namespace) -> int:
    """Handler of ``promote``."""
    from components.params import ParamsError
    from components.registry.wiring import gate_from_params

    try:
        params = _params(args)
        if (args.run_mode or params.registry.run_mode) == "approval":
            print(APPROVAL_NEEDS_FLOW, file=sys.stderr)
            return EXIT_ERROR
        outcome = gate_from_params(
            params,
            _root(args),
            version=args.version,
            report_dir=args.report_dir,
            run_mode=args.run_mode,
            **_where(args),
        )
    except (LookupError, ValueError, FileNotFoundError, ParamsError) as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps({k: v for k, v in outcome.to_dict().items() if k != "decision"}))
    if outcome.decision is not None:
        print(outcome.decision.summary())
    return outcome.exit_code


def run_rollback(args: argparse.Namespace) -> int:
    """Handler of ``rollback``."""
    from components.params import ParamsError
    from components.registry.promotion import rollback
    from components.registry.wiring import registry_settings

    try:
        settings = registry_settings(_params(args), _root(args), **_where(args))
        outcome = rollback(
            settings.model_name, args.version, tracking_uri=settings.tracking_uri, force=args.force
        )
    except (LookupError, ValueError, ParamsError) as exc:
        print(f"rollback: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(outcome.message)
    return 0


def run_review_report(args: argparse.Namespace) -> int:
    """Handler of ``review-report``."""
    from components.params import ParamsError
    from components.registry.wiring import review_from_params

    out = args.out or DEFAULT_LAYOUT.review(args.version)
    try:
        review_from_params(
            _params(args),
            _root(args),
            args.version,
            out_dir=out,
            attach=not args.no_attach,
            **_where(args),
        )
    except (LookupError, ValueError, FileNotFoundError, ParamsError) as exc:
        print(f"review-report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"review report: {out / 'report.html'} (and report.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m components.registry.cli <command> ...``."""
    from components.runtime import configure_environment

    configure_environment()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m components.registry.cli")
    add_registry_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
