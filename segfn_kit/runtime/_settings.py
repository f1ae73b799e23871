"""Function settings: a read-only mapping, and which of them are secret.

A function file declares its settings at module level, as a literal the tools can read
without running the file::

    SETTINGS = {
        "subdomain": {"type": "string", "required": True},
        "apiToken": {"type": "string", "required": True, "secret": True},
    }

``SECRET_SETTINGS = ["apiToken"]`` is a shorter way to name only the secret ones. Setting
names that look like credentials (``apiKey``, ``token``, ``password``, ``secret``...) are
treated as secret whether declared or not, so a forgotten declaration fails safe.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["MASK", "Settings", "declared_settings", "mask_text", "secret_names"]

MASK = "••••••"

_SECRETISH = re.compile(
    r"(secret|token|passw|api_?key|write_?key|private|credential|auth|signing)", re.IGNORECASE
)


def declared_settings(source: str) -> dict[str, dict[str, Any]]:
    """Read the ``SETTINGS`` / ``SECRET_SETTINGS`` declarations of a function file's text.

    The file is parsed, never run, so this works even when the file does not import.

    Example:
        >>> declared_settings('SETTINGS = {"apiToken": {"secret": True}}')
        {'apiToken': {'secret': True}}
        >>> declared_settings('SECRET_SETTINGS = ["key"]')
        {'key': {'secret': True}}
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if "SETTINGS" in names and isinstance(literal, dict):
            for name, spec in literal.items():
                found.setdefault(str(name), {}).update(spec if isinstance(spec, dict) else {})
        if "SECRET_SETTINGS" in names and isinstance(literal, list | tuple | set | frozenset):
            for name in literal:
                found.setdefault(str(name), {})["secret"] = True
    return found


def secret_names(names: Iterable[str], declared: Mapping[str, Mapping[str, Any]] | None = None) -> frozenset[str]:
    """The setting names to mask: declared secret, or named like a credential.

    Example:
        >>> sorted(secret_names(["subdomain", "apiToken"]))
        ['apiToken']
    """
    declared = declared or {}
    out = {n for n, spec in declared.items() if spec.get("secret")}
    out.update(n for n in names if _SECRETISH.search(n))
    return frozenset(out)


class Settings(Mapping[str, Any]):
    """Read-only settings, by key (``settings["apiKey"]``) or attribute (``settings.apiKey``).

    Secret values never show in ``repr`` or ``masked()``.

    Example:
        >>> s = Settings({"subdomain": "acme", "apiToken": "t0k3n"}, secrets={"apiToken"})
        >>> s.subdomain, s["apiToken"]
        ('acme', 't0k3n')
        >>> s
        Settings({'subdomain': 'acme', 'apiToken': '••••••'})
    """

    __slots__ = ("_secrets", "_values")

    def __init__(self, values: Mapping[str, Any] | None = None, *, secrets: Iterable[str] = ()):
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_secrets", secret_names(self._values, {n: {"secret": True} for n in secrets}))

    @property
    def secrets(self) -> frozenset[str]:
        """The names of the settings that are masked everywhere."""
        return self._secrets  # type: ignore[no-any-return]

    def secret_values(self) -> list[str]:
        """The secret values themselves (strings of 4+ characters), for masking text."""
        values: list[str] = []
        for name in self._secrets:
            value = self._values.get(name)
            if isinstance(value, str) and len(value) >= 4:
                values.append(value)
        return values

    def masked(self) -> dict[str, Any]:
        """A plain dict with every secret value replaced by a mask."""
        return {k: (MASK if k in self._secrets else v) for k, v in self._values.items()}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            raise KeyError(f"no setting {name!r} (settings given: {known})") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            raise AttributeError(f"no setting {name!r} (settings given: {known})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("settings are read-only")

    def __setitem__(self, name: str, value: Any) -> None:
        raise TypeError("settings are read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self.masked()!r})"


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` by a mask.

    Example:
        >>> mask_text("token t0k3n refused", ["t0k3n"])
        'token •••••• refused'
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
