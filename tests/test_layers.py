"""The package's layers: every module imports only from its own layer or the ones below, with no cycle.

Read from the source with ``ast`` (imports inside functions count too), so the
test fails the moment an upward import or a cycle is written.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "codeal_jax"

# Lowest first; a module's layer is that of its first name below codeal_jax.
LAYERS = (
    ("runtime", {"runtime"}),  # process settings (XLA flags, host devices): imports nothing of ours
    ("data", {"panel", "design", "result", "estimands"}),
    ("numerics", {"checks", "nets", "train", "linalg", "memory", "batching"}),
    ("driver", {"covariates", "staggered", "contract", "registry", "driver"}),
    ("methods", {"methods"}),
    ("tuning", {"tuning"}),
    ("inference", {"inference"}),
    ("studies", {"sim"}),
    ("io", {"io"}),
    ("cli", {"cli"}),
)
LAYER = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the package but its facade ``__init__``."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
    """The package modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(stem + ([base] if base else []))
            # "from x import y": y is a module of x, or a name defined in x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: that module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _layer(module: str) -> int:
    return LAYER[module.split(".")[1]]


def test_every_module_has_a_layer():
    assert {m.split(".")[1] for m in _modules()} == set(LAYER)


def test_no_module_imports_from_a_higher_layer():
    modules = _modules()
    upward = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
        for m, path in modules.items()
        for d in _imports(m, path, modules)
        if _layer(d) > _layer(m)
    ]
    assert not upward, upward


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: _imports(m, path, modules) for m, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test can fail: a driver module importing the CLI is reported."""
    src = tmp_path / "codeal_jax"
    (src / "cli").mkdir(parents=True)
    (src / "cli" / "__init__.py").write_text("")
    (src / "driver.py").write_text("from .cli import main\n")
    modules = {"codeal_jax.cli": src / "cli" / "__init__.py", "codeal_jax.driver": src / "driver.py"}
    assert _imports("codeal_jax.driver", src / "driver.py", modules) == {"codeal_jax.cli"}
    assert _layer("codeal_jax.cli") > _layer("codeal_jax.driver")
