"""Export: a function file becomes a deployable handler package.

``export(function, out, payloads=...)`` writes a folder that runs where segfn_kit is not
installed (AWS Lambda, any ASGI server, the command line) and carries its own regression
tests; ``build_zip(package)`` builds its AWS Lambda zip. The package's code comes from the
template files in ``templates/``.

Errors::

    ExportError    the function cannot be exported as it is (an import the package cannot
                   hold, a load error, a missing required setting, a non-empty --out)

Example:
    >>> from segfn_kit._export import check_imports
    >>> [str(p) for p in check_imports("import IPython")][0][:27]
    'line 1: import IPython: IPy'
"""

from __future__ import annotations

from ._imports import ExportError, ImportProblem, check_imports
from ._package import MANIFEST, build_zip, export

__all__ = ["MANIFEST", "ExportError", "ImportProblem", "build_zip", "check_imports", "export"]
