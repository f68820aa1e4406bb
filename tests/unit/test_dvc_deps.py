"""dvc.yaml cannot drift from the code: deps cover what each stage imports, params lists
match the config classes, outs match the one run layout.

A stage's code is the closure of the project modules its stage module imports (module and
function level, ``TYPE_CHECKING`` blocks excluded, lazy package names resolved through
their ``_EXPORTS`` tables, every package ``__init__`` on the way included). Each module of
that closure must lie in one of the stage's ``deps``; otherwise a change to it would not
re-run the stage and its outputs would be stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers.stages import REPO
from pydantic import BaseModel

from components.layout import RunLayout
from components.params import PipelineParams
from components.stages import STAGE_NAMES
from components.stages.graph import load_stage_graph
from components.validation.config import ValidationConfig

#: validation thresholds both suites read (how many rows to show, whether to build docs).
SHARED_VALIDATION = {"sample_rows", "build_data_docs"}


def module_path(name: str, root: Path = REPO) -> Path | None:
    base = root / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _lazy_exports(package: str, root: Path) -> dict[str, str]:
    """A package's ``_EXPORTS`` table (name -> submodule), {} for an ordinary package."""
    path = module_path(package, root)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            return {k: v for k, v in ast.literal_eval(node.value).items()}
    return {}


def imported_modules(name: str, root: Path = REPO) -> set[str]:
    """Project modules ``name`` imports when it runs (TYPE_CHECKING blocks excluded).

    A module's functions may all be called, so their imports count; a package
    ``__init__`` counts with its top level only (what importing the package executes).
    """
    path = module_path(name, root)
    assert path is not None, name
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        if is_package and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.add(source)
            exports = _lazy_exports(source, root)
            for alias in node.names:
                if module_path(f"{source}.{alias.name}", root) is not None:
                    found.add(f"{source}.{alias.name}")
                elif alias.name in exports:
                    found.add(f"{source}.{exports[alias.name]}")
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] == "components" and module_path(m, root)}


def closure(entry: str, root: Path = REPO) -> set[Path]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # package __init__s
        todo.extend(imported_modules(name, root))
    paths = {module_path(m, root) for m in seen}
    return {p.relative_to(root) for p in paths if p is not None}


def covered(path: Path, deps: tuple[str, ...]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


STAGES = {stage.name: stage for stage in load_stage_graph(REPO / "dvc.yaml")}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_every_module_a_stage_imports_is_one_of_its_deps(name: str) -> None:
    # `matryoshka <stage>` runs components.stages.run_stage, which imports that stage's
    # module: the closure starts there (the CLI's argument parsing is not a dep).
    code = closure(f"components.stages.{name}")
    missing = sorted(str(p) for p in code if not covered(p, STAGES[name].deps))
    assert not missing, (
        f"dvc.yaml stage '{name}' runs code its deps do not list; add to its deps: {missing}"
    )


def test_the_closure_follows_lazy_names_and_function_imports(tmp_path: Path) -> None:
    """What makes the check fail when a stage module starts importing another module."""
    files = {
        "components/__init__.py": "",
        "components/lazy_pkg/__init__.py": '_EXPORTS = {"thing": "impl"}\n',
        "components/lazy_pkg/impl.py": "thing = 1\n",
        "components/lazy_pkg/unused.py": "",
        "components/helper.py": "",
        "components/typing_only.py": "",
        "components/stages/__init__.py": "",
        "components/stages/s.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from components import typing_only\n"
            "def run():\n    from components.lazy_pkg import thing\n"
            "    from . import common\n"
            "import components.helper\n"
        ),
        "components/stages/common.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    code = {p.as_posix() for p in closure("components.stages.s", tmp_path)}
    assert code == {
        "components/__init__.py",
        "components/helper.py",
        "components/lazy_pkg/__init__.py",
        "components/lazy_pkg/impl.py",
        "components/stages/__init__.py",
        "components/stages/common.py",
        "components/stages/s.py",
    }
    assert not covered(Path("components/helper.py"), ("components/stages",))
    assert covered(Path("components/lazy_pkg/impl.py"), ("components/lazy_pkg",))


def _exists(dotted: str) -> bool:
    model: type[BaseModel] = PipelineParams
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return part == dotted.split(".")[-1]
    return True


def test_params_lists_name_real_keys_and_split_the_validation_section() -> None:
    for stage in STAGES.values():
        unknown = [key for key in stage.params if not _exists(key)]
        assert not unknown, f"stage {stage.name}: params {unknown} are not in PipelineParams"
    fields = set(ValidationConfig.model_fields)
    embed = {k.split(".", 1)[1] for k in STAGES["embed"].params if k.startswith("validation.")}
    validate = {
        k.split(".", 1)[1] for k in STAGES["validate"].params if k.startswith("validation.")
    }
    # The embeddings suite reads the embedding_* thresholds, the dataset suites the rest.
    assert embed == {f for f in fields if f.startswith("embedding")} | SHARED_VALIDATION
    assert validate == {f for f in fields if not f.startswith("embedding")}
    assert "validation" not in STAGES["embed"].params  # listed per key, not whole


def test_outs_are_the_run_layout() -> None:
    outs = [out for stage in STAGES.values() for out in stage.outs]
    assert outs == [path.as_posix() for path in RunLayout().dvc_outs()]


def test_lazy_package_names_exist_and_never_shadow_a_submodule() -> None:
    """Importing a submodule sets it as a package attribute: a lazy name equal to a
    submodule's name would then return the module instead of the function."""
    import importlib

    for init in (REPO / "components").rglob("__init__.py"):
        package = ".".join(init.parent.relative_to(REPO).parts)
        exports = _lazy_exports(package, REPO)
        clashes = [name for name in exports if module_path(f"{package}.{name}")]
        assert not clashes, f"{package}: lazy names equal to submodules: {clashes}"
        for name, submodule in exports.items():
            module = importlib.import_module(f"{package}.{submodule}")
            assert hasattr(module, name), f"{package}.{name}: not in {module.__name__}"
