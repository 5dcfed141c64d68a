"""docs/lecture.ipynb runs in a real Jupyter kernel (nbclient + ipykernel) and its outputs hold the
tables (HTML) and the diagrams (SVG), with the lecture's numbers worked out."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "lecture.ipynb"


@pytest.fixture(scope="module")
def executed():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # run from nothing: the stored outputs do not count
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def _outputs(nb, mime):
    return [o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "data" in o and mime in o["data"]]


def test_the_lecture_notebook_runs_and_shows_tables_and_diagrams(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    html = _outputs(executed, "text/html")
    svgs = _outputs(executed, "image/svg+xml")
    assert sum("<table>" in h for h in html) >= 8  # summaries and group explanations (a layer is lines)
    assert len(svgs) >= 3 and all("<svg" in s for s in svgs)
    text = "\n".join(html) + "\n".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                                        for o in c.outputs)
    for figure in ("(227 - 11)/4 + 1 = 55", "11*11*3*96 = 34,848", "(55 - 3)/2 + 1 = 27",  # AlexNet conv1, pool1
                   "27C² = 1,769,472", "15,237,608", "138,357,544",  # VGG
                   "854,196,224", "672, 28, 28", "271,351,808", "64 + 128 + 32 + 32 = 256",  # GoogLeNet
                   "vgg16      depth  16", "resnet152  depth 152"):
        assert figure in text, figure


def test_the_notebook_is_stored_with_its_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any(c.outputs for c in nb.cells if c.cell_type == "code")  # readable on GitHub as the tour
