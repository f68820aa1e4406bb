"""Matryoshka-Adaptor library: each pipeline stage a plain, testable module (no Prefect)."""

__version__ = "0.1.0"
