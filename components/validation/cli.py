"""``matryoshka validate``: run the dataset suites from the command line.

Wire it into the main CLI with::

    subparsers = parser.add_subparsers(dest="command")
    add_validate_command(subparsers)
    args = parser.parse_args()
    sys.exit(args.handler(args))

Standalone: ``python -m components.validation --dataset data/scifact``. Exit codes: 0 all
suites passed, 1 a suite failed (the summary is printed), 2 bad arguments or params.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from components.layout import RunLayout

DEFAULT_PARAMS = "params.yaml"
DEFAULT_OUT_ROOT = RunLayout().validation


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``validate`` options to ``parser`` and set its handler."""
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="dataset directory (BEIR layout or user format); default: "
        "dataset.path in the params file",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help=f"params file with a 'validation:' section (default: "
        f"{DEFAULT_PARAMS} when it exists, else built-in thresholds)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"artifact directory for GX results, summary.txt and Data Docs "
        f"(default: {DEFAULT_OUT_ROOT}/<dataset name>)",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="skip rendering the GX Data Docs HTML"
    )
    parser.set_defaults(handler=run_validate_command)
    return parser


def add_validate_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``validate`` on an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "validate",
        help="validate a dataset with Great Expectations",
        description="Validate a dataset's corpus, queries and relevance labels with Great "
        "Expectations; exit code 1 and a summary when a suite fails.",
    )
    return configure_parser(parser)


def run_validate_command(args: argparse.Namespace) -> int:
    """Handler of ``validate``: 0 passed, 1 failed (summary printed), 2 usage error."""
    from components.params import ParamsError, load_params

    try:
        params = load_params(args.params, missing_ok=args.params is None)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = params.validation
    dataset = args.dataset if args.dataset is not None else params.dataset.path
    if getattr(args, "no_docs", False):
        config = config.model_copy(update={"build_data_docs": False})
    out = args.out if args.out is not None else DEFAULT_OUT_ROOT / Path(dataset).name

    from components.validation.runner import validate_dataset

    report = validate_dataset(dataset, config, out)
    print(report.summary())
    return 0 if report.success else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m components.validation``."""
    parser = configure_parser(
        argparse.ArgumentParser(
            prog="python -m components.validation",
            description="Validate a dataset with Great Expectations (pipeline stage one).",
        )
    )
    args = parser.parse_args(argv)
    return int(args.handler(args))
