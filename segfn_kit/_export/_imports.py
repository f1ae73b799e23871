"""What a function file imports, checked before it is exported.

An exported package holds the standard library, httpx, ``segfn_kit.runtime`` and the
requirements named at export. Anything else (pandas, IPython, a module next to the
function file) would fail at deploy time; the file is parsed, never run, and every such
import is reported with its line.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from segfn_kit._errors import ExportError

__all__ = ["ExportError", "ImportProblem", "check_imports", "requirement_name"]

# modules whose import name differs from the project name on PyPI
_PROJECT_OF_MODULE = {
    "dateutil": "python-dateutil",
    "yaml": "pyyaml",
    "jwt": "pyjwt",
    "PIL": "pillow",
    "bs4": "beautifulsoup4",
    "google": "google-api-core",
    "dotenv": "python-dotenv",
}


@dataclass(frozen=True)
class ImportProblem:
    """One import the package could not satisfy.

    Attributes:
        module: the module as written (``pandas``, ``.helpers``).
        line: the 1-based line of the import.
        reason: why it cannot ship, and the fix.
    """

    module: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: import {self.module}: {self.reason}"


def requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement line.

    Example:
        >>> requirement_name("Python_Dateutil>=2.8 ; python_version > '3'")
        'python-dateutil'
    """
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ExportError(f"{requirement!r} is not a requirement (expected e.g. 'python-dateutil>=2.8')")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _allowed(module: str, requirements: frozenset[str], near: Path | None) -> str | None:
    """``None`` when ``module`` ships in the package, else the reason it does not."""
    top = module.split(".")[0]
    if near is not None and ((near / f"{top}.py").is_file() or (near / top / "__init__.py").is_file()):
        return (
            f"{top} is a local module next to the function file, which does not ship in the "
            "package; put that code in the function file"
        )
    if top in sys.stdlib_module_names or top == "httpx":
        return None
    if top == "segfn_kit":
        if module == "segfn_kit.runtime" or module.startswith("segfn_kit.runtime."):
            return None
        return "only segfn_kit.runtime ships in an exported package; import from segfn_kit.runtime"
    project = _PROJECT_OF_MODULE.get(top, top)
    if requirement_name(project) in requirements or requirement_name(top) in requirements:
        return None
    return (
        f"{top} is neither the standard library, httpx nor segfn_kit.runtime, so the package "
        f"would fail where it is deployed; remove the import, or add it with --requirement {project}"
    )


def check_imports(
    source: str, requirements: tuple[str, ...] = (), *, near: Path | None = None
) -> list[ImportProblem]:
    """The imports of a function file's text that an exported package cannot satisfy.

    Example:
        >>> check_imports("import json\\nimport pandas as pd\\n")
        [ImportProblem(module='pandas', line=2, reason='pandas is neither ...')]
        >>> check_imports("import pandas", ("pandas>=2",))
        []

    Args:
        source: the function file's text.
        requirements: extra requirement lines the package will install.
        near: the function file's folder, to recognise local modules.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ExportError(f"line {exc.lineno}: syntax error: {exc.msg}") from None
    allowed = frozenset(requirement_name(r) for r in requirements)
    problems: list[ImportProblem] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                reason = _allowed(alias.name, allowed, near)
                if reason:
                    problems.append(ImportProblem(alias.name, node.lineno, reason))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                name = "." * node.level + (node.module or "")
                problems.append(ImportProblem(
                    name, node.lineno,
                    "a relative import of a local module, which does not ship in the package; "
                    "put that code in the function file",
                ))
                continue
            module = node.module or ""
            if module == "segfn_kit":
                names = {a.name for a in node.names}
                if names == {"runtime"}:
                    continue
            reason = _allowed(module, allowed, near)
            if reason:
                problems.append(ImportProblem(module, node.lineno, reason))
    return sorted(problems, key=lambda p: p.line)
