"""Function settings: a deeply read-only mapping, and which of them are secret.

Settings are the same for every payload of a run, so nothing a function does may change them:
lists and objects inside them are read-only too (``ReadOnlyList``, ``ReadOnlyDict``, still a
``list`` and a ``dict`` to ``isinstance`` and to ``json``), and a change raises
``SettingsReadOnlyError`` naming the setting and how to work on a copy.

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
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "MASK",
    "ReadOnlyDict",
    "ReadOnlyList",
    "Settings",
    "SettingsReadOnlyError",
    "declared_settings",
    "mask_text",
    "mask_values",
    "secret_names",
]

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


class SettingsReadOnlyError(TypeError):
    """A function tried to change its settings (they are the same for every payload).

    Attributes:
        setting: where, as code would write it (``settings['tags']``, ``settings['map']['a']``).

    Example:
        >>> s = Settings({"tags": ["a"]})
        >>> s["tags"].append("b")
        Traceback (most recent call last):
        ...
        segfn_kit.runtime._settings.SettingsReadOnlyError: settings['tags'] is read-only (append): settings are the same for every payload; work on a copy: list(settings['tags'])
    """

    def __init__(self, setting: str, action: str, copy_hint: str | None = None):
        hint = f"; work on a copy: {copy_hint}" if copy_hint else ""
        super().__init__(f"{setting} is read-only ({action}): settings are the same for every payload{hint}")
        self.setting = setting


def _freeze(value: Any, where: str) -> Any:
    """``value`` with its lists and dicts (at any depth) made read-only; other values as they are."""
    if isinstance(value, ReadOnlyList | ReadOnlyDict):
        return value
    if isinstance(value, list):
        return ReadOnlyList((_freeze(v, f"{where}[{i}]") for i, v in enumerate(value)), where=where)
    if isinstance(value, dict):
        return ReadOnlyDict({k: _freeze(v, f"{where}[{k!r}]") for k, v in value.items()}, where=where)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, set):
        return frozenset(value)
    return value


def _thaw(value: Any) -> Any:
    """A plain, mutable deep copy of a frozen value."""
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_thaw(v) for v in value)
    return value


class ReadOnlyList(list[Any]):
    """A list inside settings: reads as a list, refuses changes with the setting's name.

    ``copy.copy``/``copy.deepcopy``/``list(x)`` give a plain list to change.

    Example:
        >>> tags = ReadOnlyList(["a", "b"], where="settings['tags']")
        >>> isinstance(tags, list), tags + ["c"], list(tags)
        (True, ['a', 'b', 'c'], ['a', 'b'])
    """

    __slots__ = ("_where",)

    def __init__(self, items: Iterable[Any] = (), *, where: str = "a setting"):
        super().__init__(items)
        self._where = where

    def _refuse(self, action: str) -> SettingsReadOnlyError:
        return SettingsReadOnlyError(self._where, action, f"list({self._where})")

    def append(self, value: Any) -> None:
        raise self._refuse("append")

    def extend(self, values: Iterable[Any]) -> None:
        raise self._refuse("extend")

    def insert(self, index: Any, value: Any) -> None:
        raise self._refuse("insert")

    def pop(self, index: Any = -1) -> Any:
        raise self._refuse("pop")

    def remove(self, value: Any) -> None:
        raise self._refuse("remove")

    def clear(self) -> None:
        raise self._refuse("clear")

    def sort(self, *args: Any, **kwargs: Any) -> None:
        raise self._refuse("sort; sorted() gives a sorted copy")

    def reverse(self) -> None:
        raise self._refuse("reverse")

    def __setitem__(self, index: Any, value: Any) -> None:
        raise self._refuse("item assignment")

    def __delitem__(self, index: Any) -> None:
        raise self._refuse("del")

    def __iadd__(self, values: Iterable[Any]) -> ReadOnlyList:  # type: ignore[misc]
        raise self._refuse("+=")

    def __imul__(self, n: Any) -> ReadOnlyList:  # type: ignore[misc]
        raise self._refuse("*=")

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return _thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_list, (list(self), self._where))


class ReadOnlyDict(dict[Any, Any]):
    """An object inside settings: reads as a dict, refuses changes with the setting's name.

    ``copy.copy``/``copy.deepcopy``/``dict(x)`` give a plain dict to change.

    Example:
        >>> m = ReadOnlyDict({"a": 1}, where="settings['map']")
        >>> isinstance(m, dict), m | {"b": 2}, m.get("a")
        (True, {'a': 1, 'b': 2}, 1)
    """

    __slots__ = ("_where",)

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = (), *, where: str = "a setting"):
        super().__init__(items)
        self._where = where

    def _refuse(self, action: str) -> SettingsReadOnlyError:
        return SettingsReadOnlyError(self._where, action, f"dict({self._where})")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._refuse(f"setting key {key!r}")

    def __delitem__(self, key: Any) -> None:
        raise self._refuse(f"del key {key!r}")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise self._refuse("update")

    def pop(self, key: Any, *default: Any) -> Any:
        raise self._refuse("pop")

    def popitem(self) -> tuple[Any, Any]:
        raise self._refuse("popitem")

    def clear(self) -> None:
        raise self._refuse("clear")

    def setdefault(self, key: Any, default: Any = None) -> Any:
        raise self._refuse("setdefault")

    def __ior__(self, other: Any) -> ReadOnlyDict:  # type: ignore[misc]
        raise self._refuse("|=")

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return _thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dict, (dict(self), self._where))


def _rebuild_list(items: list[Any], where: str) -> ReadOnlyList:
    return ReadOnlyList(items, where=where)


def _rebuild_dict(items: dict[Any, Any], where: str) -> ReadOnlyDict:
    return ReadOnlyDict(items, where=where)


def _rebuild_settings(values: dict[str, Any], secrets: frozenset[str]) -> Settings:
    return Settings(values, secrets=secrets)


class Settings(Mapping[str, Any]):
    """Read-only settings, by key (``settings["apiKey"]``) or attribute (``settings.apiKey``).

    Deeply read-only: lists and objects inside are ``ReadOnlyList`` / ``ReadOnlyDict``, and
    any change raises ``SettingsReadOnlyError`` naming the setting. Secret values never show
    in ``repr`` or ``masked()``.

    Example:
        >>> s = Settings({"subdomain": "acme", "apiToken": "t0k3n"}, secrets={"apiToken"})
        >>> s.subdomain, s["apiToken"]
        ('acme', 't0k3n')
        >>> s
        Settings({'subdomain': 'acme', 'apiToken': '••••••'})
    """

    __slots__ = ("_secrets", "_values")

    def __init__(self, values: Mapping[str, Any] | None = None, *, secrets: Iterable[str] = ()):
        object.__setattr__(self, "_values", {k: _freeze(v, f"settings[{k!r}]") for k, v in dict(values or {}).items()})
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

    # Mapping's get and ``in`` go through __getitem__, whose KeyError names every setting:
    # dear for the common ``settings.get("optional")`` of a setting that was not given
    def get(self, name: str, default: Any = None) -> Any:
        """The setting's value, or ``default`` when it was not given."""
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            raise AttributeError(f"no setting {name!r} (settings given: {known})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise SettingsReadOnlyError(f"settings.{name}", "assignment")

    def __setitem__(self, name: str, value: Any) -> None:
        raise SettingsReadOnlyError(f"settings[{name!r}]", "assignment")

    def __delitem__(self, name: str) -> None:
        raise SettingsReadOnlyError(f"settings[{name!r}]", "del")

    def __delattr__(self, name: str) -> None:
        raise SettingsReadOnlyError(f"settings.{name}", "del")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_settings, (self._values, self._secrets))

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self.masked()!r})"


def _secret_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret (4+ characters) and its JSON-escaped forms (a ``"`` or ``\\`` in a secret
    is ``\\"`` or ``\\\\`` in JSON text), longest first, so a masked text keeps no part of one."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        forms.add(secret)
        for ascii_only in (True, False):
            forms.add(json.dumps(secret, ensure_ascii=ascii_only)[1:-1])
    return sorted(forms, key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` by a mask, as written or as
    JSON writes it (escaped quotes and backslashes, ``\\uXXXX``).

    Example:
        >>> mask_text("token t0k3n refused", ["t0k3n"])
        'token •••••• refused'
        >>> import json
        >>> mask_text(json.dumps({"key": 'ab"cd'}), ['ab"cd'])
        '{"key": "••••••"}'
    """
    for form in _secret_forms(secrets):
        text = text.replace(form, MASK)
    return text


def mask_values(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, keys too) with every secret masked in
    each string, before any encoding: what is written afterwards, escaped or not, holds none.

    Example:
        >>> mask_values({"auth": 'Bearer ab"cd', "n": [1, 'ab"cd']}, ['ab"cd'])
        {'auth': 'Bearer ••••••', 'n': [1, '••••••']}
    """
    forms = _secret_forms(secrets)
    if not forms:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for form in forms:
                if form in item:
                    item = item.replace(form, MASK)
            return item
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)
