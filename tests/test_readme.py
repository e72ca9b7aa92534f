"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text.split("## The Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 18
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "readme-organism" / "manifest.json").is_file()
    assert len(namespace["labels"]) == len(namespace["prompts"].prompts)
