"""Seed a Postgres DBOS system database with 1,000,000 workflows for the console benchmark.

    .venv/bin/python bench/seed.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                   [--workflows 1000000] [--steps-per-workflow 5] [--force]

1. Creates the database if it is missing, then runs a tiny real dbos==3.2.0 program against
   it once (in a subprocess): `DBOS.launch()` applies DBOS's own migrations (schema `dbos`,
   migration 123), so every table and index is exactly DBOS's; the program registers the
   benchmark's queues and runs real workflows (steps, a child workflow, a failing step, a
   failing workflow) whose rows are the templates for the bulk load (serialization
   `py_pickle`, base64 pickles, function names, epoch-ms timestamps).
2. Empties DBOS's workflow tables (TRUNCATE: data only, nothing of DBOS's schema is
   dropped or recreated) and bulk-loads, with INSERT ... SELECT generate_series on
   several connections at once, `--workflows` workflow_status rows (created_at spread
   evenly over the last 30 days, oldest first, as a live system writes them), their
   workflow_input rows, workflow_output rows for SUCCESS and ERROR, and on average
   `--steps-per-workflow` operation_outputs rows per workflow (1 to 2n-1; none for
   ENQUEUED). Plus one workflow `wf-1000-steps` with exactly 1,000 steps.
3. VACUUM (ANALYZE) (autovacuum is off on this server), then writes a marker row (table
   `public.sc_bench_seed`, outside DBOS's schema): a later run with the same parameters
   finds it and the known ids, and does nothing unless --force.

The mix (deterministic: every per-row choice is a slice of md5('sc-bench-' || i)):

- ids: md5-derived UUIDs (random order, like DBOS's uuid4); a child's id is
  `<parent id>-3` (the parent's function 3 starts it, function 4 is DBOS.getResult);
- every 10th workflow is a parent, the next one its child (name `process_item`);
- every 50th is a fork (`forked_from` = a workflow 1,001 positions older, queue
  `_dbos_internal_queue`, the source has `was_forked_from`);
- status: 5 % ERROR, 1 % CANCELLED, 0.1 % MAX_RECOVERY_ATTEMPTS_EXCEEDED, 1.5 % PENDING,
  0.3 % ENQUEUED (queued ones only), 92 % SUCCESS;
- names: order_workflow 34 %, send_email 20 %, sync_inventory 15 %, generate_report 11 %,
  charge_card 10 %, process_item 10 % (the children), rebuild_search_index 0.09 %;
- queues: orders 16 %, emails 8 %, reports 4 %, billing 4 %, _dbos_internal_queue 2 %,
  none 66 %;
- executors executor-1 .. executor-8; six application versions, one per 5-day period
  (so a filter on an old version is correlated with time, as it is in real life);
- authenticated users: about a third of the unscheduled workflows were started by a
  signed-in user (alice 2 %, role admin; bob 3 %; carol 1 %; user-000 .. user-299), a child
  has its parent's user, a scheduled run none;
- schedules: 45 stored ones, made by DBOS's own `create_schedule` in the real program
  (inventory-sync every minute, email-digest every 15 min, hourly-rollup, nightly in
  Europe/Paris, quarterly-audit paused, and 40 weekly tenant exports, every 7th paused);
  `schedule_name` on about 5 % of the workflows (inventory-sync 3.9 %, email-digest
  0.5 %, hourly-rollup 0.5 %, nightly about 30 rows) and on every top-level
  rebuild_search_index, whose schedule `search-reindex` is declared in code (no stored
  row). Their ids stay md5 UUIDs, not DBOS's `sched-<name>-<time>`, and their times are
  the seed's, not fire times; each stored schedule's last_fired_at is its newest run;
- attributes: on 60 % of the top-level, unscheduled workflows, `{"tenant", "region"}`
  (of all workflows: tenant acme 5 %, globex 3.5 %, initech 2.5 %, tenant-0 .. tenant-199
  the rest; three regions), plus `"priority": "high"` on 3 %; the others JSON null, as
  DBOS writes no attributes.
"""

# SQL here is assembled from this file's own constants; values are bound as parameters.
# ruff: noqa: S608

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/sc_bench_1m"
APP_NAME = "bench"
THOUSAND_STEPS_ID = "wf-1000-steps"
DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS
VERSIONS = 6
QUEUES = ("orders", "emails", "reports", "billing")
CHUNK = 50_000  # workflows per INSERT statement
# The stored schedules (name, workflow, cron, time zone, paused): the four whose runs fill
# the bulk rows, one paused with no runs, and forty per-tenant exports (a page of them).
SCHEDULES = [
    ("inventory-sync", "sync_inventory", "* * * * *", None, False),
    ("email-digest", "send_email", "*/15 * * * *", None, False),
    ("hourly-rollup", "generate_report", "0 * * * *", None, False),
    ("nightly", "generate_report", "0 2 * * *", "Europe/Paris", False),
    ("quarterly-audit", "generate_report", "0 0 1 */3 *", None, True),
] + [
    (f"tenant-{k:02d}-export", "generate_report", f"{k} 3 * * 1", None, k % 7 == 0)
    for k in range(1, 41)
]

# --------------------------------------------------------------------------------------
# The tiny real DBOS program (run in a subprocess: `seed.py --dbos-program URL`).
# --------------------------------------------------------------------------------------


def dbos_program(url: str) -> None:
    from dbos import DBOS

    DBOS(config={"name": APP_NAME, "system_database_url": url})

    @DBOS.step(name="fetch")
    def fetch(x):
        return {"x": x, "ok": True}

    @DBOS.step(name="boom")
    def boom():
        raise ValueError("card declined")

    @DBOS.workflow(name="process_item")
    def process_item(n):
        return n * 2

    @DBOS.workflow(name="order_workflow")
    def order_workflow(order_id, qty=1):
        a = fetch(order_id)
        b = fetch(qty)
        c = DBOS.start_workflow(process_item, 3).get_result()
        with contextlib.suppress(ValueError):
            boom()
        return [a, b, c]

    @DBOS.workflow(name="charge_card")
    def charge_card(order_id):
        fetch(order_id)
        boom()

    # What the stored schedules run: registered under the names the bulk rows carry.
    def scheduled_workflow(name: str) -> Any:
        def scheduled(at, context):
            return {"at": at.isoformat(), "context": context}

        return DBOS.workflow(name=name)(scheduled)

    runs = {name: scheduled_workflow(name) for name in sorted({s[1] for s in SCHEDULES})}

    DBOS.launch()
    for name in QUEUES:
        DBOS.register_queue(name)
    # The stored schedules, written by DBOS's own create_schedule (its context encoding).
    for name, workflow, cron, zone, paused in SCHEDULES:
        DBOS.delete_schedule(name)  # a --force reload makes them anew
        DBOS.create_schedule(
            schedule_name=name,
            workflow_fn=runs[workflow],
            schedule=cron,
            context={"owner": name.split("-")[0], "notify": ["ops@example.com"]},
            cron_timezone=zone,
        )
        if paused:
            DBOS.pause_schedule(name)
    DBOS.start_workflow(order_workflow, "ord-1", qty=2).get_result()
    handle = DBOS.start_workflow(charge_card, "ord-2")
    with contextlib.suppress(ValueError):
        handle.get_result()
    DBOS.destroy()


# --------------------------------------------------------------------------------------
# Bulk-load SQL. {..} placeholders are filled from Python constants (integers only);
# the pickles are bound as parameters.
# --------------------------------------------------------------------------------------


def rnd(expr_m: str, start: int) -> str:
    """A 16-bit pseudo-random integer from the md5 hex string `expr_m`."""
    return f"('x' || substr({expr_m}, {start}, 4))::bit(16)::int"


def name_expr(r: str, is_child: str) -> str:
    """A workflow name from a 0..999 random `r` (SQL expressions)."""
    return f"""CASE WHEN {is_child} THEN 'process_item'
        WHEN {r} < 380 THEN 'order_workflow'
        WHEN {r} < 600 THEN 'send_email'
        WHEN {r} < 770 THEN 'sync_inventory'
        WHEN {r} < 880 THEN 'charge_card'
        WHEN {r} < 999 THEN 'generate_report'
        ELSE 'rebuild_search_index' END"""


# CTEs giving one row per workflow position i (table `b`), with every derived attribute;
# used by all the loads. MATERIALIZED keeps Postgres from inlining (and so recomputing) the
# md5s into every expression that uses them.
BASE = """
g AS MATERIALIZED (
    SELECT i, md5('sc-bench-' || i) AS m, md5('sc-bench-' || (i - 1001)) AS m_src,
           md5('sc-bench-more-' || i) AS m2,
           -- A child draws its user from its parent's hashes (DBOS children inherit it).
           CASE WHEN mod(i, 10) = 7 THEN md5('sc-bench-' || (i - 1)) END AS m_parent,
           CASE WHEN mod(i, 10) = 7 THEN md5('sc-bench-more-' || (i - 1)) END AS m2_parent
    FROM generate_series(%(lo)s::int, %(hi)s::int) AS i
),
h AS MATERIALIZED (
    SELECT i, m,
           mod(i, 10) = 6 AS is_parent,
           mod(i, 10) = 7 AS is_child,
           mod(i, 50) = 13 AND i > 1001 AS is_fork,
           mod({r_status}, 1000) AS r_status,
           mod({r_queue}, 1000) AS r_queue,
           mod({r_name}, 1000) AS r_name,
           mod({r_name_src}, 1000) AS r_name_src,
           {r_dur} AS r_dur,
           {r_steps} AS r_steps,
           mod({r_exec}, 8) AS r_exec,
           mod({r_user}, 1000) AS r_user,
           mod({r_who}, 300) AS r_who,
           mod({r_attr}, 1000) AS r_attr,
           mod({r_tenant}, 1000) AS r_tenant,
           {r_sched} AS r_sched
    FROM g
),
d AS (
    SELECT i, m, is_parent, is_child, is_fork, r_status, r_exec, r_user, r_who, r_attr,
           r_tenant, r_sched,
           CASE WHEN is_child THEN md5('sc-bench-' || (i - 1))::uuid::text || '-3'
                ELSE m::uuid::text END AS id,
           CASE WHEN is_fork THEN {fork_name} ELSE {name} END AS name,
           CASE WHEN is_child THEN NULL
                WHEN is_fork THEN '_dbos_internal_queue'
                WHEN r_queue < 180 THEN 'orders'
                WHEN r_queue < 270 THEN 'emails'
                WHEN r_queue < 315 THEN 'reports'
                WHEN r_queue < 360 THEN 'billing' END AS queue_name,
           {t0}::bigint + (i - 1 - is_child::int) * {span}::bigint / {n}
               + CASE WHEN is_child THEN 15 ELSE 0 END AS created_at,
           30 + mod(r_dur, 4000) + CASE WHEN mod(r_dur, 100) = 0 THEN 60000 ELSE 0 END AS dur,
           1 + mod(r_steps, {spread}) AS nsteps
    FROM h
),
s AS (
    SELECT d.*,
           CASE WHEN r_status < 50 THEN 'ERROR'
                WHEN r_status < 60 THEN 'CANCELLED'
                WHEN r_status < 61 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
                WHEN r_status < 76 THEN 'PENDING'
                WHEN r_status < 86 AND queue_name IS NOT NULL AND NOT is_parent
                     AND NOT is_fork THEN 'ENQUEUED'
                ELSE 'SUCCESS' END AS status
    FROM d
),
n AS (
    -- Runs of a schedule: most sync_inventory, some send_email and generate_report, every
    -- rebuild_search_index (declared in code: no stored row). Never a child or a fork.
    SELECT s.*,
           CASE WHEN is_child OR is_fork OR is_parent THEN NULL
                WHEN name = 'sync_inventory' AND r_sched < 19661 THEN 'inventory-sync'
                WHEN name = 'send_email' AND r_sched < 2000 THEN 'email-digest'
                WHEN name = 'generate_report' AND r_sched < 3277 THEN 'hourly-rollup'
                WHEN name = 'generate_report' AND r_sched < 3297 THEN 'nightly'
                WHEN name = 'rebuild_search_index' THEN 'search-reindex' END AS schedule_name
    FROM s
),
u AS (
    -- Who started it: a third of the workflows started by a request (a child has its
    -- parent's user, a scheduled run none); attributes on three fifths of the top-level ones.
    SELECT n.*,
           CASE WHEN schedule_name IS NOT NULL OR r_user < 650 THEN NULL
                WHEN r_user < 670 THEN 'alice'
                WHEN r_user < 700 THEN 'bob'
                WHEN r_user < 710 THEN 'carol'
                ELSE 'user-' || lpad(r_who::text, 3, '0') END AS authenticated_user,
           CASE WHEN schedule_name IS NOT NULL OR is_child OR r_attr >= 600 THEN 'null'::jsonb
                ELSE jsonb_build_object(
                    'tenant', CASE WHEN r_tenant < 100 THEN 'acme'
                                   WHEN r_tenant < 170 THEN 'globex'
                                   WHEN r_tenant < 220 THEN 'initech'
                                   ELSE 'tenant-' || mod(r_tenant, 200) END,
                    'region', (ARRAY['eu-west-1', 'us-east-1', 'ap-south-1'])[1 + mod(r_attr, 3)])
                    || CASE WHEN r_attr < 30 THEN '{{"priority": "high"}}'::jsonb
                            ELSE '{{}}'::jsonb END
           END AS attributes
    FROM n
),
b AS MATERIALIZED (
    SELECT i, id, name, queue_name, status, created_at, schedule_name, authenticated_user,
           attributes,
           CASE WHEN status IN ('SUCCESS', 'ERROR', 'CANCELLED',
                                'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
                THEN created_at + dur END AS completed_at,
           CASE WHEN status = 'ENQUEUED' THEN created_at
                WHEN status = 'PENDING' THEN created_at + dur / 2
                ELSE created_at + dur END AS updated_at,
           dur, is_parent, is_child, is_fork,
           CASE WHEN status = 'ENQUEUED' THEN 0
                WHEN is_parent THEN greatest(nsteps, 4) ELSE nsteps END AS nsteps,
           r_exec
    FROM u
)
"""

STATUS_INSERT = """
WITH {base}
INSERT INTO dbos.workflow_status (
    workflow_uuid, status, name, authenticated_user, assumed_role, authenticated_roles,
    request, output, error, executor_id, created_at, updated_at, application_version,
    application_id, class_name, config_name, recovery_attempts, queue_name,
    workflow_timeout_ms, workflow_deadline_epoch_ms, inputs, started_at_epoch_ms,
    deduplication_id, priority, queue_partition_key, forked_from, was_forked_from, owner_xid,
    parent_workflow_id, serialization, delay_until_epoch_ms, rate_limited, completed_at,
    attributes, schedule_name, debounce_deadline_epoch_ms, is_debounced, application_name,
    creator_xid)
SELECT id, status, name, authenticated_user,
       CASE WHEN authenticated_user = 'alice' THEN 'admin'
            WHEN authenticated_user IS NOT NULL THEN 'user' END,
       CASE WHEN authenticated_user = 'alice' THEN '["user", "admin"]'
            WHEN authenticated_user IS NOT NULL THEN '["user"]' END,
       NULL, NULL, NULL, 'executor-' || (r_exec + 1), created_at, updated_at,
       md5('sc-bench-version-' || ((i - 1) * {versions} / {n} + 1)),
       '', NULL, NULL,
       CASE WHEN status = 'ENQUEUED' THEN 0
            WHEN status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' THEN 102 ELSE 1 END,
       queue_name,
       NULL, NULL, NULL,
       CASE WHEN queue_name IS NOT NULL AND status <> 'ENQUEUED'
            THEN created_at + mod(dur, 200) END,
       NULL, 0, NULL,
       CASE WHEN is_fork THEN md5('sc-bench-' || (i - 1001))::uuid::text END,
       mod(i, 50) = 12 AND i + 1001 <= {n},
       CASE WHEN status = 'PENDING' THEN md5('sc-bench-owner-' || i)::uuid::text END,
       CASE WHEN is_child THEN md5('sc-bench-' || (i - 1))::uuid::text END,
       'py_pickle', NULL, false, completed_at,
       attributes, schedule_name, NULL, false, %(app)s,
       md5('sc-bench-creator-' || i)::uuid::text
FROM b
"""

INPUT_INSERT = """
WITH {base}
INSERT INTO dbos.workflow_input (workflow_uuid, inputs, retention_timestamp)
SELECT id, CASE WHEN is_child THEN %(child_inputs)s ELSE %(inputs)s END, created_at
FROM b
"""

OUTPUT_INSERT = """
WITH {base}
INSERT INTO dbos.workflow_output (workflow_uuid, output, error, retention_timestamp)
SELECT id,
       CASE WHEN status = 'SUCCESS' THEN
            CASE WHEN is_child THEN %(child_output)s ELSE %(output)s END END,
       CASE WHEN status = 'ERROR' THEN %(error)s END,
       completed_at
FROM b
WHERE status IN ('SUCCESS', 'ERROR')
"""

STEPS_INSERT = """
WITH {base}
INSERT INTO dbos.operation_outputs (
    workflow_uuid, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name,
    retention_timestamp)
SELECT id, f,
       CASE WHEN is_parent AND f = 3 THEN 'process_item'
            WHEN is_parent AND f = 4 THEN 'DBOS.getResult'
            ELSE (ARRAY['validate', 'fetch', 'reserve_stock', 'charge', 'notify', 'record',
                        'audit', 'publish', 'cleanup'])[1 + mod((f - 1), 9)] END,
       CASE WHEN is_parent AND f = 3 THEN NULL
            WHEN is_parent AND f = 4 THEN %(child_output)s
            WHEN status = 'ERROR' AND f = nsteps THEN NULL
            ELSE %(step_output)s END,
       CASE WHEN status = 'ERROR' AND f = nsteps AND NOT (is_parent AND f IN (3, 4))
            THEN %(step_error)s END,
       CASE WHEN is_parent AND f IN (3, 4) THEN id || '-3' END,
       created_at + 3 + (f - 1) * dur / nsteps,
       created_at + 3 + (f - 1) * dur / nsteps + greatest(dur / nsteps / 2, 1),
       CASE WHEN is_parent AND f = 3 THEN NULL ELSE 'py_pickle' END,
       %(app)s,
       created_at + 4 + (f - 1) * dur / nsteps + greatest(dur / nsteps / 2, 1)
FROM b
CROSS JOIN LATERAL generate_series(1, b.nsteps) AS f
"""

THOUSAND_STATUS = """
INSERT INTO dbos.workflow_status (
    workflow_uuid, status, name, executor_id, created_at, updated_at, application_version,
    application_id, recovery_attempts, priority, was_forked_from, serialization,
    rate_limited, completed_at, attributes, is_debounced, application_name, creator_xid)
VALUES (%(id)s, 'SUCCESS', 'bulk_import', 'executor-1', %(created)s, %(completed)s,
        md5('sc-bench-version-' || {versions}), '', 1, 0, false, 'py_pickle', false,
        %(completed)s, 'null'::jsonb, false, %(app)s, md5('sc-bench-creator-1000')::uuid::text)
"""

THOUSAND_INPUT = """
INSERT INTO dbos.workflow_input (workflow_uuid, inputs, retention_timestamp)
VALUES (%(id)s, %(inputs)s, %(created)s)
"""

THOUSAND_OUTPUT = """
INSERT INTO dbos.workflow_output (workflow_uuid, output, error, retention_timestamp)
VALUES (%(id)s, %(output)s, NULL, %(completed)s)
"""

THOUSAND_STEPS = """
INSERT INTO dbos.operation_outputs (
    workflow_uuid, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name,
    retention_timestamp)
SELECT %(id)s, f, 'import_batch', %(step_output)s, NULL, NULL,
       %(created)s + f * 100, %(created)s + f * 100 + 60, 'py_pickle', %(app)s,
       %(created)s + f * 100 + 61
FROM generate_series(1, 1000) AS f
"""

MARKER_TABLE = """
CREATE TABLE IF NOT EXISTS public.sc_bench_seed (
    workflows bigint NOT NULL,
    steps_per_workflow integer NOT NULL,
    workflow_rows bigint NOT NULL,
    step_rows bigint NOT NULL,
    typical_id text NOT NULL,
    thousand_steps_id text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    seconds double precision NOT NULL
)
"""


def render(template: str, n: int, steps_per_workflow: int) -> str:
    base = BASE.format(
        name=name_expr("r_name", "is_child"),
        fork_name=name_expr("r_name_src", "mod(i - 1001, 10) = 7"),
        t0="{t0}",
        span=SPAN_MS,
        n=n,
        spread=2 * steps_per_workflow - 1,
        r_status=rnd("m", 1),
        r_queue=rnd("m", 5),
        r_name=rnd("m", 9),
        r_name_src=rnd("m_src", 9),
        r_dur=rnd("m", 13),
        r_steps=rnd("m", 17),
        r_exec=rnd("m", 21),
        r_user=rnd("coalesce(m_parent, m)", 25),
        r_attr=rnd("m", 29),
        r_who=rnd("coalesce(m2_parent, m2)", 1),
        r_tenant=rnd("m2", 5),
        r_sched=rnd("m2", 9),
    )
    return template.format(base=base, versions=VERSIONS, n=n)


# --------------------------------------------------------------------------------------


def with_dbname(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + dbname))


def ensure_database(url: str) -> bool:
    dbname = urlparse(url).path.lstrip("/")
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
    return False


def existing_seed(url: str, n: int, steps: int) -> tuple | None:
    """The marker row when the database already holds this seed, else None (cheap)."""
    with psycopg.connect(url) as conn:
        has_marker = conn.execute("SELECT to_regclass('public.sc_bench_seed')").fetchone()
        has_dbos = conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()
        if not has_marker or not has_marker[0] or not has_dbos or not has_dbos[0]:
            return None
        marker = conn.execute(
            "SELECT workflow_rows, step_rows, typical_id, thousand_steps_id, loaded_at, seconds"
            " FROM public.sc_bench_seed WHERE workflows = %s AND steps_per_workflow = %s",
            (n, steps),
        ).fetchone()
        if marker is None:
            return None
        known = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid IN (%s, %s)",
            (marker[2], marker[3]),
        ).fetchone()
        reltuples = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'dbos.workflow_status'::regclass"
        ).fetchone()
        if known is None or known[0] != 2 or reltuples is None:
            return None
        if abs(reltuples[0] - marker[0]) > 0.05 * marker[0]:
            return None
        return marker


def run_dbos_program(url: str) -> None:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--dbos-program", "--url", url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the DBOS program failed (exit {proc.returncode})")
    seconds = time.perf_counter() - started
    print(f"  real dbos program (migrations + real workflows): {seconds:.1f} s")


def read_templates(conn: psycopg.Connection) -> dict[str, str]:
    """Payloads written by the real DBOS program, to copy into the bulk rows."""

    def one(query: str) -> str:
        row = conn.execute(query).fetchone()
        if row is None or row[0] is None:
            raise SystemExit(f"no template row for: {query}")
        return str(row[0])

    ws = "dbos.workflow_status s"
    return {
        "inputs": one(
            f"SELECT i.inputs FROM {ws} JOIN dbos.workflow_input i USING (workflow_uuid)"
            " WHERE s.name = 'order_workflow'"
        ),
        "output": one(
            f"SELECT o.output FROM {ws} JOIN dbos.workflow_output o USING (workflow_uuid)"
            " WHERE s.name = 'order_workflow'"
        ),
        "error": one(
            f"SELECT o.error FROM {ws} JOIN dbos.workflow_output o USING (workflow_uuid)"
            " WHERE s.name = 'charge_card' AND s.status = 'ERROR'"
        ),
        "child_inputs": one(
            f"SELECT i.inputs FROM {ws} JOIN dbos.workflow_input i USING (workflow_uuid)"
            " WHERE s.name = 'process_item'"
        ),
        "child_output": one(
            f"SELECT o.output FROM {ws} JOIN dbos.workflow_output o USING (workflow_uuid)"
            " WHERE s.name = 'process_item'"
        ),
        "step_output": one(
            "SELECT output FROM dbos.operation_outputs WHERE function_name = 'fetch'"
            " AND output IS NOT NULL ORDER BY function_id LIMIT 1"
        ),
        "step_error": one(
            "SELECT error FROM dbos.operation_outputs WHERE function_name = 'boom'"
            " AND error IS NOT NULL LIMIT 1"
        ),
    }


def check_shape(conn: psycopg.Connection) -> None:
    version = conn.execute("SELECT version FROM dbos.dbos_migrations").fetchone()
    ser = conn.execute("SELECT DISTINCT serialization FROM dbos.workflow_status").fetchall()
    print(f"  dbos_migrations.version = {version[0] if version else None}; serialization = {ser}")


def run_chunks(url: str, statement: str, params: dict, n: int, workers: int) -> None:
    """Run `statement` for i in 1..n in CHUNK-sized ranges on `workers` connections."""
    ranges = [(lo, min(lo + CHUNK - 1, n)) for lo in range(1, n + 1, CHUNK)]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                conn.execute("SET jit = off")
                while True:
                    with lock:
                        if not ranges or errors:
                            return
                        lo, hi = ranges.pop(0)
                    conn.execute(statement, {**params, "lo": lo, "hi": hi})
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def timed(label: str, fn, *args) -> None:
    started = time.perf_counter()
    fn(*args)
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)


def load(url: str, n: int, steps: int, workers: int) -> tuple[int, int, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        templates = read_templates(conn)
        check_shape(conn)
        now_ms = int(time.time() * 1000)
        # Data only: TRUNCATE keeps every table, index and constraint of DBOS's as it is.
        conn.execute(
            "TRUNCATE dbos.operation_outputs, dbos.workflow_input, dbos.workflow_output,"
            " dbos.workflow_status CASCADE"
        )
        conn.execute(
            """
            INSERT INTO dbos.application_versions
                (version_id, version_name, version_timestamp, created_at, application_name)
            SELECT md5('sc-bench-version-id-' || k)::uuid::text, md5('sc-bench-version-' || k),
                   %(t0)s + (k - 1) * %(period)s::bigint,
                   %(t0)s + (k - 1) * %(period)s::bigint, %(app)s
            FROM generate_series(1, %(versions)s) AS k
            ON CONFLICT DO NOTHING
            """,
            {
                "t0": now_ms - SPAN_MS,
                "period": SPAN_MS // VERSIONS,
                "app": APP_NAME,
                "versions": VERSIONS,
            },
        )
    t0 = str(now_ms - SPAN_MS)
    params = {**templates, "app": APP_NAME}

    def statement(template: str) -> str:
        return render(template, n, steps).replace("{t0}", t0)

    # workflow_status and the steps (the big one) in parallel, then the payload tables.
    status_thread = threading.Thread(
        target=timed,
        args=("workflow_status", run_chunks, url, statement(STATUS_INSERT), params, n, 1),
    )
    status_thread.start()
    timed(
        "operation_outputs",
        run_chunks,
        url,
        statement(STEPS_INSERT),
        params,
        n,
        max(1, workers - 1),
    )
    status_thread.join()
    inputs_thread = threading.Thread(
        target=timed,
        args=("workflow_input", run_chunks, url, statement(INPUT_INSERT), params, n, 1),
    )
    inputs_thread.start()
    timed("workflow_output", run_chunks, url, statement(OUTPUT_INSERT), params, n, 1)
    inputs_thread.join()

    with psycopg.connect(url, autocommit=True) as conn:
        # Each stored schedule last fired at its newest run (through DBOS's partial index).
        conn.execute(
            """
            UPDATE dbos.workflow_schedules ws SET last_fired_at = (
                SELECT to_char(to_timestamp(max(created_at) / 1000.0) AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
                FROM dbos.workflow_status s WHERE s.schedule_name = ws.schedule_name)
            """
        )
        created = now_ms - 2 * DAY_MS + 12_345
        completed = created + 100_500
        one = {**templates, "app": APP_NAME, "id": THOUSAND_STEPS_ID}
        one.update(created=created, completed=completed)
        conn.execute(THOUSAND_STATUS.format(versions=VERSIONS), one)
        for statement_ in (THOUSAND_INPUT, THOUSAND_OUTPUT, THOUSAND_STEPS):
            conn.execute(statement_, one)
        # VACUUM as well as ANALYZE: it sets the visibility map and hint bits, as autovacuum
        # would have long since done on a live system (it is off on this server).
        started = time.perf_counter()
        for table in ("workflow_status", "workflow_input", "workflow_output", "operation_outputs"):
            conn.execute(f"VACUUM (ANALYZE) dbos.{table}")
        print(f"  VACUUM (ANALYZE): {time.perf_counter() - started:.1f} s")
        workflows = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()[0]
        step_rows = conn.execute("SELECT count(*) FROM dbos.operation_outputs").fetchone()[0]
        typical = pick_typical(conn, now_ms, steps)
    return workflows, step_rows, typical


def pick_typical(conn: psycopg.Connection, now_ms: int, steps: int) -> str:
    """A SUCCESS order_workflow with exactly `steps` steps, no parent or child, ~15 days old."""
    row = conn.execute(
        """
        SELECT s.workflow_uuid
        FROM (SELECT workflow_uuid, name, status, parent_workflow_id, forked_from, created_at
              FROM dbos.workflow_status
              WHERE created_at <= %(at)s ORDER BY created_at DESC LIMIT 500) s
        WHERE s.name = 'order_workflow' AND s.status = 'SUCCESS'
          AND s.parent_workflow_id IS NULL AND s.forked_from IS NULL
          AND NOT EXISTS (SELECT 1 FROM dbos.operation_outputs o
                          WHERE o.workflow_uuid = s.workflow_uuid
                            AND o.child_workflow_id IS NOT NULL)
          AND (SELECT count(*) FROM dbos.operation_outputs o
               WHERE o.workflow_uuid = s.workflow_uuid) = %(steps)s
        ORDER BY s.created_at DESC LIMIT 1
        """,
        {"at": now_ms - 15 * DAY_MS, "steps": steps},
    ).fetchone()
    if row is None:
        raise SystemExit("no typical workflow found")
    return str(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--workflows", type=int, default=1_000_000)
    parser.add_argument("--steps-per-workflow", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="connections loading at once")
    parser.add_argument("--force", action="store_true", help="reload even if already seeded")
    parser.add_argument("--dbos-program", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_program:
        dbos_program(args.url)
        return
    if args.workflows < 1000 or args.steps_per_workflow < 1:
        parser.error("--workflows must be at least 1000 and --steps-per-workflow at least 1")

    created = ensure_database(args.url)
    print(f"database {urlparse(args.url).path.lstrip('/')}: {'created' if created else 'exists'}")
    if not args.force:
        marker = existing_seed(args.url, args.workflows, args.steps_per_workflow)
        if marker is not None:
            rows, steps, typical, thousand, loaded_at, seconds = marker
            print(
                f"already seeded on {loaded_at:%Y-%m-%d %H:%M} in {seconds:.1f} s; nothing to do"
                " (--force reloads)"
            )
            report(rows, steps, typical, thousand)
            return

    started = time.perf_counter()
    run_dbos_program(args.url)
    workflows, step_rows, typical = load(
        args.url, args.workflows, args.steps_per_workflow, args.workers
    )
    seconds = time.perf_counter() - started
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(MARKER_TABLE)
        conn.execute("DELETE FROM public.sc_bench_seed")
        conn.execute(
            "INSERT INTO public.sc_bench_seed (workflows, steps_per_workflow, workflow_rows,"
            " step_rows, typical_id, thousand_steps_id, seconds)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                args.workflows,
                args.steps_per_workflow,
                workflows,
                step_rows,
                typical,
                THOUSAND_STEPS_ID,
                seconds,
            ),
        )
    print(f"seeded in {seconds:.1f} s")
    report(workflows, step_rows, typical, THOUSAND_STEPS_ID)


def report(workflows: int, steps: int, typical: str, thousand: str) -> None:
    print(f"workflow_status rows:   {workflows:,}")
    print(f"operation_outputs rows: {steps:,}")
    print(f"typical workflow:       {typical}")
    print(f"1,000-step workflow:    {thousand}")
    print(json.dumps({"typical": typical, "thousand_steps": thousand}))


if __name__ == "__main__":
    main()
