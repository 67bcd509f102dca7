"""How long list_steps spends turning a page of step rows into Conductor's step shapes,
each stored text decoded per step against once per distinct text, side by side in one
process on `wf-1000-steps` of the database `bench/seed.py` makes (it is only read).

    .venv/bin/python bench/list_steps_decoding.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                                  [--runs 20]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/sc_bench_1m")
    parser.add_argument("--workflow", default="wf-1000-steps")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
    import django

    django.setup()
    import psycopg

    from stepchange.api.conductor_v2 import step_out
    from workflows.sources import Decodings, _step

    with psycopg.connect(args.url) as connection:
        cursor = connection.execute(
            "SELECT * FROM dbos.operation_outputs WHERE workflow_uuid = %s ORDER BY function_id",
            (args.workflow,),
        )
        names = [column.name for column in cursor.description or ()]
        rows: list[dict[str, Any]] = [dict(zip(names, row, strict=True)) for row in cursor]
    each: list[float] = []
    once: list[float] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        [step_out(_step(row)) for row in rows]
        each.append((time.perf_counter() - started) * 1000)
        kept: Decodings = {}
        started = time.perf_counter()
        [step_out(_step(row, kept)) for row in rows]
        once.append((time.perf_counter() - started) * 1000)
    print(
        f"{len(rows)} steps; each step decoded: p50 {statistics.median(each):.1f} ms; "
        f"once per distinct text: p50 {statistics.median(once):.1f} ms"
    )


if __name__ == "__main__":
    main()
