"""Redaction of personal data and secrets, so captured samples can be committed.

What is replaced, and with what (``n`` counts distinct originals within one ``Redactor``,
so the same email becomes the same placeholder in every file and every row):

============ ================================================ ===========================
kind         found                                            placeholder
============ ================================================ ===========================
email        any string, anywhere in text                     ``person{n}@example.com``
phone        phone-like keys (text or integer values); ``+``  ``+1555000{nnnn}`` (an int
             and 8 to 15 digits, or ``(415) 555-0134`` /      for integer values)
             ``415-555-0134`` shapes in text
name         person-name keys (``first_name``, ``name`` in a  ``Person {n}``
             customer/user/requester object or beside an
             email), ``John Smith <john@x.com>`` in text
card         13 to 19 digits passing the Luhn check (card     ``<card-{n}>``
             keys, 4-4-4-4 groups or 15/16-digit runs
             starting 3 to 6 in text)
iban         IBANs (mod-97 checked): ``iban`` keys, text      ``<iban-{n}>``
ip           IPv4 and IPv6 addresses anywhere in text,        ``192.0.2.{n}`` /
             ``X-Forwarded-For``, ``ip`` fields               ``2001:db8::{n}``
secret       secret-like keys (``token``, ``password``,       ``<secret-{n}>``
             ``api_key``...), known token shapes (``sk_live_``,
             ``whsec_``, ``ghp_``, JWTs, ``Bearer ...``), URL
             query parameters with such names (``?api_key=``)
header       Authorization, Cookie, API keys, signatures,     ``<secret-{n}>``
             HAR ``cookies`` values
============ ================================================ ===========================

With ``resign=True`` the signature headers of Stripe, GitHub, Shopify and Zendesk are not
placeholders but signatures of the redacted body made with the documented test secret
``TEST_SECRET`` (``whsec_test_segfn_kit_documented_secret``), keeping the original timestamp,
so a function that checks signatures still runs on the redacted samples (configure it with
that secret). The IP placeholders are in the documentation ranges (RFC 5737, RFC 3849).

With ``key=...`` placeholders are keyed HMACs of the original instead of counters, stable
across separate runs (``person-3f9a1c2e@example.com``). The report lists where each
replacement was made and the placeholder, never the original value.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TEST_SECRET", "Redactor", "redact"]

# the documented test signing secret redacted samples are re-signed with (not a credential)
TEST_SECRET = "whsec_test_segfn_kit_documented_secret"
# signature header (lower case) -> scheme, for resign=True
SIGNATURE_HEADERS = {
    "stripe-signature": "stripe",
    "x-hub-signature-256": "github",
    "x-shopify-hmac-sha256": "shopify",
    "x-zendesk-webhook-signature": "zendesk",
}

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE_E164 = re.compile(r"^\+[1-9][0-9 ().-]{7,18}[0-9]$")
PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+[1-9][0-9 ().-]{7,18}[0-9](?!\w)")
CARD_GROUPED = re.compile(r"(?<!\d)\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}(?!\d)")
CARD_PLAIN = re.compile(r"^\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}$")
CARD_RUN = re.compile(r"(?<![\w.-])[3-6]\d{12,18}(?![\w.-])")
PHONE_PLAIN = re.compile(r"(?<![\w+.-])(?:\(\d{3}\)[ ]?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"
)
IPV6_CANDIDATE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
URL_PARAM = re.compile(r"([?&;])([^=&#\s?;]+)=([^&#\s;]*)")
NAME_BEFORE_EMAIL = re.compile(
    r"(?P<q>\"?)(?P<name>[A-Z][\w'.-]*(?:[ \t]+[A-Z][\w'.-]*){0,3})(?P=q)[ \t]*<(?P<email>[^<>@\s]+@[^<>\s]+)>"
)
TOKENS = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"  # Stripe keys
    r"|\bwhsec_[A-Za-z0-9+/=]{8,}"  # Stripe webhook secrets
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
)

SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|secret|password|passwd|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|credential|credentials|auth|authorization|signature|cookie|session[_-]?id|"
    r"otp|pin|cvc|cvv|ssn)($|[_\-.])|(Token|Secret|Password|ApiKey|Signature)$",
    re.IGNORECASE,
)
PHONE_KEY = re.compile(
    r"(^|[_\-.])(phone|mobile|cell|tel|telephone|fax|msisdn)($|[_\-.]|_?number)", re.I
)
NAME_KEY = re.compile(
    r"^(first|last|full|given|family|middle|display|sur|nick|maiden|contact|customer|"
    r"cardholder|account_holder|billing|shipping|recipient|sender|author|user|requester|"
    r"assignee|submitter|owner)_?name$|^(firstName|lastName|fullName|givenName|familyName|"
    r"displayName|surname|nickname)$",
    re.IGNORECASE,
)
# objects whose plain "name" is a person's (not a product's, plan's or repository's)
PERSON_PARENTS = re.compile(
    r"^(customer|user|requester|submitter|assignee|author|sender|recipient|owner|contact|person|"
    r"billing_details|shipping|billing_address|shipping_address|cardholder|individual|"
    r"employee|member|agent|commenter|from|to|reply_to|customer_details|buyer|payer|profile)$",
    re.IGNORECASE,
)
IP_KEY = re.compile(
    r"^(ip|ips|ip_?address|ip_?addr|ipv4|ipv6|client_?ip|remote_?(addr|address|ip)|user_?ip|"
    r"source_?ip|origin_?ip|x-forwarded-for|x-real-ip|true-client-ip|cf-connecting-ip|"
    r"x-client-ip|forwarded|x-originating-ip)$|(^|[_\-.])ip($|[_\-.])|[a-z]Ip$|IpAddress$",
    re.IGNORECASE,
)
IBAN_KEY = re.compile(r"(^|[_\-.])iban($|[_\-.])", re.I)
CARD_KEY = re.compile(
    r"(^|[_\-.])(card|pan|cc|card_?number|number|account_?number)($|[_\-.])", re.I
)

SENSITIVE_HEADERS = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|apikey|x-auth-token|"
    r"x-access-token|x-csrf-token|x-xsrf-token)$"
    r"|signature|hmac|token|secret|api-key|apikey|-sig$|transmission-sig",
    re.IGNORECASE,
)
# secret-looking names that hold a status, not a secret (Stripe's cvc_check: "pass")
NOT_SECRET_KEY = re.compile(
    r"(_check|_level|_status|_type|_enabled|_required|_count|_present|_at|_url|_method)$", re.I
)
MAX_DEPTH = 200
PLACEHOLDER = re.compile(
    r"^(person(-[0-9a-f]{8}|\d+)@example\.com|\+?1555000\d{4}|Person ([0-9a-f]{8}|\d+)|"
    r"<(secret|card|iban)-([0-9a-f]{8}|\d+)>|(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+|"
    r"2001:db8::[0-9a-f]+)$"
)
_IP_BLOCKS = ("192.0.2", "198.51.100", "203.0.113")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (as card numbers do).

    Example:
        >>> luhn_valid("4242424242424242"), luhn_valid("4242424242424241")
        (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether a string is an IBAN with a valid mod-97 check.

    Example:
        >>> iban_valid("GB82 WEST 1234 5698 7654 32"), iban_valid("GB82 WEST 1234 5698 7654 33")
        (True, False)
    """
    compact = text.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34) or not compact.isalnum():
        return False
    digits = "".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _card_digits(text: str) -> str | None:
    digits = re.sub(r"[ -]", "", text)
    if 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits):
        return digits
    return None


@dataclass
class Redactor:
    """Replaces personal data and secrets with placeholders, the same ones everywhere.

    Keep one ``Redactor`` for a whole set of files so that an email gets the same
    placeholder in all of them.

    Args:
        key: when given, placeholders are keyed HMACs (stable across runs); else counters.
        resign: re-sign Stripe, GitHub, Shopify and Zendesk signature headers over the
            redacted body with ``TEST_SECRET`` (instead of placeholders).

    Example:
        >>> r = Redactor()
        >>> r.value({"email": "jane@corp.com", "note": "cc jane@corp.com"})
        {'email': 'person1@example.com', 'note': 'cc person1@example.com'}
        >>> r.replacements[0]["kind"], r.replacements[0]["location"]
        ('email', 'email')
    """

    key: bytes | None = None
    resign: bool = False
    replacements: list[dict[str, Any]] = field(default_factory=list)
    _placeholders: dict[tuple[str, str], str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    source: str = ""

    # placeholders ------------------------------------------------------------
    def placeholder(self, kind: str, original: str, location: str) -> str:
        if PLACEHOLDER.match(original.strip()):  # already redacted: redacting is idempotent
            return original
        normal = original.strip().lower() if kind in ("email", "name") else original.strip()
        if kind == "phone" or kind == "card":
            normal = re.sub(r"\D", "", normal)
        elif kind == "iban":
            normal = normal.replace(" ", "").upper()
        elif kind == "ip":
            normal = str(ipaddress.ip_address(normal))
        found = self._placeholders.get((kind, normal))
        if found is None:
            found = self._make(kind, normal)
            self._placeholders[(kind, normal)] = found
        self.replacements.append(
            {"source": self.source, "location": location, "kind": kind, "placeholder": found}
        )
        return found

    def _make(self, kind: str, normal: str) -> str:
        if self.key is not None:
            tag = hmac.new(self.key, f"{kind}:{normal}".encode(), hashlib.sha256).hexdigest()[:8]
            n_text, digits = tag, str(int(tag, 16) % 10_000).zfill(4)
        else:
            count = self._counts.get(kind, 0) + 1
            self._counts[kind] = count
            n_text, digits = str(count), str(count % 10_000).zfill(4)
        if kind == "email":
            return f"person{'-' if self.key else ''}{n_text}@example.com"
        if kind == "phone":
            return f"+1555000{digits}"
        if kind == "name":
            return f"Person {n_text}"
        if kind == "ip":
            n = int(n_text, 16) if self.key is not None else int(n_text)
            if ":" in normal:
                return f"2001:db8::{n:x}"
            return f"{_IP_BLOCKS[(n - 1) // 254 % 3]}.{(n - 1) % 254 + 1}"
        return f"<{kind}-{n_text}>"

    # text --------------------------------------------------------------------
    def text(self, value: str, location: str) -> str:
        """Personal data and secrets inside free text.

        Emails (and the name before one, as in ``John Smith <john@x.com>``), tokens, secret URL
        query parameters, card numbers, IBANs, phone numbers and IP addresses.
        """
        if "@" in value:
            if "<" in value:
                value = NAME_BEFORE_EMAIL.sub(lambda m: self._named_email(m, location), value)
            value = EMAIL.sub(lambda m: self.placeholder("email", m.group(0), location), value)
        value = TOKENS.sub(lambda m: self._token(m.group(0), location), value)
        if "=" in value:
            value = URL_PARAM.sub(lambda m: self._url_param(m, location), value)
        if any(ch.isdigit() for ch in value):
            value = CARD_GROUPED.sub(lambda m: self._card(m.group(0), location), value)
            value = CARD_RUN.sub(lambda m: self._card(m.group(0), location), value)
            if "+" in value:
                value = PHONE_IN_TEXT.sub(lambda m: self._phone(m.group(0), location), value)
            value = PHONE_PLAIN.sub(lambda m: self._phone(m.group(0), location), value)
            if "." in value:
                value = IPV4.sub(lambda m: self._ip(m.group(0), location), value)
            if value.count(":") >= 2:
                value = IPV6_CANDIDATE.sub(lambda m: self._ip(m.group(0), location), value)
            if not value.islower():
                value = IBAN.sub(lambda m: self._iban(m.group(0), location), value)
        return value

    def _named_email(self, m: re.Match[str], location: str) -> str:
        name = self.placeholder("name", m.group("name"), location)
        quote = m.group("q")
        return f"{quote}{name}{quote} <{m.group('email')}>"

    def _url_param(self, m: re.Match[str], location: str) -> str:
        name, val = m.group(2), m.group(3)
        template = val.startswith(("{", "%7B", "%7b"))  # {CHECKOUT_SESSION_ID}: filled in later
        if val and not template and SECRET_KEY.search(name) and not NOT_SECRET_KEY.search(name):
            return f"{m.group(1)}{name}={self.placeholder('secret', val, location)}"
        return m.group(0)

    def _ip(self, found: str, location: str) -> str:
        if not _is_ip(found) or found.count(":") == 1:
            return found
        return self.placeholder("ip", found, location)

    def _iban(self, found: str, location: str) -> str:
        return self.placeholder("iban", found, location) if iban_valid(found) else found

    def _token(self, found: str, location: str) -> str:
        if found.lower().startswith("bearer"):
            return "Bearer " + self.placeholder("secret", found.split(None, 1)[1], location)
        return self.placeholder("secret", found, location)

    def _card(self, found: str, location: str) -> str:
        return self.placeholder("card", found, location) if _card_digits(found) else found

    def _phone(self, found: str, location: str) -> str:
        digits = re.sub(r"\D", "", found)
        return self.placeholder("phone", found, location) if 8 <= len(digits) <= 15 else found

    # values ------------------------------------------------------------------
    def value(self, value: Any, location: str = "", parent: str = "", depth: int = 0) -> Any:
        """A redacted copy of a JSON value (the original is not changed)."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            if _is_header_list_item(value):
                return self._header_item(value, location)
            key_name = location.rsplit(".", 1)[-1]
            person = bool(PERSON_PARENTS.match(key_name)) or _looks_like_person(value)
            out: dict[str, Any] = {}
            for k, v in value.items():
                where = f"{location}.{k}" if location else str(k)
                if str(k).lower() == "headers" and isinstance(v, dict | list):
                    out[k] = self.headers(v, where)
                    continue
                if str(k).lower() == "cookies" and isinstance(v, list):  # HAR cookies
                    out[k] = [self._cookie(item, where) for item in v]
                    continue
                out[k] = self._field(str(k), v, where, person, depth)
            return out
        if isinstance(value, list):
            return [self.value(v, f"{location}[]", parent, depth + 1) for v in value]
        if isinstance(value, str):
            return self.text(value, location)
        return value

    def _field(self, key: str, value: Any, where: str, person: bool, depth: int) -> Any:
        if isinstance(value, str) and value:
            if SECRET_KEY.search(key) and not NOT_SECRET_KEY.search(key):
                return self.placeholder("secret", value, where)
            if PHONE_KEY.search(key) and sum(ch.isdigit() for ch in value) >= 6:
                return self.placeholder("phone", value, where)
            if NAME_KEY.match(key) or (person and key.lower() in ("name", "first", "last")):
                return self.placeholder("name", value, where)
            if CARD_KEY.search(key) and CARD_PLAIN.match(value) and _card_digits(value):
                return self.placeholder("card", value, where)
            if IBAN_KEY.search(key) and iban_valid(value):
                return self.placeholder("iban", value, where)
            if IP_KEY.search(key):
                return self._ips(value, where)
            if PHONE_E164.match(value) and 8 <= sum(ch.isdigit() for ch in value) <= 15:
                return self.placeholder("phone", value, where)
            if CARD_PLAIN.match(value) and ("-" in value or " " in value) and _card_digits(value):
                return self.placeholder("card", value, where)
            return self.text(value, where)
        if isinstance(value, int) and not isinstance(value, bool) and SECRET_KEY.search(key):
            return self.placeholder("secret", str(value), where)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and PHONE_KEY.search(key)
            and 6 <= len(str(abs(value))) <= 15
        ):
            return int(self.placeholder("phone", str(value), where).lstrip("+"))
        return self.value(value, where, key, depth + 1)

    def _ips(self, value: str, where: str) -> str:
        """Every IP address in a value of an IP field or header (``X-Forwarded-For``)."""
        value = IPV4.sub(lambda m: self._ip(m.group(0), where), value)
        if value.count(":") >= 2:
            value = IPV6_CANDIDATE.sub(lambda m: self._ip(m.group(0), where), value)
        return self.text(value, where)

    def headers(self, headers: Any, location: str = "headers") -> Any:
        """A redacted copy of headers: a mapping, pairs, or HAR's ``[{name, value}]``."""
        if isinstance(headers, Mapping):
            return {k: self._header(str(k), v, f"{location}.{k}") for k, v in headers.items()}
        if isinstance(headers, list):
            out: list[Any] = []
            for item in headers:
                if _is_header_list_item(item):
                    out.append(self._header_item(item, location))
                elif isinstance(item, list | tuple) and len(item) == 2:
                    out.append(
                        [item[0], self._header(str(item[0]), item[1], f"{location}.{item[0]}")]
                    )
                else:
                    out.append(self.value(item, location))
            return out
        return headers

    def _cookie(self, item: Any, location: str) -> Any:
        if isinstance(item, dict) and isinstance(item.get("value"), str) and item["value"]:
            name = str(item.get("name", ""))
            return {
                **item,
                "value": self.placeholder("secret", item["value"], f"{location}.{name}"),
            }
        return self.value(item, location)

    def _header_item(self, item: dict[str, Any], location: str) -> dict[str, Any]:
        name = str(item.get("name", ""))
        return {**item, "value": self._header(name, item.get("value"), f"{location}.{name}")}

    def _header(self, name: str, value: Any, where: str) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if SENSITIVE_HEADERS.search(name) or (
            SECRET_KEY.search(name) and not NOT_SECRET_KEY.search(name)
        ):
            if value.lower().startswith(("bearer ", "basic ", "token ")):
                scheme, _, rest = value.partition(" ")
                return f"{scheme} {self.placeholder('secret', rest, where)}"
            return self.placeholder("secret", value, where)
        if IP_KEY.search(name):
            return self._ips(value, where)
        return self.text(value, where)

    # signatures --------------------------------------------------------------
    def resigned(self, original: Any, redacted: Any, raw: str, location: str = "headers") -> Any:
        """``redacted`` headers with signatures made anew over ``raw`` (``resign=True`` only).

        Timestamps are kept from ``original`` (Stripe's ``t=``, Zendesk's timestamp header).
        """
        if not self.resign:
            return redacted
        pairs = _header_pairs(original)
        lowered = {name.lower(): value for name, value in pairs}
        for header, scheme in SIGNATURE_HEADERS.items():
            if header not in lowered:
                continue
            stamp: int | None = None
            if scheme == "stripe":
                found = re.search(r"(?:^|,)\s*t=(\d+)", str(lowered[header]))
                stamp = int(found.group(1)) if found else None
            elif scheme == "zendesk":
                given = str(lowered.get("x-zendesk-webhook-signature-timestamp", ""))
                stamp = int(given) if given.isdigit() else None
            from segfn_kit.runtime import sign

            for name, value in sign(
                scheme, TEST_SECRET, raw.encode("utf-8", "surrogateescape"), timestamp=stamp
            ).items():
                redacted = _set_header(redacted, name, value)
            self.replacements.append(
                {
                    "source": self.source,
                    "location": f"{location}.{header}",
                    "kind": "signature",
                    "placeholder": f"re-signed ({scheme}) with the test secret",
                }
            )
        return redacted

    # raw bodies --------------------------------------------------------------
    def raw_body(
        self, raw: str, body: Any, content_type: str | None, location: str = "body"
    ) -> tuple[str, Any]:
        """Redact a body given as its raw text and parsed value; returns (raw, body)."""
        if isinstance(body, dict | list) and raw.strip()[:1] in ("{", "["):
            new_body = self.value(body, location)
            return json.dumps(new_body, ensure_ascii=False, separators=(",", ":")), new_body
        if (isinstance(body, dict) and content_type and "urlencoded" in content_type.lower()) or (
            isinstance(body, dict) and raw.strip()[:1] not in ("{", "[")
        ):
            new_form = self.value(body, location)
            return urlencode(new_form, doseq=True), new_form
        if body is not None and not isinstance(body, dict | list):
            new_scalar = self.value(body, location)
            return json.dumps(new_scalar, ensure_ascii=False), new_scalar
        return self.text(raw, location), None


def _is_header_list_item(value: Any) -> bool:
    return isinstance(value, dict) and "name" in value and "value" in value and len(value) <= 3


def _looks_like_person(obj: dict[str, Any]) -> bool:
    # an object with an email (or a phone, a first or last name) beside its "name"
    keys = {str(k).lower().replace("-", "_") for k in obj}
    return bool(
        keys
        & {"email", "email_address", "emailaddress", "mail", "phone", "first_name", "last_name"}
        or any(k.endswith("email") for k in keys)
    )


def _header_pairs(headers: Any) -> list[tuple[str, Any]]:
    if isinstance(headers, Mapping):
        return [(str(k), v) for k, v in headers.items()]
    pairs: list[tuple[str, Any]] = []
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, Mapping) and "name" in item:
                pairs.append((str(item["name"]), item.get("value")))
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((str(item[0]), item[1]))
    return pairs


def _set_header(headers: Any, name: str, value: str) -> Any:
    """Headers (a mapping, HAR ``[{name, value}]`` or pairs) with ``name`` set, any case."""
    lower = name.lower()
    if isinstance(headers, Mapping):
        out = dict(headers)
        key = next((k for k in out if str(k).lower() == lower), name)
        out[key] = value
        return out
    if isinstance(headers, list):
        items = list(headers)
        for i, item in enumerate(items):
            if isinstance(item, Mapping) and str(item.get("name", "")).lower() == lower:
                items[i] = {**item, "value": value}
                return items
            if isinstance(item, list | tuple) and len(item) == 2 and str(item[0]).lower() == lower:
                items[i] = [item[0], value]
                return items
        return [*items, {"name": name, "value": value}]
    return {name: value}


# --------------------------------------------------------------------------- documents


def _redact_document(r: Redactor, doc: Any) -> Any:
    """Redact one JSON document of any capture shape, keeping its shape."""
    if isinstance(doc, dict):
        if isinstance(doc.get("body"), str) and "headers" in doc:
            headers = doc.get("headers")
            ctype = _content_type(headers)
            out = dict(doc)
            for k, v in doc.items():
                if k == "body":
                    continue
                out[k] = r.headers(v, k) if k == "headers" else r.value(v, k)
            out["body"] = _redact_text_body(r, doc["body"], ctype)
            out["headers"] = r.resigned(headers, out["headers"], out["body"])
            return out
        if isinstance(doc.get("body_base64"), str):
            out = {
                k: (r.headers(v, k) if k == "headers" else r.value(v, k))
                for k, v in doc.items()
                if k != "body_base64"
            }
            data = base64.b64decode(doc["body_base64"])
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                out["body_base64"] = doc["body_base64"]  # binary: nothing to read, kept as is
                r.replacements.append(
                    {
                        "source": r.source,
                        "location": "body_base64",
                        "kind": "skipped",
                        "placeholder": "binary body left as captured",
                    }
                )
                return out
            out["body"] = _redact_text_body(r, text, _content_type(doc.get("headers")))
            if "headers" in out:
                out["headers"] = r.resigned(doc["headers"], out["headers"], out["body"])
            return out
        if isinstance(doc.get("log"), dict):  # HAR: postData.text is a string body
            return _redact_har(r, doc)
        if "headers" in doc and "body" in doc and r.resign:  # a body given as a JSON value
            from segfn_kit._payloads import _body_from_value

            done = r.value(doc)
            raw = _body_from_value(done["body"], _content_type(doc["headers"])).raw
            done["headers"] = r.resigned(doc["headers"], done["headers"], raw)
            return done
    return r.value(doc)


def _redact_text_body(r: Redactor, text: str, content_type: str | None) -> str:
    from segfn_kit._payloads import parse_json

    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            parsed, _ = parse_json(text)
        except ValueError:
            return r.text(text, "body")
        return json.dumps(r.value(parsed, "body"), ensure_ascii=False, separators=(",", ":"))
    if (content_type and "urlencoded" in content_type.lower()) or (
        "=" in stripped and " " not in stripped
    ):
        from urllib.parse import parse_qsl

        pairs = parse_qsl(text, keep_blank_values=True)
        if pairs:
            redacted = [(k, r._field(k, v, f"body.{k}", False, 0)) for k, v in pairs]
            return urlencode(redacted)
    return r.text(text, "body")


def _redact_har(r: Redactor, doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = r.value(dict(doc))
    log = out.get("log")
    entries = log.get("entries") if isinstance(log, dict) else None
    originals = doc["log"].get("entries") if isinstance(doc["log"].get("entries"), list) else []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        request = entry.get("request") if isinstance(entry, dict) else None
        post = request.get("postData") if isinstance(request, dict) else None
        if (
            isinstance(post, dict)
            and isinstance(post.get("text"), str)
            and post.get("encoding") != "base64"
        ):
            post["text"] = _redact_text_body(r, post["text"], post.get("mimeType"))
            original = originals[index] if index < len(originals) else None
            before = original.get("request") if isinstance(original, dict) else None
            if isinstance(before, dict) and isinstance(request, dict) and "headers" in request:
                request["headers"] = r.resigned(
                    before.get("headers"), request["headers"], post["text"], "request.headers"
                )
    return out


def _content_type(headers: Any) -> str | None:
    if isinstance(headers, Mapping):
        for k, v in headers.items():
            if str(k).lower() == "content-type":
                return str(v)
    return None


# --------------------------------------------------------------------------- public API


def redact(
    *inputs: Any,
    out: str | os.PathLike[str] | None = None,
    key: str | bytes | None = None,
    redactor: Redactor | None = None,
    progress: bool = False,
    resign: bool = False,
    max_bytes: int | None = None,
) -> Any:
    """Replace emails, phone numbers, names, card numbers, tokens and secret headers.

    Args:
        *inputs: one payload frame; or payload dicts (envelopes, bare bodies); or files,
            folders and globs, with ``out`` set.
        out: the folder redacted files are written to (same relative paths); needed for
            file inputs, whose originals are never changed.
        key: make placeholders keyed HMACs of the originals (stable across runs).
        redactor: an existing ``Redactor`` to keep placeholders consistent across calls.
        progress: show a progress bar over files.
        resign: keep signature headers valid: Stripe, GitHub, Shopify and Zendesk signatures
            are made anew over the redacted body with ``TEST_SECRET``
            (``whsec_test_segfn_kit_documented_secret``), keeping their timestamps.
        max_bytes: the size cap of one file after decompression (default
            ``$SEGFN_MAX_BYTES``, else 256 MiB); larger files are reported as skipped.

    Returns:
        For a frame: a redacted copy, with ``attrs["redactions"]`` (a DataFrame of
        ``source, location, kind, placeholder``). For dicts: the redacted copies (one
        dict, or a list). For files: the redactions DataFrame, also listing the files
        written.

    Example:
        >>> redact({"headers": {"Authorization": "Bearer abc123def456"},
        ...         "body": {"customer": {"name": "Jane Roe", "email": "jane@corp.com"}}})
        {'headers': {'Authorization': 'Bearer <secret-1>'}, 'body': {'customer': {'name': 'Person 1', 'email': 'person1@example.com'}}}
    """
    import pandas as pd

    from segfn_kit._payloads import max_bytes_default

    r = redactor or Redactor(key=key.encode() if isinstance(key, str) else key, resign=resign)
    if len(inputs) == 1 and isinstance(inputs[0], pd.DataFrame):
        return _redact_frame(r, inputs[0])
    if inputs and all(isinstance(i, dict | list) for i in inputs):
        docs = [
            _redact_document(r, i) if isinstance(i, dict) else [_redact_document(r, x) for x in i]
            for i in inputs
        ]
        return docs[0] if len(docs) == 1 else docs
    if out is None:
        raise ValueError(
            "redact(files...) needs out=FOLDER: redacted copies are written there and the "
            "originals are left unchanged"
        )
    limit = max_bytes_default() if max_bytes is None else max_bytes
    _redact_files(r, inputs, Path(out), progress, limit)
    return pd.DataFrame(r.replacements, columns=["source", "location", "kind", "placeholder"])


def _redact_frame(r: Redactor, frame: pd.DataFrame) -> pd.DataFrame:
    from segfn_kit._payloads import Payload, frame_from_payloads

    payloads: list[Payload] = []
    for pid, row in zip(frame.index, frame.to_dict("records"), strict=True):
        r.source = str(pid)
        raw = row.get("raw") or ""
        body = row.get("body")
        new_raw, new_body = r.raw_body(raw, body, row.get("content_type"))
        headers = r.headers(row.get("headers") or {}, "headers")
        headers = r.resigned(row.get("headers") or {}, headers, new_raw)
        payloads.append(
            Payload(
                payload_id=str(pid),
                source=row.get("source") or "",
                position=int(row.get("position") or 0),
                format=row.get("format") or "bare",
                raw=new_raw,
                body=new_body,
                headers=headers,
                query=r.value(row.get("query") or {}, "query"),
                method=row.get("method") or "POST",
                url=r.text(row["url"], "url") if isinstance(row.get("url"), str) else None,
                path=row.get("path"),
                received_at=row.get("received_at"),
                content_type=row.get("content_type"),
                event_type=row.get("event_type"),
                error=row.get("error"),
                warning=row.get("warning"),
            )
        )
    has_flat = any(str(c).startswith("body.") for c in frame.columns)
    result = frame_from_payloads(payloads, flatten_body=has_flat)
    result.attrs = {**frame.attrs, "redactions": _report(r)}
    return result


def _report(r: Redactor) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(r.replacements, columns=["source", "location", "kind", "placeholder"])


def _redact_files(
    r: Redactor, inputs: Iterable[Any], out: Path, progress: bool, max_bytes: int
) -> None:
    from segfn_kit._payloads import _files_of, _Reader

    skipped: list[str] = []
    reader = _Reader(
        split_arrays=False, check_duplicates=False, on_skip=lambda s: skipped.append(s.source)
    )
    files = [pair for arg in inputs for pair in _files_of(arg, reader)]
    iterator: Iterable[tuple[Path, str]] = files
    if progress:
        from segfn_kit._progress import progress as progress_bar

        iterator = progress_bar(files, show=True, desc="redacting", unit="files")
    out.mkdir(parents=True, exist_ok=True)
    for path, base_id in iterator:
        target = out / base_id
        if target.resolve() == path.resolve():
            raise ValueError(
                f"{path}: the output would overwrite the input; choose another --out folder"
            )
        r.source = base_id
        if not _redact_file(r, path, target, max_bytes):
            continue
        r.replacements.append(
            {"source": base_id, "location": "", "kind": "file", "placeholder": str(target)}
        )


def _redact_file(r: Redactor, path: Path, target: Path, max_bytes: int) -> bool:
    """Write the redacted copy of one file; False (and a ``skipped`` row) when it cannot be read."""
    import zlib

    from segfn_kit._payloads import JSONL_SUFFIXES, TooLarge, parse_json, read_capped

    gz = path.name.lower().endswith(".gz")
    opener: Callable[..., Any] = gzip.open if gz else open
    try:
        data = read_capped(path, gz, max_bytes)
    except (TooLarge, OSError, EOFError, zlib.error) as exc:  # not copied: says why
        r.replacements.append(
            {
                "source": r.source,
                "location": "",
                "kind": "skipped",
                "placeholder": f"file not written: {exc}",
            }
        )
        return False
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    inner = path.name.lower().removesuffix(".gz")
    if inner.endswith(JSONL_SUFFIXES):
        lines = []
        for line in text.splitlines():
            if not line.strip():
                lines.append(line)
                continue
            try:
                doc, _ = parse_json(line)
            except ValueError:
                lines.append(r.text(line, "line"))
                continue
            lines.append(json.dumps(_redact_document(r, doc), ensure_ascii=False))
        result = "\n".join(lines) + "\n"
    else:
        try:
            doc, _ = parse_json(text)
        except ValueError:
            result = r.text(text, "file")
        else:
            result = json.dumps(_redact_document(r, doc), ensure_ascii=False, indent=2) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    payload = result.encode("utf-8", "surrogateescape")
    with opener(tmp, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, target)
    return True
