"""The import direction: cli -> adapters -> model -> training loop -> layers/losses/
optim -> backends. Persistence reads and writes plain state and never imports the
model, the training loop or the callbacks; the callbacks never import the loop that
runs them. Checked on the source (``import gpunn`` loads every module anyway)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpunn"
ABOVE_PERSISTENCE = (
    "gpunn.model",
    "gpunn.steps",
    "gpunn.weights",
    "gpunn.training",
    "gpunn.callbacks",
    "gpunn.checkpointing",
    "gpunn.run_state",
    "gpunn.loading",
    "gpunn.cli",
)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offending(paths, forbidden) -> dict:
    hits = {}
    for path in paths:
        bad = sorted(
            name
            for name in imported(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        if bad:
            hits[str(path.relative_to(PACKAGE))] = bad
    return hits


def test_persistence_imports_neither_model_nor_callbacks():
    paths = sorted((PACKAGE / "persistence").glob("*.py"))
    assert len(paths) >= 5
    assert offending(paths, ABOVE_PERSISTENCE) == {}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("callbacks", ("gpunn.model", "gpunn.training", "gpunn.checkpointing")),
        ("run_state.py", ("gpunn.model", "gpunn.callbacks", "gpunn.checkpointing")),
        ("checkpointing.py", ("gpunn.model", "gpunn.training")),
    ],
)
def test_lower_layers_do_not_import_upper_ones(module, forbidden):
    target = PACKAGE / module
    paths = sorted(target.glob("*.py")) if target.is_dir() else [target]
    assert offending(paths, forbidden) == {}
