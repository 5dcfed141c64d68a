"""The README's Python example runs as written."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has a Python example"
    (tmp_path / "nets").symlink_to(ROOT / "nets")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "(6, 28, 28) 61706" in out
    assert (tmp_path / "lenet5.safetensors").is_file()
    assert (tmp_path / "lenet5.onnx").is_file()  # the Export section's example
