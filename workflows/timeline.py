"""How a workflow's steps are drawn on its page: the timeline (each step, wait and child
workflow a bar on one time axis, in lanes) and the step table, whose runs of alike steps
are folded so that a workflow of 1,000 steps fits on a screen.

Both are drawn from an outline (`sources.Outline`: every step, no outputs), with no
request per step. A lane's bars are written here as SVG text, not by a template loop:
Django's template engine takes 70 ms or more for 1,000 bars where this module draws the
whole timeline in about 4 ms (bench/timeline.py, bench/RESULTS.md), which is the
difference between a 1,000-step page in budget and one far over it. Every name written
into them is escaped here; the numbers are this module's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from stepchange.templatetags.console import seconds
from workflows.models import ACTIVE_STATUSES as ACTIVE
from workflows.models import epoch_ms
from workflows.sources import OutlineStep as Step
from workflows.sources import StoredValue, Workflow

# What DBOS records as a step while the workflow waits (Python and TypeScript spell them
# alike): a durable sleep, a message or event awaited, a child's result awaited.
WAITS = frozenset(
    {
        "DBOS.sleep",
        "DBOS.recv",
        "DBOS.getEvent",
        "DBOS.getResult",
        "DBOS.waitFirst",
        "DBOS.waitAll",
        "DBOS.readStream",
    }
)
# The axis runs from 0 to SCALE in each lane's viewBox; a bar is at least MIN_BAR wide, so
# that a step of a millisecond in an hour-long workflow can still be seen and clicked.
SCALE = 1000
MIN_BAR = 2.0
# More lanes than this (a workflow alternating between steps) and lanes gather every step
# of a name instead of each run of them.
MAX_LANES = 40
# A run of alike steps this long is folded in the table to its first, last, failed and
# slowest steps; and the table shows at most MAX_ROWS steps before folding the rest.
FOLD_RUN = 6
MAX_ROWS = 60
# A workflow that was not queued gets a lane for the wait before its first step only if it
# waited this long.
NOTABLE_START_MS = 1000
# The axis is labelled at these fractions of its length.
TICKS = (0, 0.25, 0.5, 0.75, 1)


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: a workflow, its queue wait, or a run of its steps."""

    label: str
    # What the bars are: "workflow", "queue", "step", "wait", "child" or "group".
    kind: str
    bars: SafeString
    # The step the label opens in the side panel (None for the workflow and queue lanes).
    first: Step | None = None
    count: int = 1
    took: str = ""
    failed: int = 0
    slowest: Step | None = None
    # A lane of one step that started a child workflow can show the child's lanes.
    child_workflow_id: str | None = None
    status: str = ""


@dataclass(frozen=True)
class Timeline:
    lanes: list[Lane]
    start_ms: int
    end_ms: int
    ticks: list[str]
    # Lanes gather the steps of a name (there were too many runs for a lane each).
    grouped: bool = False
    # Steps with no times recorded (older SDKs), which have no bar.
    untimed: int = 0
    slowest: Step | None = None

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Fold:
    """Steps left out of the table: those after function id `after`, up to `until`."""

    count: int
    after: int
    until: int
    names: str


@dataclass(frozen=True)
class Row:
    """A row of the step table: a step (and its child's page), or a fold."""

    step: Step | None = None
    fold: Fold | None = None
    child_url: str = ""
    error: str = ""
    outcome: str = ""
    slowest: bool = False


def outcome(step: Step) -> str:
    """The class of a step's bar and row: failed, wait, child or ok."""
    if step.error is not None:
        return "failed"
    if step.function_name in WAITS:
        return "wait"
    if step.child_workflow_id:
        return "child"
    return "ok"


def slowest(steps: Iterable[Step]) -> Step | None:
    """The step that took longest, waits aside (a sleep is not slow); the first if tied."""
    found: Step | None = None
    longest = -1
    for step in steps:
        took = step.duration_ms
        if took is not None and took > longest and step.function_name not in WAITS:
            found, longest = step, took
    return found


def failing_step(steps: Sequence[Step]) -> Step | None:
    """The step a workflow's error came from: the last one that failed."""
    return next((step for step in reversed(steps) if step.error is not None), None)


def headline(value: StoredValue | None, *, limit: int = 200) -> str:
    """The first line of an error (or any value), to name it in a header or a row."""
    if value is None:
        return ""
    shown = value.value
    if isinstance(shown, dict) and isinstance(shown.get("message"), str):
        # "Error" is the name decoding gives an error stored as bare text: the text says it.
        name = shown.get("name")
        named = isinstance(name, str) and name and name != "Error"
        text = f"{name}: {shown['message']}" if named else shown["message"]
    elif isinstance(shown, str):
        text = shown
    elif shown is None:
        # Not decoded (or cut short in a list): what the decoder said, else the text itself.
        text = value.notes[0] if value.notes else value.raw or ""
    else:
        text = json.dumps(shown, default=str, ensure_ascii=False)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


class _Axis:
    """Epoch milliseconds to the lanes' 0..SCALE."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, max(end, start + 1)
        self.factor = SCALE / (self.end - self.start)

    def bar(self, start: int, end: int) -> tuple[float, float]:
        x = min(max((start - self.start) * self.factor, 0.0), SCALE - MIN_BAR)
        right = min(max((end - self.start) * self.factor, 0.0), SCALE)
        return x, max(right - x, MIN_BAR)


def _rect(x: float, width: float, kind: str, title: str, function_id: int | None = None) -> str:
    """One bar; `title` must be escaped already."""
    step = "" if function_id is None else f' data-step="{function_id}"'
    return (
        f'<rect x="{x:.1f}" y="3" width="{width:.1f}" height="10" class="bar {kind}"{step}>'
        f"<title>{title}</title></rect>"
    )


def axis_of(workflow: Workflow, steps: Sequence[Step], *, now: datetime) -> tuple[int, int]:
    """From the workflow's creation (or its first step) to the last thing that happened:
    its completion, its last step's end, or now while it runs."""
    times = [t for s in steps for t in (s.started_ms, s.completed_ms) if t is not None]
    created = epoch_ms(workflow.created_at)
    start = created if created is not None else min(times, default=0)
    ends = [*times, epoch_ms(workflow.completed_at) or 0, epoch_ms(workflow.dequeued_at) or 0]
    if workflow.status in ACTIVE:
        ends.append(epoch_ms(now) or 0)
    return start, max(ends, default=start)


def timeline(
    workflow: Workflow,
    steps: Sequence[Step],
    *,
    now: datetime,
    axis: tuple[int, int] | None = None,
) -> Timeline:
    """The lanes of `workflow` and `steps` on `axis` (epoch ms; by default its own): the
    workflow itself, the wait before its first step, then a lane per run of alike steps
    (or per step name, when runs would be too many)."""
    start, end = axis or axis_of(workflow, steps, now=now)
    scale = _Axis(start, end)
    running = workflow.status in ACTIVE
    lanes = [_workflow_lane(workflow, scale, running=running)]
    queued = _queue_lane(workflow, steps, scale)
    if queued is not None:
        lanes.append(queued)
    runs = _runs(steps)
    grouped = len(runs) > MAX_LANES
    if grouped:
        runs = _by_name(steps)
    # A child's lanes (drawn on its parent's axis) leave the marker to the parent's step.
    top = slowest(steps) if axis is None else None
    lanes += [_step_lane(run, scale, top, running=running, grouped=grouped) for run in runs]
    return Timeline(
        lanes=lanes,
        start_ms=scale.start,
        end_ms=scale.end,
        ticks=[_tick(fraction * (scale.end - scale.start)) for fraction in TICKS],
        grouped=grouped,
        untimed=sum(1 for step in steps if step.started_ms is None),
        slowest=top,
    )


def _tick(offset_ms: float) -> str:
    return "0" if offset_ms == 0 else "+" + seconds(offset_ms / 1000)


def _workflow_lane(workflow: Workflow, scale: _Axis, *, running: bool) -> Lane:
    status = (workflow.status or "").lower()
    created = epoch_ms(workflow.created_at)
    done = epoch_ms(workflow.completed_at)
    end = scale.end if running or done is None else done
    bars = ""
    took = seconds(workflow.duration) if workflow.duration is not None else ""
    if created is not None:
        x, width = scale.bar(created, end)
        title = escape(f"{workflow.name or 'workflow'} · {status or 'unknown'}")
        bars = _rect(
            x, width, f"workflow status-{escape(status)}", f"{title} · {took or 'running'}"
        )
    return Lane(
        label=workflow.name or workflow.workflow_id,
        kind="workflow",
        bars=mark_safe(bars),  # noqa: S308 (escaped above)
        took=took,
        status=status,
    )


def _queue_lane(workflow: Workflow, steps: Sequence[Step], scale: _Axis) -> Lane | None:
    """The wait from creation to leaving its queue (or to the first step), if any."""
    created = epoch_ms(workflow.created_at)
    first = next((s.started_ms for s in steps if s.started_ms is not None), None)
    began = epoch_ms(workflow.dequeued_at) or first
    if created is None or began is None or began <= created:
        return None
    # A workflow started at once takes a few milliseconds to reach its first step: no wait
    # worth a lane, unless it was queued or the start itself was slow.
    if not workflow.queue_name and began - created < NOTABLE_START_MS:
        return None
    label = f"queued on {workflow.queue_name}" if workflow.queue_name else "before the first step"
    took = seconds((began - created) / 1000)
    x, width = scale.bar(created, began)
    bars = mark_safe(_rect(x, width, "queue", escape(f"{label} · {took}")))  # noqa: S308
    return Lane(label=label, kind="queue", bars=bars, took=took)


def _runs(steps: Sequence[Step]) -> list[list[Step]]:
    """Consecutive steps of one name; a step that started a child is a run of its own,
    so that its lane can show the child."""
    runs: list[list[Step]] = []
    for step in steps:
        last = runs[-1] if runs else None
        if (
            last is not None
            and not step.child_workflow_id
            and not last[-1].child_workflow_id
            and last[-1].function_name == step.function_name
        ):
            last.append(step)
        else:
            runs.append([step])
    return runs


def _by_name(steps: Sequence[Step]) -> list[list[Step]]:
    named: dict[str | None, list[Step]] = {}
    for step in steps:
        named.setdefault(step.function_name, []).append(step)
    return list(named.values())


def _step_lane(
    run: list[Step], scale: _Axis, top: Step | None, *, running: bool, grouped: bool
) -> Lane:
    name = run[0].function_name or "(unnamed)"
    shown = escape(name)
    bars: list[str] = []
    total = 0
    failed = 0
    kinds: set[str] = set()
    origin, factor, right_edge = scale.start, scale.factor, SCALE - MIN_BAR
    # The hot loop of a long workflow's page: a bar per step, placed and written inline.
    for step in run:
        kind = outcome(step)
        kinds.add(kind)
        failed += kind == "failed"
        began, ended = step.started_ms, step.completed_ms
        if began is None:
            continue
        note = _NOTES.get(kind, "")
        if ended is None:
            # Not finished: while the workflow runs, it runs to now; else its end is unknown.
            ended = scale.end if running else began
            kind = "running" if running else kind
        total += ended - began
        x = min(max((began - origin) * factor, 0.0), right_edge)
        width = max(min(max((ended - origin) * factor, 0.0), SCALE) - x, MIN_BAR)
        if step is top:
            kind += " slowest"
        took = seconds((ended - began) / 1000)
        bars.append(
            f'<rect x="{x:.1f}" y="3" width="{width:.1f}" height="10" class="bar {kind}"'
            f' data-step="{step.function_id}"><title>{shown} #{step.function_id} · {took}{note}'
            "</title></rect>"
        )
    first = run[0]
    kind = "group" if grouped else (kinds.pop() if len(kinds) == 1 else "step")
    return Lane(
        label=name,
        kind=kind,
        bars=mark_safe("".join(bars)),  # noqa: S308 (names escaped above)
        first=first,
        count=len(run),
        took=seconds(total / 1000) if any(s.started_ms is not None for s in run) else "",
        failed=failed,
        slowest=top if top is not None and any(step is top for step in run) else None,
        # The lane of the step that started the child, not of a wait for its result.
        child_workflow_id=first.child_workflow_id
        if len(run) == 1 and outcome(first) != "wait"
        else None,
    )


_NOTES = {"failed": " · failed", "wait": " · waited"}


def rows(
    steps: Sequence[Step],
    *,
    child_url: Callable[[str], str],
    top: Step | None,
    fold: bool = True,
) -> list[Row]:
    """The step table: every step, or (folding) runs of FOLD_RUN or more alike steps cut
    to their first, last, failed and slowest, and at most about MAX_ROWS steps in all;
    each stretch left out is a Fold that the page can open in place."""
    keep = _kept(steps, top) if fold else range(len(steps))
    found: list[Row] = []
    previous = -1
    for index in keep:
        if index > previous + 1:
            found.append(Row(fold=fold_of(steps[previous + 1 : index], steps[previous])))
        found.append(_row(steps[index], child_url, top))
        previous = index
    return found


def _row(step: Step, child_url: Callable[[str], str], top: Step | None) -> Row:
    return Row(
        step=step,
        child_url=child_url(step.child_workflow_id) if step.child_workflow_id else "",
        error=headline(step.error),
        outcome=outcome(step),
        slowest=step is top,
    )


def fold_of(left_out: Sequence[Step], before: Step) -> Fold:
    """The fold of `left_out`, the steps after `before`."""
    names = list(dict.fromkeys(step.function_name or "(unnamed)" for step in left_out))
    return Fold(
        count=len(left_out),
        after=before.function_id or 0,
        until=left_out[-1].function_id or 0,
        names=", ".join(names[:3]) + (", …" if len(names) > 3 else ""),
    )


def _kept(steps: Sequence[Step], top: Step | None) -> list[int]:
    """Indexes of the steps the folded table shows."""
    always = {0, len(steps) - 1} if steps else set()
    always |= {i for i, step in enumerate(steps) if step.error is not None or step is top}
    keep: set[int] = set(always)
    index = 0
    for run in _runs(steps):
        if len(run) < FOLD_RUN:
            keep.update(range(index, index + len(run)))
        else:
            keep |= {index, index + len(run) - 1}
            run_top = slowest(run)
            keep |= {index + i for i, step in enumerate(run) if step is run_top}
        index += len(run)
    ordered = sorted(keep)
    if len(ordered) > MAX_ROWS:
        # Still too many (a long workflow of varied steps): its start and end, and what
        # must be seen wherever it is.
        ordered = sorted(set(ordered[: MAX_ROWS // 2]) | set(ordered[-10:]) | always)
    return ordered
