"""The committed notebooks' outputs say what the committed code and results say today.

`make notebooks` executes the notebooks at full size and their outputs are committed; they go stale
when the package or the results change afterwards. Two kinds of output are checked against what
they would render now: a cell that shows the package's own code (`figures.source(...)`) against
that code, and a cell that renders the claims table (`claims.render(...)`) against the table the
committed results give. A failure names the notebook and the cell: run `make notebooks` again.
"""

import inspect
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCE_CELL = re.compile(r"^figures\.source\(([\w.]+)\)$", re.M)


def imports_of(nb) -> dict:
    """The namespace the notebook's `from lvae ... import ...` lines give (nothing else of it is run)."""
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                if re.match(r"^(from lvae[\w.]* import .+|import lvae[\w.]*)$", line.strip()):
                    exec(line.strip(), ns)
    return ns


def shown(cell, kind: str) -> str | None:
    for out in cell.get("outputs", []):
        if kind in out.get("data", {}):
            return out["data"][kind]
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_cell_that_shows_package_code_shows_todays_code(path):
    nb = nbformat.read(path, as_version=4)
    ns = imports_of(nb)
    for i, cell in enumerate(nb.cells):
        m = SOURCE_CELL.search(cell.source) if cell.cell_type == "code" else None
        if not m:
            continue
        try:
            obj = eval(m.group(1), ns)  # noqa: S307 - a dotted name from the notebook's own imports
        except (NameError, AttributeError):
            continue  # a name the notebook binds at run time (a model instance): not checkable without running it
        out = shown(cell, "text/plain")
        assert out is not None, f"{path.name} cell {i} ({m.group(1)}) has no output: run make notebooks"
        assert out.strip() == textwrap.dedent(inspect.getsource(obj)).strip(), \
            f"{path.name} cell {i} shows an old copy of {m.group(1)}: run make notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_rendered_claims_table_is_todays_table(path):
    from lvae.experiments import claims

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "claims.render(" in cell.source:
            out = shown(cell, "text/markdown")
            assert out is not None, f"{path.name} cell {i} has no rendered table: run make notebooks"
            expected = claims.render(ROOT / "results", studies="studies=False" not in cell.source)
            assert out.strip() == expected.strip(), \
                f"{path.name} cell {i} shows a claims table the committed results no longer give: run make notebooks"
