"""The ``embed`` command's options: embed a dataset into the cache and write the matrices.

``add_embed_command(subparsers)`` adds ``embed`` to the main ``matryoshka`` CLI. There is one
entry point: ``python -m components.embedding ARGS`` is ``matryoshka embed ARGS`` (extraction,
then the Great Expectations embeddings suite, the output published atomically only when it
passes)::

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
    "--provider": ("provider", str, "local | openai | google | precomputed"),
    "--model": ("model", str, "model id, or local model directory"),
    "--backend": ("backend", str, "local: torch | onnx | onnx-int8"),
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
        "--dataset",
        type=Path,
        default=None,
        help="dataset directory (BEIR layout or user format; default: dataset.path)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory for corpus.npy, queries.npy, ids, meta.json, validation/ "
        "(default: runs/embeddings)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params file with an 'embedding:' section (default: params.yaml when it "
        "exists, else built-in defaults)",
    )
    for flag, (_, kind, help_text) in _OVERRIDES.items():
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--no-normalize", action="store_true", help="keep raw vectors (default: L2-normalised)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def add_embed_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``embed`` on an argparse sub-parser collection; returns the parser (the
    handler is set by :mod:`components.cli`).

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m components.embedding``: the same command as ``matryoshka embed``."""
    from components.cli import main as matryoshka

    return matryoshka(["embed", *(sys.argv[1:] if argv is None else argv)])
