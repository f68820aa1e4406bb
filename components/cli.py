"""``matryoshka``: the pipeline's command line.

Stages (each also runnable by its ``dvc.yaml`` name with ``matryoshka stage NAME``)::

    matryoshka validate   [--dataset DIR]      GX suites over the dataset -> runs/validation
    matryoshka embed      [--dataset DIR]      base embeddings + GX suite -> runs/embeddings
    matryoshka pretrain                        stage 1 (unsupervised)     -> runs/pretrain
    matryoshka finetune   [--dataset DIR]      stage 2 (train labels)     -> runs/finetune
    matryoshka evaluate   [--dataset DIR]      all methods, test split    -> runs/evaluation

    matryoshka results                         last evaluation table + recommended dimension
    matryoshka run [--dataset DIR] [--provider NAME]   the whole retraining flow (Prefect)

Every command takes ``--params FILE`` (default ``params.yaml``) and ``--set KEY=VALUE``
(repeatable; dotted keys into params.yaml, values read as YAML, e.g.
``--set method.train.unsupervised.max_iterations=200 --set evaluation.dims=[64,128]``).

Exit codes: 0 success; 1 a validation or stage failure (the summary is printed on stderr);
2 usage errors and invalid params. Heavy packages (torch, Great Expectations, Prefect,
MLflow, sentence-transformers) are imported inside the command handlers only, so
``matryoshka --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STAGE_NAMES: tuple[str, ...] = ("validate", "embed", "pretrain", "finetune", "evaluate")
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_RUNS = Path("runs")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("components.cli")

# Loggers that are chatty at INFO and say nothing a pipeline user needs.
_QUIET_LOGGERS = (
    "great_expectations",
    "matplotlib",
    "urllib3",
    "httpx",
    "filelock",
    "sentence_transformers",
    "alembic",
    "prefect._internal",
)


def _override(text: str) -> tuple[str, Any]:
    """argparse ``type`` of ``--set``: ``KEY=VALUE`` -> ``(key, yaml value)``."""
    from components.stages.common import parse_override

    try:
        return parse_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_common(
    parser: argparse.ArgumentParser,
    *,
    params_default: Path | None = DEFAULT_PARAMS,
    dataset: bool = True,
    runs_dir: bool = True,
) -> None:
    """``--params`` and ``--set`` (every command), ``--dataset`` and ``--runs-dir``."""
    if not any(a.dest == "params" for a in parser._actions):  # embed/validate define it
        parser.add_argument(
            "--params", type=Path, default=params_default, help="params file (default: params.yaml)"
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        type=_override,
        action="append",
        default=[],
        help="override a params.yaml value by dotted key (repeatable), "
        "e.g. --set method.train.seed=1",
    )
    if dataset and not any(a.dest == "dataset" for a in parser._actions):
        parser.add_argument(
            "--dataset",
            type=Path,
            default=None,
            help="dataset directory (default: dataset.path in the params)",
        )
    if runs_dir:
        parser.add_argument(
            "--runs-dir",
            type=Path,
            default=DEFAULT_RUNS,
            help="root of the stage outputs (default: runs)",
        )


def _params(args: argparse.Namespace, *, missing_ok: bool = False) -> Any:
    """PipelineParams from ``--params`` + ``--set`` (+ ``--dataset`` as dataset.path)."""
    from components.stages.common import load_stage_params

    overrides = dict(args.overrides)
    if getattr(args, "dataset", None) is not None:
        overrides["dataset.path"] = str(args.dataset)
    path = args.params if args.params is not None else DEFAULT_PARAMS
    return load_stage_params(path, overrides, missing_ok=missing_ok or args.params is None)


def _layout(args: argparse.Namespace) -> Any:
    from components.stages.common import RunLayout

    return RunLayout(root=getattr(args, "runs_dir", DEFAULT_RUNS))


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the pipeline's exceptions to exit codes and one clear message on stderr."""

    def run(args: argparse.Namespace) -> int:
        from components.runtime import configure_environment

        configure_environment()
        from components.data import DataFormatError
        from components.embedding import EmbeddingError, EmbeddingStoreError
        from components.stages.common import ParamsError, StageError
        from components.validation import DataValidationError

        try:
            return handler(args)
        except DataValidationError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_FAILED
        except ParamsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (StageError, DataFormatError, EmbeddingError, EmbeddingStoreError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED

    run.__doc__ = handler.__doc__
    return run


# --- stage handlers --------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    """validate: GX dataset suites; exit 1 with the summary when a suite fails."""
    from components.stages import dataset_config, run_validate

    params = _params(args, missing_ok=True)
    out = args.out if args.out is not None else _layout(args).validation
    report = run_validate(
        dataset_config(params).path, params, out, build_docs=False if args.no_docs else None
    )
    print(report.summary())
    return EXIT_OK


def _embed(args: argparse.Namespace) -> int:
    """embed: extraction into the cache, matrices to --out, then the GX embeddings suite."""
    from components.embedding.cli import _OVERRIDES
    from components.stages import dataset_config, run_embed

    for flag, (field, _, _) in _OVERRIDES.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            args.overrides.append((f"embedding.{field}", value))
    if args.no_normalize:
        args.overrides.append(("embedding.normalize", False))
    params = _params(args)
    out = args.out if args.out is not None else _layout(args).embeddings
    artifacts = run_embed(dataset_config(params).path, params, out)
    print(
        f"embeddings: corpus {artifacts.corpus.shape}, queries {artifacts.queries.shape} "
        f"({artifacts.meta.get('provider')}, {artifacts.meta.get('model')}) -> {out}"
    )
    return EXIT_OK


def _stage(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from components.stages import EvaluationOutput, TrainingOutput, run_stage

        params = _params(args)
        result = run_stage(name, params, layout=_layout(args))
        if isinstance(result, EvaluationOutput):
            print(result.table)
        elif isinstance(result, TrainingOutput):
            if result.skipped:
                print(f"{name}: skipped (no training labels) -> {result.out_dir}")
            else:
                assert result.result is not None
                summary = result.result.summary()
                print(
                    f"{name}: best {summary['score_name']}={summary['best_score']:.4f} at "
                    f"step {summary['best_iteration']} of {summary['iterations']} "
                    f"({summary['seconds']}s) -> {result.out_dir}"
                )
        elif name == "validate":
            print(result.summary())
        elif name == "embed":
            print(
                f"embeddings: corpus {result.corpus.shape}, queries {result.queries.shape} "
                f"-> {result.out_dir}"
            )
        return EXIT_OK

    handler.__doc__ = f"{name}: run the stage with the default layout"
    return handler


def _stage_by_name(args: argparse.Namespace) -> int:
    """stage NAME: run one stage by its dvc.yaml name."""
    return _stage(args.name)(args)


def _results(args: argparse.Namespace) -> int:
    """results: print the last evaluation table and the recommended dimension."""
    from components.stages.evaluate import format_results, load_results

    path = args.metrics if args.metrics is not None else _layout(args).evaluation
    directory = path.parent if path.suffix == ".json" else path
    print(format_results(load_results(directory)))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    """run: the whole retraining flow (pipelines.retraining:retraining_flow)."""
    import importlib
    import inspect

    try:
        module = importlib.import_module("pipelines.retraining")
    except ModuleNotFoundError as exc:
        if exc.name not in ("pipelines", "pipelines.retraining"):
            raise
        print(
            "error: the retraining flow is not available (pipelines/retraining.py with "
            "retraining_flow is missing); run the stages with `dvc repro` or "
            "`matryoshka stage NAME` instead",
            file=sys.stderr,
        )
        return EXIT_FAILED
    flow = getattr(module, "retraining_flow", None)
    if flow is None:
        print("error: pipelines.retraining has no retraining_flow", file=sys.stderr)
        return EXIT_FAILED
    _params(args)  # fail fast (exit 2) on a bad params file or override
    kwargs: dict[str, Any] = {
        "dataset": str(args.dataset) if args.dataset else None,
        "provider": args.provider,
        "overrides": dict(args.overrides),
    }
    accepted = inspect.signature(getattr(flow, "fn", flow)).parameters
    if args.params is not None:
        names = [n for n in ("params", "params_path") if n in accepted]
        if names:
            kwargs[names[0]] = str(args.params)
        elif args.params.resolve() != DEFAULT_PARAMS.resolve():
            print(
                f"error: the retraining flow reads params.yaml of the project; --params "
                f"{args.params} is not supported by `run` (use --set KEY=VALUE)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    result = flow(**kwargs)
    if result is not None:
        print(result)
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------
def _relax(parser: argparse.ArgumentParser, *dests: str) -> None:
    """Make options another module declared as required optional (defaults from params)."""
    for action in parser._actions:
        if action.dest in dests:
            action.required = False
            action.default = None


def build_parser() -> argparse.ArgumentParser:
    """The ``matryoshka`` argument parser (no heavy imports)."""
    from components.embedding.cli import add_embed_command
    from components.registry.cli import add_registry_commands
    from components.validation.cli import add_validate_command

    parser = argparse.ArgumentParser(
        prog="matryoshka", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = add_validate_command(sub)
    _relax(validate, "out")
    validate.set_defaults(out=None)
    _add_common(validate)
    validate.set_defaults(handler=_guard(_validate))

    embed = add_embed_command(sub)
    _relax(embed, "dataset", "out")
    embed.set_defaults(dataset=None, out=None)
    _add_common(embed)
    embed.set_defaults(handler=_guard(_embed))

    helps = {
        "pretrain": "stage 1: train the adaptor on corpus embeddings (no labels)",
        "finetune": "stage 2: continue with the training labels (skipped without them)",
        "evaluate": "nDCG/Recall/MRR of every method at every m on the test split",
    }
    for name, text in helps.items():
        stage = sub.add_parser(name, help=text, description=text)
        _add_common(stage, dataset=name != "pretrain")
        stage.set_defaults(handler=_guard(_stage(name)))

    by_name = sub.add_parser(
        "stage",
        help="run one stage by its dvc.yaml name",
        description="Run one pipeline stage by its dvc.yaml name.",
    )
    by_name.add_argument("name", choices=STAGE_NAMES)
    _add_common(by_name)
    by_name.set_defaults(handler=_guard(_stage_by_name))

    results = sub.add_parser(
        "results",
        help="print the last evaluation table",
        description="Print runs/evaluation/metrics.json as a table with the recommended dimension.",
    )
    _add_common(results, dataset=False)
    results.add_argument(
        "--metrics",
        type=Path,
        default=None,
        help="metrics.json or its directory (default: runs/evaluation)",
    )
    results.set_defaults(handler=_guard(_results))

    run = sub.add_parser(
        "run",
        help="run the whole retraining flow (Prefect)",
        description="Run the retraining flow: validate, embed, pretrain, "
        "finetune, evaluate, with tracking (pipelines.retraining).",
    )
    _add_common(run, runs_dir=False)
    run.add_argument("--provider", default=None, help="embedding provider override")
    run.set_defaults(handler=_guard(_run))

    add_registry_commands(sub)  # promote, rollback, review-report
    return parser


def _configure_logging(verbose: bool, level_name: str | None = None) -> None:
    level = (
        logging.DEBUG
        if verbose
        else getattr(logging, str(level_name or "INFO").upper(), logging.INFO)
    )
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    root.setLevel(level)
    if not verbose:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # Some libraries (GX) set their own child loggers' levels on import: filter too.
        for handler in root.handlers:
            handler.addFilter(_quiet_filter)


def _quiet_filter(record: logging.LogRecord) -> bool:
    """Drop INFO/DEBUG records of :data:`_QUIET_LOGGERS`."""
    return record.levelno >= logging.WARNING or not record.name.startswith(_QUIET_LOGGERS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``matryoshka`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose, getattr(args, "log_level", None))
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
