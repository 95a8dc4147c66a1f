"""The README and docs/ say what the code does: the quick start runs, links resolve, named tests exist."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md",
         REPO / "reproduction" / "README.md"]


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_quick_start_runs():
    """Every Python block of the README runs as written (they share one namespace, in order)."""
    blocks = _python_blocks(REPO / "README.md")
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    result, batch = namespace["result"], namespace["batch"]
    assert int(result.status) == 0 and np.isfinite(float(result.att))
    assert batch.att.shape == (8,) and (np.asarray(batch.status) == 0).all()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    if not page.exists():
        pytest.fail(f"{page} is missing")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_tests_named_in_the_docs_exist():
    """A page that cites ``test_file.py::test_name`` (or ``::test_name`` after it) cites a real test."""
    defined = {p.stem: set(re.findall(r"^\s*def (test_\w+)", p.read_text(), flags=re.M))
               for p in (REPO / "tests").glob("test_*.py")}
    for page in PAGES:
        text = page.read_text()
        module = None
        for m in re.finditer(r"(test_\w+)\.py(?:::(test_\w+\*?))?|::(test_\w+\*?)", text):
            module = m.group(1) or module
            name = m.group(2) or m.group(3)
            if m.group(1):
                assert module in defined, f"{page.name} cites {module}.py, which does not exist"
            if name:
                pattern = re.compile(name.replace("*", r"\w*") + "$")
                assert any(pattern.match(t) for t in defined.get(module, ())), f"{page.name}: {module}::{name}"
