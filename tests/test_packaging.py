"""What `pip install .` installs: the product (models, data, training, evaluation, denoise, serve, export, CLI),
not the maintainer tools (shipping a run, the model card, the results page, the project's targets)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAINTAINER = ("ship", "card", "results", "targets")


@pytest.mark.slow
def test_the_wheel_holds_the_product_and_no_maintainer_tool(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("digit_denoise-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {Path(n).stem for n in names if n.endswith(".py")}
    assert not [m for m in MAINTAINER if m in modules], sorted(modules)
    assert not [n for n in names if n.startswith(("tools/", "recipes/", "tests/"))]
    for needed in ("digit_denoise/cli.py", "digit_denoise/pretrained/__init__.py", "digit_denoise/pretrained/default.json",
                   "digit_denoise/pretrained/default.safetensors", "digit_denoise/training/presets/fast.toml",
                   "digit_denoise/seed/features.py", "digit_denoise/serve/static/index.html"):
        assert needed in names, needed


def test_maintainer_tools_live_outside_the_package():
    pkg = REPO / "src" / "digit_denoise"
    assert not [p for p in pkg.rglob("*.py") if p.stem in MAINTAINER]
    assert all((REPO / "tools" / f"{m}.py").is_file() for m in MAINTAINER)
    assert (REPO / "tools" / "targets.toml").is_file()
