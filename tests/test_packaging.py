"""What the package promises its users: docs links stay inside the repository, the extras and the
wheel recipe exist, no build directory inside the tree, LICENSE and py.typed shipped, one version."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = ("blas", "train", "plot", "gpu", "mpi", "torch", "jax", "tb", "yaml", "test")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.I)     # http:, mailto:, //host, #anchor


def _pyproject():
    try:
        import tomllib
    except ImportError:                           # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _doc_files():
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))


def relative_links(text):
    """Link targets of a Markdown text that point at files (no URLs, no #anchors), fenced code
    blocks left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    targets = LINK.findall(text) + HTML_LINK.findall(text)
    return [t.split("#")[0] for t in targets if not EXTERNAL.match(t) and t.split("#")[0]]


def test_link_finder_sees_links_and_skips_urls():
    text = ("[a](docs/x.md) ![img](../y.png \"t\") [b](https://e.org/z) [c](#top) [d](e.md#sec)\n"
            "```\n[e](inside/code.md)\n```\n<img src=\"pic.png\">")
    assert relative_links(text) == ["docs/x.md", "../y.png", "e.md", "pic.png"]


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve_inside_the_repository(path):
    with open(path, encoding="utf-8") as f:
        links = relative_links(f.read())
    bad = []
    for link in links:
        target = os.path.realpath(os.path.join(os.path.dirname(path), link))
        if os.path.commonpath([target, os.path.realpath(ROOT)]) != os.path.realpath(ROOT):
            bad.append(f"{link} (outside the repository)")
        elif not os.path.exists(target):
            bad.append(f"{link} (no such file)")
    assert not bad, f"{os.path.relpath(path, ROOT)}: " + ", ".join(bad)


def test_extras_exist():
    extras = _pyproject()["project"]["optional-dependencies"]
    missing = [e for e in EXTRAS if not extras.get(e)]
    assert not missing, f"pyproject.toml lacks the extras {missing}"
    assert any(r.startswith("tensorboard") for r in extras["tb"])
    assert any(r.startswith("jax") for r in extras["jax"])


def test_wheel_recipe_is_manylinux_without_native_tuning():
    cibw = _pyproject()["tool"]["cibuildwheel"]
    assert cibw["build"].split() == [f"cp3{v}-*" for v in range(9, 14)]
    assert cibw["manylinux-x86_64-image"] == cibw["manylinux-aarch64-image"] == "manylinux_2_28"
    assert set(_pyproject()["tool"]["cibuildwheel"]["linux"]["archs"]) == {"x86_64", "aarch64"}
    tests = re.findall(r"\{project\}/(tests/\S+\.py)", cibw["test-command"])
    assert tests and all(os.path.exists(os.path.join(ROOT, t)) for t in tests), cibw["test-command"]
    for build_file in ("CMakeLists.txt", "native/CMakeLists.txt"):
        with open(os.path.join(ROOT, build_file)) as f:
            code = "\n".join(line.split("#")[0] for line in f)
        assert "-march=native" not in code and "-mtune=native" not in code, build_file


def _tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_no_build_directory_inside_the_tree():
    skbuild = _pyproject()["tool"]["scikit-build"]
    build_dir = skbuild.get("build-dir")
    assert build_dir is None or os.path.isabs(build_dir), f"scikit-build build-dir {build_dir!r} is inside the tree"
    outputs = re.compile(r"(^|/)(CMakeCache\.txt|CMakeFiles/|_skbuild/|build/)|\.(so|o|a|pyd)$|_native\.cpp$")
    committed = [f for f in _tracked_files() if outputs.search(f)]
    assert not committed, f"build outputs are committed: {committed[:5]}"


def test_license_and_py_typed():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert "MIT License" in f.read()
    assert os.path.exists(os.path.join(ROOT, "src", "pyadr", "py.typed"))
    import pyadr
    installed = os.path.dirname(pyadr.__file__)
    assert os.path.exists(os.path.join(installed, "py.typed")), f"py.typed is not shipped in {installed}"
    from importlib import metadata
    files = [str(f) for f in (metadata.files("pyadr") or [])]
    assert any(f.endswith("LICENSE") for f in files), "the installed distribution carries no LICENSE"


def test_version_is_the_same_everywhere():
    version = _pyproject()["project"]["version"]
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        cmake = re.search(r"project\(pyadr VERSION ([0-9.]+)", f.read()).group(1)
    with open(os.path.join(ROOT, "src", "pyadr", "_info.py")) as f:
        source = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)
    import pyadr
    from pyadr import _native
    found = {"pyproject.toml": version, "CMakeLists.txt": cmake, "src/pyadr/_info.py": source,
             "pyadr.__version__": pyadr.__version__, "native core": _native.info()["version"]}
    assert len(set(found.values())) == 1, found
    from importlib import metadata
    assert metadata.version("pyadr") == version
