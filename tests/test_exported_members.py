"""The public API is exactly what ``__all__`` says, and importing the runtime stays light."""

from __future__ import annotations

import subprocess
import sys

import segfn_kit
import segfn_kit.runtime


def test_all_names_resolve() -> None:
    for name in segfn_kit.__all__:
        assert getattr(segfn_kit, name) is not None, name


def test_all_is_what_is_exported() -> None:
    public = {n for n in dir(segfn_kit) if not n.startswith("_") or n == "__version__"}
    # submodules and the IPython hook are reachable but not part of the re-exported API
    public -= {"runtime", "spec", "examples", "load_ipython_extension"}
    # the module's own imports (typing, importlib, __future__) are not API
    public -= {"Any", "TYPE_CHECKING", "importlib", "annotations"}
    public = {n for n in public if not isinstance(getattr(segfn_kit, n, None), type(sys))}
    assert public == set(segfn_kit.__all__)


def test_runtime_all_resolves() -> None:
    for name in segfn_kit.runtime.__all__:
        assert hasattr(segfn_kit.runtime, name), name


def test_runtime_import_is_light() -> None:
    """A function file's import must not pull in the workbench's heavy dependencies."""
    code = (
        "import sys, segfn_kit.runtime\n"
        "heavy = {'pandas', 'pydantic', 'ipywidgets', 'IPython', 'matplotlib', 'httpx', 'numpy'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_all_lists_every_lazily_exported_name() -> None:
    assert set(segfn_kit.__all__) == {"__version__", *segfn_kit._EXPORTS}
