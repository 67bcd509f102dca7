"""How long a 1,000-step workflow's timeline takes to draw, two ways, side by side.

- bars: the same 1,000 SVG bars written by a Django template loop, and by
  `workflows.timeline` (which writes them as text, escaping the names itself);
- steps: 1,000 rows of an outline made into `sources.Step` dataclasses (datetimes, as the
  decoded reads build them) and into `sources.OutlineStep` tuples (epoch ms, as stored).

Usage: .venv/bin/python bench/timeline.py [--steps 1000] [--repeat 30]
Prints the median of each in milliseconds. No database: pure rendering and construction.
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
django.setup()

from django.template import engines  # noqa: E402

from workflows.sources import OUTLINE_FIELDS, Workflow, _outline_step, _step, _time  # noqa: E402
from workflows.timeline import timeline  # noqa: E402

BAR = (
    '{% for b in bars %}<rect x="{{ b.x|floatformat:1 }}" y="3" width="{{ b.w|floatformat:1 }}"'
    ' height="10" class="bar {{ b.kind }}" data-step="{{ b.id }}"><title>{{ b.name }}'
    " #{{ b.id }} · {{ b.took }}</title></rect>{% endfor %}"
)


def median_ms(work: Callable[[], Any], repeat: int) -> float:
    work()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    start = 1_795_334_400_000
    rows = [
        (i, "fetch_page", None, start + i * 52, start + i * 52 + 50, None, "py_pickle")
        for i in range(1, args.steps + 1)
    ]
    outline = [_outline_step(*row) for row in rows]
    workflow = Workflow(
        "bench", status="SUCCESS", created_at=_time(start), completed_at=_time(rows[-1][4])
    )
    now = datetime.now(UTC)
    drawn = timeline(workflow, outline, now=now)
    bars = [
        {"x": i * 0.9, "w": 0.8, "kind": "ok", "id": i, "name": "fetch_page", "took": "50 ms"}
        for i in range(args.steps)
    ]
    loop = engines["django"].from_string(BAR)
    figures = {
        "bars, template loop": median_ms(lambda: loop.render({"bars": bars}), args.repeat),
        "bars, workflows.timeline": median_ms(
            lambda: timeline(workflow, outline, now=now), args.repeat
        ),
        "steps, Step dataclasses": median_ms(
            lambda: [_step(dict(zip(OUTLINE_FIELDS, row, strict=True))) for row in rows],
            args.repeat,
        ),
        "steps, OutlineStep tuples": median_ms(
            lambda: [_outline_step(*row) for row in rows], args.repeat
        ),
    }
    print(f"{args.steps} steps, {len(drawn.lanes)} lanes; median of {args.repeat} (ms)")
    for name, value in figures.items():
        print(f"  {name:28} {value:8.2f}")


if __name__ == "__main__":
    main()
