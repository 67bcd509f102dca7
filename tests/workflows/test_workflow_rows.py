"""The long tables rendered in Python write what the templates wrote, escaped."""

from datetime import UTC, datetime
from html import escape

from django.urls import reverse

from workflows.templatetags.workflow_rows import step_rows, value_block, workflow_rows

NASTY = '<img src=x onerror="alert(1)">'


def test_a_workflow_row_escapes_every_value_and_links_the_workflow() -> None:
    row = workflow_rows(
        [
            {
                "workflow_id": "wf&1 ?",
                "status": "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
                "name": NASTY,
                "queue_name": NASTY,
                "executor_id": "executor-with-a-long-name",
                "application_version": NASTY,
                "created_at": datetime(2026, 11, 22, 8, 0, 1, tzinfo=UTC),
                "completed_at": datetime(2026, 11, 22, 8, 0, 3, 500000, tzinfo=UTC),
                "forked_from": "source-workflow-id-that-is-long",
                "parent_workflow_id": None,
            }
        ],
        "orders",
        True,
    )
    assert NASTY not in row
    assert row.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 3
    # The link is the one `{% url %}` made: Django's quoting, then escaped.
    assert f'href="{escape(reverse("workflow-detail", args=["orders", "wf&1 ?"]))}"' in row
    assert 'href="/apps/orders/workflows/wf&amp;1%20%3F/"' in row
    assert 'value="wf&amp;1 ?"' in row
    assert (
        '<span class="status status-max_recovery_attempts_exceeded">maxrecoveryattemptsexceeded'
        in row
    )
    assert "executor-wit…" in row
    assert "fork of <code>source-workflow-i…</code>" in row
    assert "child of" not in row
    assert 'title="2026-11-22T08:00:01+00:00">2026-11-22 08:00:01</td>' in row
    assert "2.50 s" in row
    assert 'name="ids"' not in workflow_rows(
        [{"workflow_id": "a", "status": "SUCCESS"}], "o", False
    )


def test_a_step_row_shows_the_output_or_the_error_and_the_child() -> None:
    rows = step_rows(
        [
            {
                "function_id": 1,
                "function_name": NASTY,
                "output": {"html": NASTY},
                "output_format": "py_pickle",
                "error": None,
                "child_workflow_id": "child-1",
                "started_at": datetime(2026, 11, 22, 8, 0, 1, 123456, tzinfo=UTC),
                "completed_at": datetime(2026, 11, 22, 8, 0, 1, 223456, tzinfo=UTC),
            },
            {
                "function_id": 2,
                "function_name": "charge",
                "output": None,
                "error": {"message": "card declined"},
                "error_format": "portable_json",
                "error_notes": ["decoded <partly>"],
                "child_workflow_id": None,
                "started_at": None,
                "completed_at": None,
            },
        ],
        "orders",
    )
    first, second = rows.split("\n<tr", 1)
    assert NASTY not in rows
    assert "08:00:01.123" in first
    assert "100 ms" in first
    assert "Output <span" in first
    assert "py_pickle" in first
    assert 'href="/apps/orders/workflows/child-1/"' in first
    assert 'class="failed"' in second
    assert "Error <span" in second
    assert "card declined" in second
    assert 'title="decoded &lt;partly&gt;"' in second


def test_a_missing_value_is_a_dash() -> None:
    assert value_block("Output", None, None, None) == '<span class="muted">—</span>'
    assert " open>" in value_block("Input", [1], "portable_json", None, opened=True)
