"""Write a handler package from a function file: code generation from ``templates/``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from segfn_kit import __version__
from segfn_kit._settingsfile import SettingsFileError, settings_values
from segfn_kit.runtime import Function, FunctionLoadError, Settings
from segfn_kit.runtime._plan import PLAN_FILE
from segfn_kit.runtime._settings import mask_values

from ._cases import TEMPLATES, approved_cases, destination_cases, placeholder_failure, source_cases
from ._imports import ExportError, check_imports

__all__ = ["MANIFEST", "build_zip", "export"]

MANIFEST = "export.json"
RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
# sniffio: httpcore looks for it on every async request and, when it is missing, pays a
# failed import each time (recent anyio no longer brings it)
BASE_REQUIREMENTS = ("httpx>=0.27", "sniffio>=1.3")
PLAN_REQUIREMENT = "jsonschema>=4.18"  # what a shipped tracking plan needs (with referencing)

# template -> file in the package
_TEMPLATED = {
    "handler.py.jinja": "handler.py",
    "__main__.py.jinja": "__main__.py",
    "requirements.txt.jinja": "requirements.txt",
    "README.md.jinja": "README.md",
    "pytest.ini.jinja": "pytest.ini",
    "Makefile.jinja": "Makefile",
    "build_zip.py.jinja": "build_zip.py",
    "shim__init__.py.jinja": "segfn_kit/__init__.py",
    "tests/test_handler.py.jinja": "tests/test_handler.py",
}
_COPIED = {"tests/recorder.py": "tests/recorder.py"}


def template_environment(folder: Path = TEMPLATES) -> jinja2.Environment:
    """The Jinja environment every export renders its templates with: an undefined name is an
    error, trailing newlines are kept, and nothing is HTML-escaped.

    Example:
        >>> template_environment().from_string("{{ a }}\\n").render(a="<x>")
        '<x>\\n'
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Python, JavaScript, JSON, HCL, Markdown and INI, never HTML
    )


def _placeholder(name: str) -> str:
    return f"placeholder-{name}"


def _load_settings(settings: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    try:
        return settings_values(settings)
    except SettingsFileError as exc:
        raise ExportError(str(exc)) from None


def _load_function(
    function: str | os.PathLike[str] | Function, requirements: tuple[str, ...]
) -> tuple[str, str, Path | None, Function]:
    """(source text, file name, folder, loaded function); imports are checked before loading."""
    if isinstance(function, Function):
        path = Path(function.filename) if not function.filename.startswith("<") else None
        return function.source, path.name if path else "function.py", path.parent if path else None, function
    path = Path(function)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot read the function file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ExportError(f"the function file {path.name} is not UTF-8 text") from None
    problems = check_imports(source, requirements, near=path.parent)
    if problems:
        listed = "\n".join(f"  {path.name}, {p}" for p in problems)
        raise ExportError(f"{path.name} imports what an exported package cannot hold:\n{listed}")
    try:
        loaded = Function.from_file(path)
    except FunctionLoadError as exc:
        raise ExportError(f"cannot export {path.name}: {exc}") from None
    return source, path.name, path.parent, loaded


def _test_settings(
    fn: Function, values: Mapping[str, Any], test_secrets: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], frozenset[str]]:
    """Settings the generated tests use (secrets replaced by test secrets or placeholders), and
    the secret names."""
    secrets = fn.settings(values).secrets | {n for n, s in fn.declared_settings.items() if s.get("secret")}
    given = dict(test_secrets or {})
    secrets |= {n for n in given if n in fn.settings(given).secrets}
    for name, value in given.items():
        if name not in secrets:
            raise ExportError(
                f"test secret {name!r} is not a secret setting of the function; pass it in the settings "
                "instead (declared secrets: " + (", ".join(sorted(secrets)) or "none") + ")"
            )
        if not isinstance(value, str) or len(value) < 4:
            raise ExportError(f"test secret {name!r} must be a string of 4 or more characters")
        if name in values and values[name] == value:
            raise ExportError(
                f"the test secret given for {name!r} is its real value from the settings; a test secret is "
                "written into the package's tests/settings.json: use one made for testing"
            )
    out = {name: (given.get(name, _placeholder(name)) if name in secrets else value) for name, value in values.items()}
    for name in fn.missing_settings(values):
        if name not in secrets:
            raise ExportError(
                f"setting {name!r} is required by the function and has no value: pass it in the "
                "settings file (non-secret settings are written into the package's tests)"
            )
        out[name] = given.get(name, _placeholder(name))
    for name, value in given.items():
        out.setdefault(name, value)
    return dict(sorted(out.items())), secrets


def _dumps_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":"))


FUNCTION_FILE = "function.py"
"""The name of the function file inside a package."""
MAPPING_FUNCTION_FILE = "function.mapping.json"
"""The name of a mapping function file inside a package (``Function.from_file`` reads it by name)."""


def export(
    function: str | os.PathLike[str] | Function,
    out: str | os.PathLike[str],
    *,
    payloads: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    approved: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    requirements: Iterable[str] = (),
    lambda_zip: bool = False,
    progress: bool = False,
    plan: Any = None,
    test_secrets: Mapping[str, Any] | None = None,
) -> Path:
    """Write the handler package of a function file into the folder ``out``.

    The package runs where segfn_kit is not installed: the function file verbatim as
    ``function.py`` (a mapping file as ``function.mapping.json``), the runtime it imports, ``handler.py`` (AWS Lambda, ASGI, command
    line), ``requirements.txt``, a README, ``build_zip.py`` and ``tests/`` built from the
    previewed inputs and their expected outputs. Exporting the same inputs again, into any
    folder, writes the same bytes.

    Args:
        function: the function file (or a loaded ``runtime.Function``).
        out: the folder to write; it is replaced when it holds an earlier export, and must
            otherwise be empty or absent.
        payloads: payload files or folders (sources) or Segment event files (destinations)
            to run the function over for the tests, when there are no approved outputs.
        approved: approved outputs (``<stem>.approved.jsonl``); found next to the function
            file when not given.
        settings: setting values, or a JSON settings file. Secret settings are replaced by
            placeholders in the tests and never written into the package. When every case
            recorded with a placeholder fails (a signing secret the payloads were signed
            with, say), the export refuses: its tests would check no mapping.
        test_secrets: secret setting name -> a test value to record the cases with and to
            write into ``tests/settings.json`` (never the real one), for payloads signed
            with it (the bundled samples and ``segfn redact --resign`` use documented test
            secrets).
        requirements: extra requirement lines, for imports beyond the standard library,
            httpx and ``segfn_kit.runtime``.
        lambda_zip: also build ``dist/lambda.zip`` (downloads the requirements' wheels).
        progress: show a progress bar while the function runs over the payloads.
        plan: a tracking plan (anything ``segfn_kit.load_plan`` reads) to ship as
            ``plan.json`` (canonical Public API rules, so the handler needs no YAML); the
            handler holds every event against it (``SEGFN_PLAN_MODE`` report or block) and
            ``jsonschema`` joins the requirements.

    Returns:
        The package folder.

    Raises:
        ExportError: the function imports something the package cannot hold, cannot be
            loaded, lacks a required setting, or ``out`` holds something else.

    Example:
        >>> import tempfile
        >>> from segfn_kit.examples import example_path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> _ = (tmp / "created.json").write_text(json.dumps({"headers": {"Content-Type": "application/json"},
        ...     "body": {"type": "customer.created", "created": 1732608060,
        ...              "data": {"object": {"id": "cus_1", "email": "jo@example.com"}}}}))
        >>> package = export(example_path("stripe_source"), tmp / "stripe", payloads=[tmp / "created.json"])
        >>> sorted(p.name for p in package.iterdir())[:5]
        ['Makefile', 'README.md', '__main__.py', 'build_zip.py', 'export.json']
        >>> json.loads((package / "export.json").read_text())["cases"]
        1
    """
    extra = tuple(requirements)
    source, name, folder, fn = _load_function(function, extra)
    problems = check_imports(source, extra, near=folder)
    if problems:
        listed = "\n".join(f"  {name}, {p}" for p in problems)
        raise ExportError(f"{name} imports what an exported package cannot hold:\n{listed}")

    values = _load_settings(settings)
    test_settings, secrets = _test_settings(fn, values, test_secrets)
    secret_values = sorted(
        {str(v) for k, v in values.items() if k in secrets and isinstance(v, str) and len(v) >= 4},
        key=len, reverse=True,
    )
    run_settings = Settings(test_settings, secrets=secrets)

    approved_path = Path(approved) if approved is not None else (
        folder / f"{Path(name).stem}.approved.jsonl" if folder is not None else None
    )
    if approved is not None and approved_path is not None and not approved_path.is_file():
        raise ExportError(f"no approved outputs at {approved_path.name}")
    skipped: list[dict[str, str]] = []
    if approved_path is not None and approved_path.is_file():
        cases, skipped = approved_cases(approved_path, fn.kind)
    else:
        paths = [payloads] if isinstance(payloads, str | os.PathLike) else list(payloads or [])
        if not paths:
            raise ExportError(
                "no tests to generate: give the payloads the function was previewed on "
                "(--payloads) or approve its outputs first"
            )
        run = source_cases if fn.kind == "source" else destination_cases
        try:
            cases, skipped = run(fn, paths, run_settings, progress=progress)
        except FileNotFoundError as exc:
            raise ExportError(f"no such payload file or folder: {exc.filename or exc}") from None
        placeholders = {n: v for n, v in test_settings.items() if n in secrets and v == _placeholder(n)}
        real = {n: values[n] for n in placeholders if values.get(n) not in (None, "")}

        def rerun() -> list[dict[str, Any]]:
            return run(fn, paths, Settings({**test_settings, **real}, secrets=secrets))[0]

        refused = placeholder_failure(cases, placeholders, rerun if real else None)
        if refused is not None:
            raise ExportError(refused)
        for item in skipped:  # where the inputs live is no part of the package
            for given in paths:
                for form in (str(Path(given).resolve()), str(given)):
                    item["reason"] = item["reason"].replace(form, Path(given).name)
    if not cases:
        raise ExportError("the payloads given hold no payload to test the function with")
    plan_json: bytes | None = None
    if plan is not None:
        from segfn_kit._plan import load_plan
        from segfn_kit.runtime import PlanError

        try:
            checked = load_plan(plan)
        except PlanError as exc:
            raise ExportError(f"the tracking plan cannot be shipped: {exc}") from None
        if fn.kind != "source":
            raise ExportError("a tracking plan checks what a source function emits; this is a destination function")
        plan_json = (json.dumps(checked.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        extra = (*extra, PLAN_REQUIREMENT)

    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    provenance = (
        f"Generated by segfn_kit {__version__} from {name} (sha256 {digest[:16]}).\n"
        "Do not edit: change the function file and export again."
    )
    declared = fn.declared_settings
    setting_names = sorted(set(declared) | set(values))
    settings_table = ", ".join(
        f"`{n}`" + (" (secret)" if n in secrets else "") + (" (required)" if declared.get(n, {}).get("required") else "")
        for n in setting_names
    ) or "none"
    example = {n: (f"<{n}>" if n in secrets else test_settings.get(n, "...")) for n in setting_names}
    function_file = FUNCTION_FILE if fn.mapping is None else MAPPING_FUNCTION_FILE
    context = {
        "function_file": function_file,
        "provenance": provenance,
        "provenance_comment": "\n".join(f"# {line}" for line in provenance.splitlines()),
        "source_name": name,
        "kit_version": __version__,
        "kind": fn.kind,
        "package_name": Path(name).stem.replace("_", "-"),
        "requirements": sorted(set(BASE_REQUIREMENTS) | set(extra)),
        "cases": len(cases),
        "delivers": any(c["outcome"] == "ok" and (c["events"] or c["objects"]) for c in cases),
        "settings_table": settings_table,
        "settings_example": json.dumps(example, ensure_ascii=False),
        "plan_rules": len(json.loads(plan_json)["rules"]) if plan_json else 0,
    }

    files: dict[str, bytes] = {function_file: source.encode("utf-8")}
    if plan_json is not None:
        files[PLAN_FILE] = plan_json
    env = template_environment()
    for template, target in _TEMPLATED.items():
        files[target] = env.get_template(template).render(context).encode("utf-8")
    for template, target in _COPIED.items():
        files[target] = (TEMPLATES / template).read_bytes()
    for path in sorted(RUNTIME.glob("*.py")):
        files[f"segfn_kit/runtime/{path.name}"] = path.read_bytes()
    files["segfn_kit/runtime/py.typed"] = b""

    for case in cases:
        case.pop("_error", None)
    # masked value by value before encoding (a secret holding '"' or '\\' is escaped in JSON
    # text, where a text replace would miss it); a secret a payload happens to carry stays out too
    cases_text = "".join(_dumps_line(c) + "\n" for c in mask_values(cases, secret_values))
    settings_text = json.dumps(test_settings, ensure_ascii=False, indent=2) + "\n"
    files["tests/cases.jsonl"] = cases_text.encode("utf-8")
    files["tests/settings.json"] = settings_text.encode("utf-8")
    manifest = {
        "source": name,
        "sha256": digest,
        "kind": fn.kind,
        "kit_version": __version__,
        "handlers": sorted(fn.handlers),
        "settings": {n: {"secret": n in secrets, "required": bool(declared.get(n, {}).get("required"))}
                     for n in setting_names},
        "requirements": context["requirements"],
        "cases": len(cases),
        "skipped": skipped,
    }
    if plan_json is not None:
        manifest["plan"] = {"file": PLAN_FILE, "rules": context["plan_rules"]}
    files[MANIFEST] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    leak_forms = {form for secret in secret_values
                  for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])}
    for target, content in files.items():
        for secret in leak_forms:
            if secret.encode("utf-8", "surrogatepass") in content:
                where = "the function file itself" if target == function_file else target
                raise ExportError(
                    f"the value of a secret setting appears in {where}; read it from settings "
                    "instead of writing it in the file"
                )

    root = _prepare_out(Path(out))
    for target in sorted(files):
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[target])
    if lambda_zip:
        build_zip(root)
    return root


def _prepare_out(out: Path) -> Path:
    """Empty ``out`` if it holds an earlier export; refuse to touch anything else."""
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a folder")
        entries = [p for p in out.iterdir()]
        if entries and not (out / MANIFEST).is_file():
            raise ExportError(f"{out} is not empty and holds no earlier export; choose another --out")
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_zip(
    package: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    platform: str = "manylinux2014_x86_64",
    python_version: str | None = None,
    run: Callable[..., Any] = subprocess.run,
) -> Path:
    """Build the AWS Lambda zip of an exported package (its ``build_zip.py``), httpx vendored.

    Args:
        package: the exported package folder.
        out: the zip to write; default ``<package>/dist/lambda.zip``.
        platform: wheel platform of the Lambda runtime.
        python_version: Python version of the Lambda runtime (default: this interpreter's).

    Returns:
        The zip's path.
    """
    root = Path(package)
    target = Path(out) if out is not None else root / "dist" / "lambda.zip"
    command = [sys.executable, str(root / "build_zip.py"), "--out", str(target.resolve()), "--platform", platform]
    if python_version:
        command += ["--python-version", python_version]
    env = dict(os.environ)
    if "UV" not in env and shutil.which("uv") is None:
        for candidate in (Path.cwd() / ".tools" / "bin" / "uv", Path(sys.prefix).parent / ".tools" / "bin" / "uv"):
            if candidate.is_file():
                env["UV"] = str(candidate)
                break
    result = run(command, cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"building the Lambda zip failed:\n{result.stderr.strip()[-2000:]}")
    return target
