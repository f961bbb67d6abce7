"""The house rules a newcomer relies on, checked on the code itself.

Data flows one way: files -> warehouse -> features -> models -> scoring -> serving, batch and
monitoring; the flows, the deployments and the command line sit on top. A module may import
from its own floor or below, never from above, packages never import each other in a circle,
and no module or flow function grows past what one person reads at once.

The floors follow the imports, not the order the data moves in: ``warehouse/`` builds the
feature views from ``features/``' definitions, so ``features/`` (pure logic) is the lower floor.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lower number = lower floor. A package may import packages on its own floor or below.
# passos: the ground (settings, errors, safe CSV); features: pure feature logic; warehouse: DuckDB
# and its SQL; modeling: training, release, scoring, batch; monitoring and serving: the two
# readers of the models; flows: orchestration; deployments: schedules; cli: the command line.
FLOORS = {
    "passos": 0,
    "features": 1,
    "warehouse": 2,
    "modeling": 3,
    "monitoring": 4,
    "serving": 4,
    "flows": 5,
    "deployments": 6,
    "cli": 7,
}
MAX_MODULE_LINES = 500
MAX_FLOW_FUNCTION_LINES = 60
MAX_README_LINES = 200
SQL_TEXT = re.compile(
    r"\b(select\s+.+\s+from|insert\s+into|create\s+(or\s+replace\s+)?(table|view)|delete\s+from|update\s+\w+\s+set)\b",
    re.I | re.S,
)


def _tracked(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line]


def _package_files() -> list[Path]:
    return [p for p in _tracked("*.py") if p.relative_to(ROOT).parts[0] in FLOORS]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & FLOORS.keys()


def test_no_import_runs_back_up_a_floor() -> None:
    backward = []
    for path in _package_files():
        package = path.relative_to(ROOT).parts[0]
        for imported in _imports(path):
            if FLOORS[imported] > FLOORS[package]:
                backward.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert backward == []


def test_packages_import_each_other_in_no_circle() -> None:
    graph: dict[str, set[str]] = {package: set() for package in FLOORS}
    for path in _package_files():
        package = path.relative_to(ROOT).parts[0]
        graph[package] |= _imports(path) - {package}
    cycles = []
    for start in graph:
        seen, stack = set(), [start]
        while stack:
            for imported in graph[stack.pop()]:
                if imported == start:
                    cycles.append(start)
                elif imported not in seen:
                    seen.add(imported)
                    stack.append(imported)
    assert cycles == []


def test_no_module_is_longer_than_one_reading() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _package_files()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert _package_files(), "the listing found no module"
    assert long == {}


def test_the_floors_hold_every_package() -> None:
    top_level = {p.relative_to(ROOT).parts[0] for p in _tracked("*/__init__.py")}
    assert top_level - {"tests", "benchmarks", "scripts"} <= FLOORS.keys()


def test_flows_only_orchestrate() -> None:
    too_long, with_sql = [], []
    for path in (ROOT / "flows").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FLOW_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.name} ({length} lines)")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
                with_sql.append(f"{path.name}:{node.lineno}")
    assert too_long == []
    assert with_sql == []


def test_the_readme_is_a_door_to_the_docs() -> None:
    """The README stays short enough to read first; the docs hold an index and the map of the house."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= MAX_README_LINES
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    assert "architecture.md" in index
    assert (ROOT / "docs" / "architecture.md").is_file()
