"""The import rules of ARCHITECTURE.md, checked on the source: a line of code
should know its room."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocols", "hardware", "firmware", "terminal_ui", "gateway", "simulator")
ALLOWED = {
    "protocols": set(),
    "hardware": {"protocols"},
    "firmware": {"protocols", "hardware"},
    "terminal_ui": {"protocols", "firmware"},
    "gateway": {"protocols"},
    "simulator": set(PACKAGES),
}


def project_imports(path: Path):
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                yield node.lineno, top


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_the_architecture_allows(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for lineno, top in project_imports(path):
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{lineno} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_simulator_or_tests():
    wrong = []
    for package in PACKAGES:
        if package == "simulator":
            continue
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, top in project_imports(path):
                if top == "simulator":
                    wrong.append(f"{path.relative_to(ROOT)}:{lineno}")
    assert not wrong, wrong
