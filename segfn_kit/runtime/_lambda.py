"""AWS Lambda event shapes: HTTP requests in, answers out.

Read (``http_request``):

- API Gateway HTTP API (payload 2.0) and Lambda Function URLs: ``requestContext.http``,
  ``rawPath``, ``rawQueryString``, ``headers``;
- API Gateway REST API (payload 1.0): ``httpMethod``, ``path``, ``headers`` /
  ``multiValueHeaders``, ``queryStringParameters`` / ``multiValueQueryStringParameters``
  (API Gateway has already decoded the query values);
- Application Load Balancer target groups (``requestContext.elb``), single-value and
  multi-value headers mode: the load balancer passes query keys and values as sent,
  percent-encoded, so they are decoded here (once: the rebuilt URL encodes them once).

Written (``http_response``): ``statusCode``, ``headers``, ``body``, ``isBase64Encoded``;
for a load balancer also ``statusDescription``, and in multi-value mode
``multiValueHeaders`` instead of ``headers`` (the load balancer ignores ``headers`` there).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

__all__ = ["HttpRequest", "NotHttp", "http_request", "http_response"]


class NotHttp(ValueError):
    """The Lambda event is no HTTP request of a shape the handler reads (answered 400).

    Attributes:
        outcome: ``not_http``, or ``InvalidEventPayload`` for a body that is not valid base64.
    """

    def __init__(self, message: str, outcome: str = "not_http"):
        super().__init__(message)
        self.outcome = outcome


@dataclass
class HttpRequest:
    """The HTTP request a Lambda event carries.

    Attributes:
        method: upper case.
        headers: ``(name, value)`` pairs; a multi-valued header is joined with ``", "``.
        body: the raw body.
        url: path and query string (encoded once).
        query: decoded query parameters (a list for a repeated key).
        alb: the event came from an Application Load Balancer.
        multi_value: a load balancer in multi-value headers mode (the answer must use them too).
    """

    method: str
    headers: list[tuple[str, str]]
    body: bytes
    url: str
    query: dict[str, Any] = field(default_factory=dict)
    alb: bool = False
    multi_value: bool = False


def _add(query: dict[str, Any], key: str, value: str) -> None:
    if key not in query:
        query[key] = value
    elif isinstance(query[key], list):
        query[key].append(value)
    else:
        query[key] = [query[key], value]


def _pairs(source: Mapping[str, Any], *, decode: bool) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for key, value in source.items():
        for item in value if isinstance(value, list) else [value]:
            k, v = str(key), "" if item is None else str(item)
            _add(query, unquote_plus(k) if decode else k, unquote_plus(v) if decode else v)
    return query


def _headers(event: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bool]:
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        return [
            (str(k), ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)) for k, v in multi.items()
        ], True
    single = event.get("headers")
    if isinstance(single, Mapping):
        return [(str(k), str(v)) for k, v in single.items()], False
    return [], False


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    if not isinstance(raw, str):
        raise NotHttp("the event's body is not a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise NotHttp("the event's body is not valid base64", "InvalidEventPayload") from None
    return raw.encode("utf-8", "surrogatepass")


def http_request(event: Any) -> HttpRequest:
    """The HTTP request of an API Gateway, Function URL or load balancer event.

    Raises:
        NotHttp: the event is of no shape the handler reads, or its body is unreadable.

    Example:
        >>> alb = {"requestContext": {"elb": {"targetGroupArn": "arn:..."}}, "httpMethod": "POST",
        ...        "path": "/hook", "queryStringParameters": {"email": "a%40b.com"}, "headers": {}, "body": "{}"}
        >>> r = http_request(alb)
        >>> r.query, r.url
        ({'email': 'a@b.com'}, '/hook?email=a%40b.com')
    """
    if not isinstance(event, Mapping):
        raise NotHttp("the event is not an API Gateway, Function URL or load balancer event")
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    http = context.get("http")
    if isinstance(http, Mapping):  # HTTP API payload 2.0 and Function URLs
        method = str(http.get("method") or "")
        path = str(event.get("rawPath") or http.get("path") or "/")
        raw_query = str(event.get("rawQueryString") or "")
        query: dict[str, Any] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            _add(query, key, value)
        headers, _ = _headers(event)
        # the query string as the sender wrote it
        return HttpRequest(method.upper(), headers, _body(event), path + ("?" + raw_query if raw_query else ""), query)
    if "httpMethod" not in event:
        raise NotHttp("the event is not an API Gateway, Function URL or load balancer event")
    alb = isinstance(context.get("elb"), Mapping)
    method = str(event.get("httpMethod") or "")
    path = str(event.get("path") or "/")
    multi_query = event.get("multiValueQueryStringParameters")
    single_query = event.get("queryStringParameters")
    source = multi_query if isinstance(multi_query, Mapping) else single_query if isinstance(single_query, Mapping) else {}
    # API Gateway decodes query values; a load balancer passes them percent-encoded
    query = _pairs(source, decode=alb)
    headers, multi_value = _headers(event)
    url = path + ("?" + urlencode(query, doseq=True) if query else "")
    return HttpRequest(method.upper(), headers, _body(event), url, query, alb=alb, multi_value=alb and multi_value)


def http_response(
    status: int, headers: Mapping[str, str], body: str, *, alb: bool = False, multi_value: bool = False
) -> dict[str, Any]:
    """The Lambda answer of an HTTP request, in the shape its event came in.

    Example:
        >>> http_response(200, {"content-type": "application/json"}, "{}", alb=True, multi_value=True)
        {'statusCode': 200, 'statusDescription': '200 OK', 'multiValueHeaders': {'content-type': ['application/json']}, 'body': '{}', 'isBase64Encoded': False}
    """
    answer: dict[str, Any] = {"statusCode": status}
    if alb:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        answer["statusDescription"] = f"{status} {phrase}".strip()
    if multi_value:
        answer["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    else:
        answer["headers"] = dict(headers)
    answer["body"] = body
    answer["isBase64Encoded"] = False
    return answer
