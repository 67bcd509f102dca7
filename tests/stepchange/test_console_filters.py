"""The console's template filters."""

import json
from datetime import UTC, datetime

from stepchange.templatetags.console import ONE_LINE, pretty


def test_pretty_keeps_short_values_on_one_line_and_indents_long_ones() -> None:
    assert pretty({"x": "ord-1", "ok": True}) == '{"x": "ord-1", "ok": true}'
    assert pretty([1, 2.5, None]) == "[1, 2.5, null]"
    assert pretty(7) == "7"
    long = {"items": [f"item-{i}" for i in range(20)], "total": 20}
    shown = pretty(long)
    assert shown.startswith('{\n  "items": [\n    "item-0",')
    assert json.loads(shown) == long
    # Exactly at the limit it still fits on the line; one character more does not.
    fits = {"k": "x" * (ONE_LINE - len('{"k": ""}'))}
    assert "\n" not in pretty(fits)
    assert "\n" in pretty({"k": fits["k"] + "x"})


def test_pretty_shows_text_as_is_keeps_unicode_and_names_other_types() -> None:
    assert pretty("already text") == "already text"
    assert pretty({"city": "Zürich"}) == '{"city": "Zürich"}'
    moment = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
    assert pretty({"at": moment}) == json.dumps({"at": str(moment)})
    # Keys keep their order (as the SDK wrote them), long or short.
    assert list(json.loads(pretty({"b": 1, "a": 2}))) == ["b", "a"]
