"""What the timeline writes as SVG text escapes whatever the system database or an
executor said: a status, a name."""

from datetime import UTC, datetime, timedelta

from workflows.sources import Workflow
from workflows.timeline import timeline

NASTY = '"><script>alert(1)</script>'


def test_a_workflows_status_and_name_are_escaped_in_its_bar() -> None:
    created = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
    workflow = Workflow(
        "wf-nasty",
        status=NASTY,
        name=NASTY,
        created_at=created,
        completed_at=created + timedelta(seconds=2),
    )
    drawn = timeline(workflow, [], now=created + timedelta(seconds=3))
    bars = "".join(str(lane.bars) for lane in drawn.lanes)
    assert "status-" in bars
    assert "<script>" not in bars
    assert "status-&quot;&gt;&lt;script&gt;" in bars
