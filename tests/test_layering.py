"""The package's layering: imports point one way, down, and every module has its place.

  0 native core (C++, native/) -> 1 binding (pyadr._native) -> 2 checked array API (pyadr,
  pyadr._checks, _api, _config, _context, _interop, _blas, _onednn, _info, _memory, reference, planes, gpu) ->
  3 pyadr.nn -> 4 pyadr.train, pyadr.torch, pyadr.jax, pyadr.export -> 5 pyadr.cli, pyadr.__main__

The source files of pyadr/ (this checkout, not the installed copy) are parsed with `ast`; no
module is imported. Every import counts: top level, inside functions, `from . import x`,
relative and absolute. Importing a submodule implicitly runs its parents' __init__; that is not
an edge (else every package would be a cycle with its own modules).
Checked: (a) no import cycle, (b) no upward import and, within layer 2, gpu and the other
low-level modules import only what RESTRICTED allows, (c) every module is in LAYERS,
(d) `import pyadr` imports no CuPy, torch, SciPy or JAX. The checker itself is tested on small
synthetic packages, so that each check can be seen to fail.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_DIR = os.path.join(ROOT, "src", "pyadr")

# (module, or "package.*" for a package and all its modules; layer). A new module must be placed here.
LAYERS = [
    ("pyadr._native", 1),            # Cython binding (pyadr/_native.pyx over pyadr/_native_shim.hpp)
    ("pyadr", 2),                    # the package's facade (pyadr/__init__.py)
    ("pyadr._checks", 2), ("pyadr._api", 2), ("pyadr._config", 2), ("pyadr._context", 2),
    ("pyadr._interop", 2), ("pyadr._blas", 2), ("pyadr._onednn", 2), ("pyadr._info", 2), ("pyadr._memory", 2),
    ("pyadr.reference", 2), ("pyadr.planes", 2), ("pyadr.gpu.*", 2),
    ("pyadr.nn.*", 3),
    ("pyadr.train.*", 4), ("pyadr.torch.*", 4), ("pyadr.jax", 4),
    ("pyadr.export", 4),
    ("pyadr.cli.*", 5), ("pyadr.__main__", 5),
]
# importer (module or package) -> the only pyadr modules (or packages) it may import besides its
# own package's modules: gpu never imports the facade that dispatches to it (pyadr._api) nor the
# slow test reference; the argument checks and the reference stay at the bottom of layer 2.
RESTRICTED = {
    "pyadr.gpu": ("pyadr._checks", "pyadr._config", "pyadr._context", "pyadr._native"),
    "pyadr._checks": ("pyadr._config",),
    "pyadr.reference": ("pyadr._checks", "pyadr._config"),
    "pyadr._config": ("pyadr._native",),        # the limits, defined once in the native core (lazily)
    "pyadr._context": (),
}
# (importer, imported) -> why. Each one is an exception to (a) and (b) and must still exist.
ALLOWED = {}     # (importer, imported) -> why an upward edge is allowed; none today
EXTENSIONS = ("pyadr._native",)      # compiled modules: no .py source to parse


# ---- the checker ---------------------------------------------------------------------------------

def discover(pkg_dir, pkg_name="pyadr"):
    """{module: (path, is_package)} of every .py file under pkg_dir."""
    mods = {}
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, pkg_dir)
        parts = [pkg_name] + ([] if rel == "." else rel.split(os.sep))
        if "__init__.py" not in filenames:
            continue                                    # not a package (kernels/, data folders)
        for f in sorted(filenames):
            if not f.endswith(".py"):
                continue
            if f == "__init__.py":
                mods[".".join(parts)] = (os.path.join(dirpath, f), True)
            else:
                mods[".".join(parts + [f[:-3]])] = (os.path.join(dirpath, f), False)
    return mods


def _known(name, modules):
    """The longest prefix of dotted `name` that is a module, or None (outside the package)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in modules:
            return cand
    return None


def imports_of(module, source, is_package, modules, top="pyadr"):
    """[(imported module, line)] of every import of a `top` module in `source`."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    out.append((_known(alias.name, modules) or alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top package")
                base = base[:len(base) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if not (full == top or full.startswith(top + ".")):
                continue
            for alias in node.names:
                sub = f"{full}.{alias.name}"
                target = sub if sub in modules else (_known(full, modules) or full)
                out.append((target, node.lineno))
    return out


def build_graph(sources, extensions=()):
    """sources: {module: (source text, is_package)} -> ({importer: {imported: first line}}, modules)."""
    modules = set(sources) | set(extensions)
    graph = {m: {} for m in modules}
    for mod, (text, is_pkg) in sources.items():
        for target, line in imports_of(mod, text, is_pkg, modules):
            if target != mod:
                graph[mod].setdefault(target, line)
    return graph


def find_cycle(graph):
    """A list [m0, m1, ..., m0] of modules importing each other in a ring, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer_of(module, layers):
    """Layer of the LAYERS entry naming the module, else of the most specific "package.*" above it."""
    best = None
    for name, layer in layers:
        if name == module:
            return layer
        pkg = name[:-2] if name.endswith(".*") else None
        if pkg and (module == pkg or module.startswith(pkg + ".")):
            if best is None or len(pkg) > len(best[0]):
                best = (pkg, layer)
    return None if best is None else best[1]


def _entry(module, table):
    hits = [k for k in table if module == k or module.startswith(k + ".")]
    return max(hits, key=len) if hits else None


def layering_errors(graph, layers, restricted, where=lambda m, line: f"{m}:{line}"):
    """Messages for every upward edge, every edge RESTRICTED forbids, every unplaced module."""
    errors = []
    for mod in sorted(graph):
        if layer_of(mod, layers) is None:
            errors.append(f"{mod} is in no layer: add it to LAYERS in tests/test_layering.py")
    for mod in sorted(graph):
        lm = layer_of(mod, layers)
        for target, line in sorted(graph[mod].items()):
            lt = layer_of(target, layers)
            if lm is None or lt is None:
                continue
            if lt > lm:
                errors.append(f"{where(mod, line)}: upward import: {mod} (layer {lm}) imports {target} "
                              f"(layer {lt})")
            key = _entry(mod, restricted)
            if key is not None and _entry(target, {key: 0}) is None:
                allowed = restricted[key]
                if _entry(target, dict.fromkeys(allowed)) is None:
                    errors.append(f"{where(mod, line)}: {mod} may import only {', '.join(allowed) or 'no pyadr module'}"
                                  f" (and its own package), but imports {target}")
    return errors


# ---- the checks on pyadr/ ------------------------------------------------------------------------

def _pyadr_graph():
    found = discover(PKG_DIR)
    sources = {}
    for mod, (path, is_pkg) in found.items():
        with open(path, encoding="utf-8") as f:
            sources[mod] = (f.read(), is_pkg)
    graph = build_graph(sources, EXTENSIONS)
    paths = {m: os.path.relpath(p, ROOT) for m, (p, _) in found.items()}
    return graph, paths


@pytest.fixture(scope="module")
def pyadr_graph():
    graph, paths = _pyadr_graph()
    for (a, b), why in ALLOWED.items():
        assert b in graph.get(a, {}), f"ALLOWED lists {a} -> {b} ({why}), which no longer exists: remove it"
        del graph[a][b]
    return graph, paths


def test_graph_sees_the_package(pyadr_graph):
    graph, _ = pyadr_graph
    for mod in ("pyadr", "pyadr._api", "pyadr._checks", "pyadr.gpu.conv", "pyadr.nn.layers", "pyadr.cli.train"):
        assert mod in graph, mod
    assert "pyadr._checks" in graph["pyadr.gpu.conv"]          # top-level relative import
    assert "pyadr.gpu" in graph["pyadr._api"]                  # `from . import gpu` inside a function
    assert "pyadr.nn.functional" in graph["pyadr.nn.layers"]   # `from . import functional as F`


def test_no_import_cycle(pyadr_graph):
    graph, paths = pyadr_graph
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} ({paths.get(a, a)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle: " + " -> ".join(steps) + f" -> {cycle[-1]}")


def test_no_upward_import_and_every_module_placed(pyadr_graph):
    graph, paths = pyadr_graph
    errors = layering_errors(graph, LAYERS, RESTRICTED, where=lambda m, line: f"{paths.get(m, m)}:{line}")
    assert not errors, "\n".join(errors)


def test_the_binding_imports_no_python_module_of_pyadr():
    with open(os.path.join(PKG_DIR, "_native.pyx"), encoding="utf-8") as f:
        text = f.read()
    bad = re.findall(r"^\s*(?:from\s+(?:\.|pyadr)\S*\s+(?:c?import)|c?import\s+pyadr)\b.*$", text, re.M)
    assert not bad, f"pyadr/_native.pyx (layer 1) imports from the package: {bad}"


def test_import_pyadr_imports_no_cupy_torch_scipy_or_jax():
    """Run in a fresh interpreter; a finder also records attempts, so this fails even where
    CuPy is not installed (as on the CI machine)."""
    code = (
        "import sys\n"
        "tried = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('cupy', 'torch', 'scipy', 'jax', 'jaxlib'):\n"
        "            tried.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import pyadr, pyadr.nn, pyadr.train, pyadr.gpu\n"
        "assert 'cupy' not in sys.modules\n"
        "assert not tried, tried\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.join(ROOT, "src"))  # this checkout's sources
    assert r.returncode == 0, r.stderr


# ---- the checker can fail ------------------------------------------------------------------------

SYNTHETIC = {
    "pkg": ("from . import low\n", True),
    "pkg.low": ("def f():\n    from .mid import g\n", False),          # low -> mid, inside a function
    "pkg.mid": ("import pkg.top.cmd as c\n", False),                   # mid -> top.cmd (upward)
    "pkg.top": ("", True),
    "pkg.top.cmd": ("from .. import low\nfrom ..mid import g\n", False),  # cmd -> low, cmd -> mid
    "pkg.stray": ("", False),
}
SYN_LAYERS = [("pkg", 1), ("pkg.low", 1), ("pkg.mid", 1), ("pkg.top.*", 3)]


def _syn_graph(sources):
    mods = set(sources)
    graph = {m: {} for m in mods}
    for mod, (text, is_pkg) in sources.items():
        for target, line in imports_of(mod, text, is_pkg, mods, top="pkg"):
            graph[mod].setdefault(target, line)
    return graph


def test_checker_resolves_relative_and_function_imports():
    graph = _syn_graph(SYNTHETIC)
    assert graph["pkg"] == {"pkg.low": 1}
    assert graph["pkg.low"] == {"pkg.mid": 2}
    assert graph["pkg.mid"] == {"pkg.top.cmd": 1}
    assert graph["pkg.top.cmd"] == {"pkg.low": 1, "pkg.mid": 2}


def test_checker_finds_a_cycle_and_an_upward_edge():
    graph = _syn_graph(SYNTHETIC)
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"pkg.low", "pkg.mid", "pkg.top.cmd"}
    errors = layering_errors(graph, SYN_LAYERS, {"pkg.low": ()})
    assert any("upward import: pkg.mid (layer 1) imports pkg.top.cmd (layer 3)" in e for e in errors), errors
    assert any("pkg.stray is in no layer" in e for e in errors), errors
    assert any("pkg.low may import only no pyadr module" in e and "imports pkg.mid" in e for e in errors), errors
    acyclic = {m: {t: ln for t, ln in es.items() if t != "pkg.top.cmd"} for m, es in graph.items()}
    assert find_cycle(acyclic) is None
    assert not [e for e in layering_errors(acyclic, SYN_LAYERS + [("pkg.stray", 1)], {}) if "upward" in e]
