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


# The gateway's wings, each on its floor (ARCHITECTURE.md, "The gateway's store
# and its processes"): a module may import its own wing and the wings below.
GATEWAY_FLOORS = ("store", "ingest", "enforcement", "supervision", "api", "cli")


def gateway_wing(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "gateway" and parts[1] in GATEWAY_FLOORS else None


def test_gateway_wings_import_only_downwards():
    wrong = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        here = gateway_wing(".".join(path.relative_to(ROOT).with_suffix("").parts))
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "gateway":
                targets = [f"gateway.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                there = gateway_wing(target)
                if target.startswith("gateway.") and there is None:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}, which is in no wing")
                elif here is None and there is not None and path.name != "__main__.py":
                    wrong.append(f"{path.relative_to(ROOT)} is in no wing")
                elif there and here and GATEWAY_FLOORS.index(there) > GATEWAY_FLOORS.index(here):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} ({here}) imports {target} ({there}), a floor up")
    assert not wrong, "\n".join(wrong)


def test_the_gateway_folder_holds_only_its_wings():
    loose = sorted(p.name for p in (ROOT / "gateway").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, loose
