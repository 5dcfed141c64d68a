"""The house keeps its rules (tests/layout_rules.py), and the wheel holds the whole house."""
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .layout_rules import violations

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "netdsl"


def test_the_package_keeps_the_layout_rules():
    assert violations(PACKAGE) == []


def _plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "netdsl" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [p for p in (root / "netdsl").rglob("*") if p.is_dir()] + [root / "netdsl"]:
        (folder / "__init__.py").touch()
    return root / "netdsl"


def test_each_rule_fails_on_a_planted_violation(tmp_path):
    root = _plant(tmp_path, {
        "ops.py": "from .compiler import Network\n",                      # front end reaching up
        "compiler.py": "def explain():\n    from .views import explain\n",  # the old circle, lazily
        "views/explain.py": "from ..compiler import Network\nfrom ..backend.executor import Model\n",
        "backend/executor.py": "def save():\n    from ..train import loop\n",
        "backend/kernels.py": "from .gpu import layers\n",                # gpu/ loaded at import time
        "backend/cpu/native.py": "import cupy\nfrom ..kernels import KERNELS\n",
        "train/loop.py": "from ..backend import executor\n",             # allowed: train drives the backend
        "cli/main.py": "from .. import render\n",                        # the alias is for users
        "render.py": "from .views.render import diagram\n",
        "typing_only.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .backend import executor\n",
    })
    found = "\n".join(violations(root))
    expected = [
        "netdsl.ops imports netdsl.compiler: front end may not import compiler",
        "netdsl.compiler imports netdsl.views.explain: compiler may not import views",
        "netdsl.views.explain imports netdsl.backend.executor: views may not import backend",
        "netdsl.backend.executor imports netdsl.train.loop: backend may not import train",
        "netdsl.backend.kernels imports netdsl.backend.gpu: backend/gpu/ is imported only inside functions",
        "netdsl.backend.cpu.native imports cupy: backend/cpu/ never imports CuPy",
        "netdsl.backend.cpu.native imports netdsl.backend.kernels: cpu/ imports nothing of the rest of backend/",
        "netdsl.cli.main imports netdsl.render: netdsl.render is a public alias",
    ]
    for line in expected:
        assert line in found, f"not reported: {line}\n--- reported:\n{found}"
    assert "netdsl.train.loop imports" not in found
    assert "typing_only" not in found
    circles = {frozenset(line.split(": ", 1)[1].split(" -> ")) for line in found.splitlines()
               if line.startswith("import circle")}
    assert circles == {frozenset({"netdsl.compiler", "netdsl.views.explain"}),
                       frozenset({"netdsl.backend.executor", "netdsl.train.loop"})}


def test_a_module_outside_the_known_layers_is_reported(tmp_path):
    root = _plant(tmp_path, {"mystery.py": "x = 1\n", "ops.py": "from . import mystery\n"})
    assert any("outside the known layers" in v for v in violations(root))


def test_a_cpu_model_never_loads_gpu_code():
    code = ("import sys, numpy as np, netdsl\n"
            "net = netdsl.compile_source('input 2x8x8\\nconv 4 3x3 pad 1\\nbn\\nrelu\\npool max 2x2\\nlrn 3\\nfc 3\\nsoftmax')\n"
            "m = netdsl.Model(net, device='cpu')\nopt = netdsl.SGD(m)\n"
            "m.loss(np.ones((2, 2, 8, 8), np.float32), [0, 1]); m.backward(); opt.step()\n"
            "print(sorted(k for k in sys.modules if k.startswith(('netdsl.backend.gpu', 'cupy'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _tree_files(top: Path) -> set[str]:
    return {p.relative_to(top.parent).as_posix() for p in top.rglob("*")
            if p.is_file() and p.suffix in (".py", ".lark", ".c") and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the tree (no stale build/)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                            "results", "gallery", ".pytest_cache", "gpu-check-out"))
    out = work / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("netdsl-*.whl")
    return path


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if n.startswith("netdsl/")}
    assert _tree_files(PACKAGE) <= shipped, sorted(_tree_files(PACKAGE) - shipped)
    assert {"netdsl/grammar.lark", "netdsl/backend/cpu/native.c", "netdsl/backend/gpu/cuda.py"} <= shipped
    assert not any(n.startswith(("tests/", "benchmarks/", "nets/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "netdsl = netdsl.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    """Installed (not editable) and run away from the source tree: compile, explain, a training step."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "nets" / "lenet5.net", elsewhere)
    code = ("import numpy as np, netdsl\nprint(netdsl.__file__)\n"
            "net = netdsl.load('lenet5.net'); print(net.totals().params)\nprint(net.explain('c1').splitlines()[3])\n"
            "m = netdsl.Model(net, device='cpu'); opt = netdsl.SGD(m)\n"
            "m.loss(np.zeros((2, 1, 32, 32), np.float32), [0, 1]); m.backward(); opt.step(); print('stepped')")
    env = {**os.environ, "PYTHONPATH": str(target), "NETDSL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    where, params, output, stepped = result.stdout.split("\n")[:4]
    assert where.startswith(str(target)), where  # the installed copy ran, not the source tree
    assert params == "61706" and output == "  output (32 - 5)/1 + 1 = 28 -> 6x28x28" and stepped == "stepped"
    cli = subprocess.run([sys.executable, "-m", "netdsl", "check", "lenet5.net"], capture_output=True, text=True,
                         cwd=elsewhere, env=env, timeout=120)
    assert cli.returncode == 0 and "ok: lenet5" in cli.stdout, cli.stderr


def test_the_readme_tree_names_every_folder_of_the_package():
    text = (ROOT / "README.md").read_text()
    tree = text.split("## Where things live", 1)[1].split("```", 2)[1]
    listed = {line.split()[0].rstrip("/") for line in tree.splitlines() if line.startswith("netdsl/")}
    folders = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
               if p.is_dir() and (p / "__init__.py").is_file()} | {"netdsl"}
    assert folders <= listed, sorted(folders - listed)
    assert {f for f in listed if not f.endswith(".lark")} <= folders, "the README names a folder that is gone"
