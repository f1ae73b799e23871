"""Settings are deeply read-only: lists and objects inside them too, with the setting named."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from segfn_kit import run
from segfn_kit.runtime import Function, Request
from segfn_kit.runtime._settings import ReadOnlyDict, ReadOnlyList, Settings, SettingsReadOnlyError

GROWER = '''
from segfn_kit.runtime import Segment
def on_request(request, settings):
    settings["tags"].append("seen")
    Segment.track(user_id="u1", event="Tagged", properties={"tags": settings["tags"]})
'''

READER = '''
from segfn_kit.runtime import Segment
def on_request(request, settings):
    tags = list(settings["tags"]) + ["seen"]
    Segment.track(user_id="u1", event="Tagged",
                  properties={"tags": tags, "map": settings["map"], "n": len(settings.map["a"])})
'''


def test_nested_lists_and_objects_refuse_every_change_naming_the_setting() -> None:
    s = Settings({"tags": ["a"], "map": {"a": [1, {"deep": [2]}]}, "name": "x"})
    changes = [
        (lambda: s["tags"].append("b"), r"settings\['tags'\] is read-only \(append\)"),
        (lambda: s["tags"].extend(["b"]), "extend"),
        (lambda: s["tags"].__setitem__(0, "b"), "item assignment"),
        (lambda: s["tags"].sort(), "sort"),
        (lambda: s["map"].__setitem__("b", 1), r"settings\['map'\] is read-only \(setting key 'b'\)"),
        (lambda: s["map"].update(b=1), "update"),
        (lambda: s["map"].pop("a"), "pop"),
        (lambda: s["map"]["a"].append(3), r"settings\['map'\]\['a'\] is read-only"),
        (lambda: s["map"]["a"][1]["deep"].clear(), r"settings\['map'\]\['a'\]\[1\]\['deep'\] is read-only"),
        (lambda: s.__setitem__("name", "y"), r"settings\['name'\] is read-only \(assignment\)"),
        (lambda: s.__delitem__("name"), "del"),
    ]
    for change, message in changes:
        with pytest.raises(SettingsReadOnlyError, match=message) as info:
            change()
        assert "work on a copy" in str(info.value) or "assignment" in str(info.value) or "del" in str(info.value)
    with pytest.raises(SettingsReadOnlyError, match=r"\+="):
        tags = s["tags"]
        tags += ["b"]
    assert s["tags"] == ["a"] and s["map"] == {"a": [1, {"deep": [2]}]}
    assert isinstance(s["tags"], list) and isinstance(s["map"], dict)  # still a list and a dict to read


def test_copies_are_plain_and_changeable_and_values_serialise() -> None:
    s = Settings({"tags": ["a"], "map": {"a": [1]}})
    deep = copy.deepcopy(s["map"])
    deep["a"].append(2)
    shallow = copy.copy(s["tags"])
    shallow.append("b")
    assert (type(deep), type(deep["a"]), type(shallow)) == (dict, list, list)
    assert s["map"] == {"a": [1]} and s["tags"] == ["a"]
    assert json.dumps(s["map"]) == '{"a": [1]}'
    again = pickle.loads(pickle.dumps(s))
    assert isinstance(again["map"]["a"], ReadOnlyList) and isinstance(again["map"], ReadOnlyDict)
    with pytest.raises(SettingsReadOnlyError, match=r"settings\['map'\]\['a'\]"):
        again["map"]["a"].append(2)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_function_that_grows_a_setting_gets_an_error_row_per_payload(isolation: str) -> None:
    payloads = [{"headers": {}, "body": {"n": i}} for i in range(3)]
    results = run(GROWER, payloads, settings={"tags": ["a"]}, isolation=isolation)
    assert results["outcome"].tolist() == ["error"] * 3
    assert all("settings['tags'] is read-only (append)" in e for e in results["error"])
    readers = run(READER, payloads, settings={"tags": ["a"], "map": {"a": [1, 2]}}, isolation=isolation)
    assert readers["outcome"].tolist() == ["ok"] * 3
    props = [events[0]["properties"] for events in readers["events"]]
    assert props == [{"tags": ["a", "seen"], "map": {"a": [1, 2]}, "n": 2}] * 3  # never grows


def test_settings_stay_the_same_across_invocations_of_one_function() -> None:
    fn = Function.from_source(GROWER)
    settings = fn.settings({"tags": ["a"]})
    outcomes = [fn.on_request(Request(b'{"n": 1}'), settings).outcome for _ in range(3)]
    assert outcomes == ["error"] * 3 and settings["tags"] == ["a"]
