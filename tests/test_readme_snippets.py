"""Every snippet of README's "Use a trained model" section runs as printed."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, call, write_checkpoint
from reid.synthetic.crops import sample_crops

SECTION = "### 6. Use a trained model"


def snippets() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the section."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start:re.search(r"\n##+ ", text[start + len(SECTION):]).start() + start + len(SECTION)]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_the_three_snippets():
    assert [lang for lang, _ in snippets()] == ["python", "bash", "python"]
    assert len(snippets()[0][1].strip().splitlines()) <= 5, "embedding from Python in five lines"


@pytest.mark.slow
def test_the_snippets_run_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_checkpoint(tmp_path / "checkpoints" / "lite0_128" / "best.pt", "efficientnet_lite0", 128)
    (tmp_path / "crops").mkdir()
    for name, crop in zip(("a", "b"), sample_crops(2, seed=4), strict=True):
        Image.fromarray(crop).save(tmp_path / "crops" / f"{name}.jpeg")
    features = {}
    for i, (lang, code) in enumerate(snippets()):
        if lang == "python":
            scope: dict = {}
            exec(compile(code, f"README snippet {i}", "exec"), scope)
            features[i] = scope["features"]
        else:
            for line in code.strip().splitlines():
                words = shlex.split(line)
                assert words[:1] == ["python"]
                result = call(words[1], *words[2:])
                assert result.returncode == 0, result.stderr
    assert "(2, 1280)" in capsys.readouterr().out
    torch_features, onnx_features = features.values()
    assert np.abs(torch_features - onnx_features).max() <= 1e-4
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.json").is_file()
