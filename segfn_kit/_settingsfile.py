"""Settings files: a flat JSON object of setting names to values (``--settings FILE``).

Light on purpose (standard library only): ``segfn replay`` and the export read settings
without importing pandas.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segfn_kit._errors import SettingsFileError

__all__ = ["SettingsFileError", "read_settings", "settings_values"]


def settings_values(settings: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """Setting values given as a mapping, a settings file's path, or nothing.

    Raises:
        SettingsFileError: as ``read_settings``.

    Example:
        >>> settings_values({"subdomain": "acme"}), settings_values(None)
        ({'subdomain': 'acme'}, {})
    """
    if settings is None:
        return {}
    if isinstance(settings, Mapping):
        return dict(settings)
    return read_settings(settings)


def read_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a settings file: a flat JSON object of setting names to values.

    Raises:
        SettingsFileError: the file is unreadable, not JSON, or not a flat object; the
            message names the file and the fix (it never shows a value).

    Example:
        >>> import json, tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        ...     json.dump({"apiKey": "k"}, f)
        >>> read_settings(f.name)
        {'apiKey': 'k'}
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsFileError(f"settings file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsFileError(f"cannot read settings file {p}: {exc}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsFileError(
            f"settings file {p} is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f'{exc.colno}); write a flat object such as {{"apiKey": "...", "subdomain": "acme"}}'
        ) from None
    if not isinstance(values, dict):
        raise SettingsFileError(
            f"settings file {p} holds a JSON {type(values).__name__}; write a flat object of "
            'setting names to values, such as {"apiKey": "...", "subdomain": "acme"}'
        )
    nested = [k for k, v in values.items() if isinstance(v, dict) and not _is_string_map(v)]
    if nested:
        raise SettingsFileError(
            f"settings file {p}: {', '.join(nested)} hold nested objects; settings are flat "
            "(a value is a string, number, boolean, list of strings or map of strings)"
        )
    return values


def _is_string_map(value: dict[str, Any]) -> bool:
    return all(isinstance(v, str) for v in value.values())
