"""Command line: embed a dataset (corpus and queries) into the cache and write the matrices.

``add_embed_command(subparsers)`` adds ``embed`` to the main ``matryoshka`` CLI; the same
parser runs standalone::

    python -m components.embedding --dataset data/scifact --out runs/embeddings \\
        [--params params.yaml] [--provider openai --model text-embedding-3-small ...]

Settings come from the ``embedding:`` section of ``--params``; flags override them. API keys
only come from the environment variable named by ``api_key_env``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("components.embedding")

# flag -> (EmbeddingConfig field, type)
_OVERRIDES: dict[str, tuple[str, Any, str]] = {
    "--provider": ("provider", str, "local | openai | google"),
    "--model": ("model", str, "model id, or local model directory"),
    "--dimensions": ("dimensions", int, "requested output dimension"),
    "--batch-size": ("batch_size", int, "texts per request"),
    "--max-concurrency": ("max_concurrency", int, "requests in flight"),
    "--requests-per-minute": ("requests_per_minute", float, "client-side request limit"),
    "--tokens-per-minute": ("tokens_per_minute", float, "client-side token limit"),
    "--max-retries": ("max_retries", int, "retries per request"),
    "--timeout-s": ("timeout_s", float, "per-request timeout (seconds)"),
    "--base-url": ("base_url", str, "API endpoint (OpenAI-compatible or Gemini)"),
    "--api-key-env": ("api_key_env", str, "NAME of the env var holding the API key"),
    "--cache-dir": ("cache_dir", str, "embedding cache directory"),
    "--shard-size": ("shard_size", int, "texts per shard"),
    "--overlong": ("overlong", str, "truncate | split"),
    "--progress": ("progress", str, "auto | bar | log | off"),
}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, type=Path, help="dataset directory (BEIR layout or user format)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory for corpus.npy, queries.npy, ids, meta.json",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file with an 'embedding:' section (default params.yaml; "
        "missing file = defaults)",
    )
    for flag, (_, kind, help_text) in _OVERRIDES.items():
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--no-normalize", action="store_true", help="keep raw vectors (default: L2-normalised)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def add_embed_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``embed`` on an argparse sub-parser collection; returns the parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="matryoshka")
        >>> sub = parser.add_subparsers(dest="command")
        >>> _ = add_embed_command(sub)
    """
    parser = subparsers.add_parser(
        "embed",
        help="embed a dataset into the cache and write the matrices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(handler=run_embed_command)
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """The EmbeddingConfig: ``--params`` (its ``embedding:`` section) plus flag overrides.

    Raises:
        ParamsError: an invalid value, naming the key (e.g. a provider without a model).
    """
    from components.params import load_params

    overrides = {
        f"embedding.{field}": getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in _OVERRIDES.items()
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.no_normalize:
        overrides["embedding.normalize"] = False
    return load_params(args.params, overrides, missing_ok=True).embedding


def run_embed_command(args: argparse.Namespace) -> int:
    """Handler of ``embed``: returns the process exit code (0 ok, 1 failure, 2 bad input)."""
    from components.runtime import configure_environment

    configure_environment()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, str(args.log_level).upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    from components.data import DataFormatError, load_dataset
    from components.params import ParamsError

    from .errors import EmbeddingError, redact
    from .extract import embed_dataset

    try:
        config = config_from_args(args)
        dataset = load_dataset(args.dataset)
    except (ParamsError, DataFormatError, ValueError, OSError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    try:
        artifacts = embed_dataset(dataset, config, args.out)
    except EmbeddingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    log.info(
        "wrote %s: corpus %s, queries %s (%s, %s)",
        artifacts.out_dir,
        artifacts.corpus.shape,
        artifacts.queries.shape,
        artifacts.meta["provider"],
        artifacts.meta["model"],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m components.embedding``)."""
    parser = argparse.ArgumentParser(
        prog="python -m components.embedding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return run_embed_command(parser.parse_args(argv))
