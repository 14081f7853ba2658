"""The package's import structure: no cycles, and no module imports a higher layer.

Every ``import`` / ``from ... import`` in the package is read with :mod:`ast`, at the top level and
inside functions alike (a lazy import is still a dependency). docs/architecture.md draws the same
layers; change both together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "digit_denoise"

# Lowest first. A module may import its own layer or lower ones; a package name covers its modules.
LAYERS = [
    ("core", {"version", "errors", "progress", "runtime", "dictconfig"}),
    ("signal and models", {"audio", "mel", "metrics", "losses", "figures", "models", "pretrained"}),
    ("data and model files", {"data", "seed", "voice", "checkpoint"}),
    ("inference and training", {"enhance", "training"}),
    ("tools", {"compare", "denoise", "export", "evaluate", "serve"}),
    ("entry points", {"demo", "cli", "__main__", "__init__"}),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from . import x`` resolves to submodule ``x`` if it is one)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        base = []
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = anchor + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "digit_denoise":
                target = node.module.split(".")[1:]
            else:
                continue
            prefix = ".".join(target)
            for alias in node.names:
                sub = f"{prefix}.{alias.name}" if prefix else alias.name
                out.add(sub if sub in known else (prefix or "__init__"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "digit_denoise":
                    out.add(".".join(alias.name.split(".")[1:]) or "__init__")
    return {m for m in out if m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"module {name} is in no layer of tests/test_layers.py: add it")


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, deps in graph().items() for b in deps if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)


def test_the_checker_sees_lazy_and_relative_imports():
    g = graph()
    assert "enhance" in g["__init__"]  # a lazy import inside __getattr__
    assert "data.noise" in g["data.pairs"] and "audio" in g["data.noise"]  # relative, one and two dots
    assert "compare.peers" in g["compare.core"]  # `from . import peers`


# Imports a function may still make: the CLI's per-command ones and the package's lazy ``Denoiser`` (they
# keep ``--version`` / ``--help`` free of torch), optional extras, and a private torch module.
INNER_IMPORTS_ALLOWED = {"cli", "__init__"}
OPTIONAL = {"pesq", "pystoi", "espeakng_loader", "onnx", "onnxruntime", "torch._inductor"}


def test_imports_are_at_the_top_of_every_module():
    """A module's dependencies can be read from its top: no import inside a function (see the exceptions)."""
    found = []
    for name, path in modules().items():
        if name in INNER_IMPORTS_ALLOWED:
            continue
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(fn):
                    if isinstance(n, (ast.Import, ast.ImportFrom)):
                        mod = n.module if isinstance(n, ast.ImportFrom) and not n.level else (
                            "." * getattr(n, "level", 0) + (getattr(n, "module", None) or "") if isinstance(
                                n, ast.ImportFrom) else n.names[0].name)
                        if not any(mod == o or mod.startswith(o + ".") for o in OPTIONAL):
                            found.append(f"{name}: {mod} inside {fn.name}()")
    assert not found, "\n".join(found)


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, long


def test_no_lazy_module_getattr_outside_the_top_package():
    lazy = [name for name, path in modules().items() if name != "__init__"
            and "def __getattr__(" in path.read_text(encoding="utf-8")]
    assert not lazy, lazy


if __name__ == "__main__":  # python tests/test_layers.py: the layers and who imports whom (docs/architecture.md)
    g = graph()
    for i, (title, members) in reversed(list(enumerate(LAYERS))):
        print(f"{i} {title}:")
        for name in sorted(n for n in g if layer_of(n) == i):
            deps = sorted({d.split(".")[0] if d.split(".")[0] != name.split(".")[0] else d for d in g[name]})
            print(f"    {name} → {', '.join(deps) if deps else '—'}")
