"""ValidationConfig: defaults, params.yaml section, actionable construction errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.stages import REPO
from pydantic import ValidationError

from components.params import ParamsError, load_params
from components.validation import ValidationConfig


def test_params_yaml_section_loads_and_matches_defaults() -> None:
    config = load_params(REPO / "params.yaml").validation
    assert config == ValidationConfig()
    assert config.min_score == 0 and config.positive_min_score == 1
    assert (
        load_params(REPO / "params.yaml", {"validation.sample_rows": 3}).validation.sample_rows == 3
    )


def test_missing_section_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("dataset:\n  path: x\n")
    assert load_params(path).validation == ValidationConfig()


def test_config_is_frozen() -> None:
    config = ValidationConfig()
    with pytest.raises(ValidationError):
        config.min_score = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corpus_text_min_chars": 10, "corpus_text_max_chars": 5}, "corpus_text_min_chars"),
        ({"query_text_min_chars": 9, "query_text_max_chars": 2}, "query_text_min_chars"),
        ({"min_score": 2, "max_score": 1}, "max_score"),
        ({"min_score": 1, "positive_min_score": 0}, "positive_min_score"),
        ({"max_score": 0}, "no label could ever be positive"),
        ({"embedding_dtypes": ["int8"]}, "not a floating-point dtype"),
        ({"embedding_dtypes": ["floaty"]}, "not a numpy dtype"),
        ({"embedding_dtypes": []}, "embedding_dtypes is empty"),
        ({"embedding_norm_tolerance": 0}, "embedding_norm_tolerance"),
        ({"text_length_mostly": 1.5}, "text_length_mostly"),
    ],
)
def test_invalid_thresholds_are_rejected_with_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidationConfig(**kwargs)


def test_unknown_key_in_params_names_file_and_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("validation:\n  min_scor: 1\n")
    expected = r"params\.yaml: validation\.min_scor: unknown key \(did you mean 'min_score'\?\)"
    with pytest.raises(ParamsError, match=expected):
        load_params(path)


def test_light_imports_do_not_load_great_expectations() -> None:
    code = (
        "import sys, components.validation, components.validation.cli; "
        "sys.exit(1 if 'great_expectations' in sys.modules else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
