"""Checking 100,000 events against a 50-rule tracking plan.

Floor, run in the same process on the same events: ``jsonschema`` validation in a plain
loop, one ``Draft7Validator`` per rule built beforehand (with the same format checks the
plan uses, so both validate exactly the same keywords), the rule picked by event name from a
dict, every error collected (``list(validator.iter_errors(event))``). The plan's ``check`` does the same validation
and also picks the version, finds unplanned events and writes an issue per error.

The events are track calls with nested objects, an array of objects, a date-time and an
enum; one in twenty breaks its rule (a revenue sent as a string), one in a hundred has an
event name the plan does not know.

Target: ``Plan.check`` at most 1.2x the floor (medians of 3 runs each, interleaved).
"""

from __future__ import annotations

import gc
import statistics
from typing import Any

import jsonschema

from benchmarks._util import median_time, report
from segfn_kit.runtime import Plan
from segfn_kit.runtime._plan import _format_checker

EVENTS = 100_000
RULES = 50


def _schema(i: int) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["properties"],
        "definitions": {"currency": {"type": "string", "enum": ["usd", "eur", "gbp"]}},
        "properties": {
            "context": {},
            "properties": {
                "type": "object",
                "required": ["order_id", "revenue", "currency", "items"],
                "properties": {
                    "order_id": {"type": "string", "pattern": "^ord_"},
                    "revenue": {"type": "number", "minimum": 0},
                    "amount": {"type": "integer"},
                    "currency": {"$ref": "#/definitions/currency"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "coupon": {"type": ["string", "null"]},
                    "customer": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}, "email": {"type": "string"},
                                       "tier": {"type": "integer", "maximum": 10 + i}},
                    },
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "required": ["sku", "qty"],
                                  "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}},
                    },
                },
            },
        },
    }


def plan_rules() -> list[dict[str, Any]]:
    return [{"type": "TRACK", "key": f"Order Step {i:02d}", "version": 1, "jsonSchema": _schema(i)}
            for i in range(RULES)]


def events(n: int = EVENTS) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        name = f"Order Step {i % RULES:02d}" if i % 100 != 99 else "Order Stepp"
        out.append({
            "type": "track", "event": name, "userId": f"cus_{i}", "messageId": f"m{i}",
            "timestamp": "2024-11-26T08:00:00Z", "context": {"library": {"name": "segfn_kit"}},
            "properties": {
                "order_id": f"ord_{i}", "revenue": "12.50" if i % 20 == 7 else 12.5 + i % 7,
                "amount": 1250, "currency": "usd", "created_at": "2024-11-26T08:00:00Z", "coupon": None,
                "customer": {"id": f"cus_{i}", "email": "a@example.com", "tier": i % 5},
                "items": [{"sku": "sku_1", "qty": 1}, {"sku": "sku_2", "qty": 2}],
            },
        })
    return out


def main() -> None:
    rules = plan_rules()
    sample = events()
    plan = Plan.from_rules(rules)
    checker = _format_checker()  # the formats the plan checks (date-time, date, email, uuid)
    validators = {r["key"]: jsonschema.Draft7Validator(r["jsonSchema"], format_checker=checker) for r in rules}

    def floor() -> int:
        errors = 0
        for event in sample:
            validator = validators.get(event["event"])
            if validator is not None:
                errors += len(list(validator.iter_errors(event)))
        return errors

    def check() -> int:
        return len(plan.check(sample))

    floor_errors, issues = floor(), check()
    assert floor_errors == EVENTS // 20, floor_errors
    assert issues == floor_errors + EVENTS // 100, issues  # violations + unplanned events
    gc.collect()
    # interleaved (floor, check, floor, check, ...) so that a busy machine slows both alike
    floors, checks = [], []
    for _ in range(3):
        floors.append(median_time(floor, repeats=1))
        checks.append(median_time(check, repeats=1))
    t_floor, t_check = statistics.median(floors), statistics.median(checks)
    print(f"{EVENTS:,} events, {RULES}-rule plan, {issues:,} issues")
    report("jsonschema in a plain loop (floor)", t_floor, "s")
    report("Plan.check", t_check, "s")
    report("Plan.check / floor", t_check / t_floor, "x", "<= 1.2")


if __name__ == "__main__":
    main()
