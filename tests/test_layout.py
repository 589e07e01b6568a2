"""The package's shape: a core that imports no wing, wings that import no other wing (except
`report`, which reads `experiments`), and no import circle anywhere, lazy imports included.

`python tests/test_layout.py` prints the import graph.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lvae"
WINGS = ("experiments", "speed", "report")
MAY_READ = {"report": {"experiments"}}  # the only wing-to-wing arrow allowed


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every lvae module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    # `from lvae import x` names the package too: it is an arrow only to x
    return {m: {d for d in deps if d != "lvae" or m == "lvae"} for m, deps in graph.items()}


def wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it (depth-first search)."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                found.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_the_core_imports_no_wing():
    bad = {m: sorted(d for d in deps if wing(d)) for m, deps in import_graph().items() if wing(m) is None}
    assert not {m: d for m, d in bad.items() if d}


def test_wings_import_no_other_wing_except_report_reading_experiments():
    bad = []
    for m, deps in import_graph().items():
        w = wing(m)
        for d in deps:
            if w and wing(d) and wing(d) != w and wing(d) not in MAY_READ.get(w, set()):
                bad.append(f"{m} -> {d}")
    assert not bad


def test_there_is_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_checks_can_fail():
    """The rules catch what they are for, on a made-up graph."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert wing("lvae.speed.bench") == "speed" and wing("lvae.model") is None


def test_no_committed_file_holds_an_absolute_path_of_the_machine_that_made_it():
    root = PACKAGE.parent
    pattern = re.compile(r"(/work/|/home/\w+/|/root/|/Users/\w+/|/tmp/pytest-)")
    tracked = __import__("subprocess").run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    hits = []
    for name in tracked:
        path = root / name
        if path.suffix in (".pt", ".png") or name.startswith("tests/test_layout.py") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not hits, hits[:10]


if __name__ == "__main__":
    for m, deps in sorted(import_graph().items()):
        print(f"{m} -> {', '.join(sorted(deps)) or '(nothing)'}")
    print("cycles:", cycles(import_graph()) or "none")


def test_evaluation_does_not_import_training():
    """Scoring a model needs the losses and the data, never the training loop (issue 31)."""
    assert "lvae.training" not in import_graph()["lvae.evaluation"]
