"""The offline viewer: an export file read as a source, and the pages that show it.

Vera (a viewer) opens an export of a shop's order workflow and its child, and browses it
with the workflow page's own layout; Sam (signed in, no role) opens his own; nobody opens
another's file but an admin. Bad files are refused on the form, nothing kept.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import pickle
import pickletools
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from forks import exports, offline
from forks.models import OpenedExport
from stepchange.models import AuditRecord
from tests.conftest import make_user, signed_in

NOW = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)
ROOT = "order-1"
CHILD = "order-1/charge"
T0 = 1_795_315_694_000


def _b64_pickle(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode()


def _class_pickle() -> str:
    """A pickle that names a class of the exporting application (shop.models.Order): the
    viewer shows it as a placeholder with a note, never importing or running anything."""
    raw = b"\x80\x04cshop.models\nOrder\n)\x81}\x94\x8c\x02id\x94K\x07sb."
    # A valid pickle by the opcodes it holds (never loaded here).
    list(pickletools.genops(raw))
    return base64.b64encode(raw).decode()


def _element(
    workflow_id: str,
    *,
    status: str = "SUCCESS",
    parent: str | None = None,
    child: str | None = None,
    output: str | None = None,
) -> exports.Element:
    steps = [
        {
            "workflow_uuid": workflow_id,
            "function_id": 1,
            "function_name": "reserve_stock",
            "output": _b64_pickle({"reserved": 3}),
            "error": None,
            "child_workflow_id": None,
            "started_at_epoch_ms": T0 + 100,
            "completed_at_epoch_ms": T0 + 300,
            "serialization": "py_pickle",
        }
    ]
    if child:
        steps.append(
            {
                "workflow_uuid": workflow_id,
                "function_id": 2,
                "function_name": "charge",
                "output": _b64_pickle(child),
                "error": None,
                "child_workflow_id": child,
                "started_at_epoch_ms": T0 + 400,
                "completed_at_epoch_ms": T0 + 900,
                "serialization": "py_pickle",
            }
        )
    return exports.Element(
        status={
            "workflow_uuid": workflow_id,
            "status": status,
            "name": "place_order",
            "class_name": None,
            "queue_name": None,
            "executor_id": "exec-1",
            "application_version": "v7",
            "inputs": _b64_pickle({"args": (42,), "kwargs": {"express": True}}),
            "output": output if output is not None else _b64_pickle({"total": 12.5}),
            "error": None,
            "created_at": T0,
            "updated_at": T0 + 1000,
            "completed_at": T0 + 1000,
            "recovery_attempts": 1,
            "parent_workflow_id": parent,
            "forked_from": None,
            "serialization": "py_pickle",
        },
        steps=steps,
        events=[
            {
                "workflow_uuid": workflow_id,
                "key": "progress",
                "value": _b64_pickle("charged"),
                "serialization": "py_pickle",
            }
        ],
        history=[
            {
                "workflow_uuid": workflow_id,
                "key": "progress",
                "value": _b64_pickle("reserved"),
                "function_id": 1,
                "serialization": "py_pickle",
            }
        ],
        streams=[
            {
                "workflow_uuid": workflow_id,
                "key": "log",
                "value": _b64_pickle("line one"),
                "offset": 0,
                "function_id": 1,
                "serialization": "py_pickle",
            }
        ],
    )


def _export(*, signed: bool = True, child_output: str | None = None, **kwargs: Any) -> bytes:
    doc = exports.document(
        application="shop",
        language="python",
        schema_version=112,
        source=exports.FROM_DATABASE,
        root_id=ROOT,
        elements=[
            _element(ROOT, child=CHILD, **kwargs),
            _element(CHILD, parent=ROOT, output=child_output),
        ],
        exported_by="otto",
        exported_at=NOW,
    )
    if not signed:
        doc.pop("signature")
    return exports.dumps(doc)


def _source(raw: bytes | None = None) -> offline.ExportSource:
    return offline.ExportSource(exports.read(raw or _export()))


# The source.


def test_a_workflow_reads_back_decoded_with_its_steps_and_extras() -> None:
    detail = asyncio.run(_source().detail(ROOT))
    workflow = detail.workflow
    assert workflow is not None
    assert workflow.status == "SUCCESS"
    assert workflow.input is not None
    assert workflow.input.value == {"args": [42], "kwargs": {"express": True}}
    assert workflow.output is not None
    assert workflow.output.value == {"total": 12.5}
    assert workflow.output.raw == _b64_pickle({"total": 12.5})
    assert workflow.recovery_attempts == 1
    assert workflow.created_at == datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert detail.outline is not None
    assert [(s.function_id, s.child_workflow_id) for s in detail.outline.steps] == [
        (1, None),
        (2, CHILD),
    ]
    assert [(e.key, e.value.value) for e in detail.extras.events] == [("progress", "charged")]
    assert [(e.function_id, e.value.value) for e in detail.extras.history] == [(1, "reserved")]
    assert detail.extras.streams == {"log": ["line one"]}
    assert detail.extras.notifications == []


def test_a_step_reads_with_its_output_and_steps_page() -> None:
    source = _source()
    step = asyncio.run(source.step(ROOT, 1))
    assert step is not None
    assert step.output is not None
    assert step.output.value == {"reserved": 3}
    assert asyncio.run(source.step(ROOT, 9)) is None
    first = asyncio.run(source.steps(ROOT, limit=1))
    assert [s.function_id for s in first.items] == [1]
    assert first.next_cursor == "1"
    rest = asyncio.run(source.steps(ROOT, cursor=first.next_cursor, limit=1))
    assert [s.function_id for s in rest.items] == [2]
    assert rest.next_cursor is None


def test_a_pickle_that_names_a_class_shows_as_undecodable() -> None:
    source = _source(_export(child_output=_class_pickle()))
    child = asyncio.run(source.get(CHILD))
    assert child is not None
    assert child.output is not None
    assert child.output.value["__pickle__"] == "shop.models.Order"
    assert child.output.notes == ("custom type shop.models.Order shown as a placeholder",)
    assert "shop" not in sys.modules


def test_the_family_is_what_the_file_holds() -> None:
    source = _source()
    root = asyncio.run(source.family(ROOT))
    assert [w.workflow_id for w in root.children.shown] == [CHILD]
    assert root.children.more == 0
    assert root.parent is None
    child = asyncio.run(source.family(CHILD))
    assert child.parent is not None
    assert child.parent.status == "SUCCESS"
    # A workflow the file names but does not hold is a card with no status.
    outside = offline.ExportSource(
        exports.read(
            exports.dumps(
                exports.document(
                    application="shop",
                    language="python",
                    schema_version=None,
                    source=exports.FROM_EXECUTOR,
                    root_id=CHILD,
                    elements=[_element(CHILD, parent=ROOT)],
                    exported_by="",
                    exported_at=NOW,
                )
            )
        )
    )
    orphan = asyncio.run(outside.family(CHILD))
    assert orphan.parent is not None
    assert orphan.parent.status is None
    assert asyncio.run(outside.get(ROOT)) is None


@pytest.mark.parametrize(
    ("read", "what"),
    [
        (lambda s: s.list(None), "workflow list"),
        (lambda s: s.queues(), "queues"),
        (lambda s: s.queue_depths(), "queues"),
        (lambda s: s.overview(now=NOW), "overview"),
        (lambda s: s.schedules(None), "schedules"),
        (lambda s: s.schedule("nightly"), "schedules"),
    ],
)
def test_reads_without_meaning_offline_say_so(read: Any, what: str) -> None:
    with pytest.raises(offline.OfflineRead, match=f"no {what} to show offline"):
        asyncio.run(read(_source()))


# The pages.


@pytest.fixture
def vera(db: None) -> User:
    return make_user(username="vera", role="viewer")


def _open(client: Client, raw: bytes, name: str = "shop-order-1.stepchange.json") -> Any:
    return client.post("/exports/", {"file": SimpleUploadedFile(name, raw)})


def _opened_url(response: Any) -> str:
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"])


def test_opening_a_signed_file_shows_its_root_read_only(vera: User) -> None:
    client = signed_in(vera)
    url = _opened_url(_open(client, _export()))
    opened = OpenedExport.objects.get()
    assert url == f"/exports/{opened.pk}/workflows/{ROOT}/"
    page = client.get(url)
    text = page.content.decode()
    assert page.status_code == 200
    assert "Offline:" in text
    assert "shop-order-1.stepchange.json" in text
    assert "signed by this StepChange" in text
    assert "exported by <strong>otto</strong>" in text
    assert "schema version 112" in text
    # The same layout: timeline, step table, values; decoded, not raw.
    assert 'id="view-timeline"' in text
    assert 'id="view-steps"' in text
    assert "&quot;total&quot;: 12.5" in text
    assert "&quot;express&quot;: true" in text
    # Links to the child stay in the viewer; there is no action and no live header.
    assert f'href="/exports/{opened.pk}/workflows/order-1/charge/"' in text
    assert "/apps/" not in text
    assert 'class="actions"' not in text
    assert "every 2s" not in text
    assert "What was done to it" not in text
    # Kept compressed, with its digest and size.
    raw = _export()
    assert opened.size == len(raw)
    assert gzip.decompress(bytes(opened.data)) == raw
    assert opened.owner == vera
    record = AuditRecord.objects.get(action="export.view")
    assert record.result == "ok"
    assert record.parameters["sha256"] == opened.sha256 == exports.read(raw).sha256
    assert record.application_name == "shop"
    assert record.target == ROOT


def test_a_pending_workflow_is_not_followed_live(vera: User) -> None:
    client = signed_in(vera)
    page = client.get(_opened_url(_open(client, _export(status="PENDING"))))
    text = page.content.decode()
    assert "pending" in text
    assert "every 2s" not in text
    assert "following live" not in text


def test_an_unsigned_file_opens_and_says_so(vera: User) -> None:
    client = signed_in(vera)
    text = client.get(_opened_url(_open(client, _export(signed=False)))).content.decode()
    assert '<strong class="signature">unsigned</strong>: The file carries no signature.' in text


def test_a_file_signed_elsewhere_opens_with_a_bad_signature(vera: User) -> None:
    with override_settings(SECRET_KEY="another-stepchange-" + "x" * 40):
        raw = _export()
    client = signed_in(vera)
    text = client.get(_opened_url(_open(client, raw))).content.decode()
    assert '<strong class="signature">bad signature</strong>' in text
    assert "signed by another StepChange" in text


def test_the_parts_of_the_page_read_the_file_again(vera: User) -> None:
    client = signed_in(vera)
    url = _opened_url(_open(client, _export(child_output=_class_pickle())))
    htmx = {"HX-Request": "true"}
    family = client.get(url, {"part": "family"}, headers=htmx).content.decode()
    assert "Its children" in family
    assert CHILD in family
    panel = client.get(url, {"part": "panel", "step": "2"}, headers=htmx).content.decode()
    assert "Step 2" in panel
    assert "/exports/" in panel
    assert CHILD in panel
    raw = client.get(url, {"raw": "output"}).content.decode()
    assert _b64_pickle({"total": 12.5}) in raw
    assert "py_pickle" in raw
    step_raw = client.get(url, {"raw": "output", "step": "1"}).content.decode()
    assert _b64_pickle({"reserved": 3}) in step_raw
    lanes = client.get(
        url,
        {"part": "lane", "child": CHILD, "from": str(T0), "to": str(T0 + 1000), "under": "lane-2"},
        headers=htmx,
    )
    assert lanes.status_code == 200
    assert "reserve_stock" in lanes.content.decode()
    child = client.get(url.replace(ROOT, CHILD)).content.decode()
    assert "custom type shop.models.Order shown as a placeholder" in child
    assert "shop" not in sys.modules


def test_a_workflow_the_file_does_not_hold_is_not_found(vera: User) -> None:
    client = signed_in(vera)
    url = _opened_url(_open(client, _export()))
    page = client.get(url.replace(ROOT, "someone-else"))
    assert page.status_code == 404
    assert "in this file" in page.content.decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json at all", "The file is not JSON"),
        (b'{"format": "something else"}', "not a StepChange export"),
        (b"\x1f\x8bnot really gzip", "cannot be unzipped"),
    ],
)
def test_a_file_that_does_not_read_is_refused_on_the_form(
    vera: User, raw: bytes, message: str
) -> None:
    response = _open(signed_in(vera), raw, name="bad.json")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not OpenedExport.objects.exists()
    record = AuditRecord.objects.get(action="export.view")
    assert record.result == "failed"
    assert message in record.detail


def test_a_file_too_large_is_refused_before_it_is_read(vera: User) -> None:
    with override_settings(EXPORT_FILE_MAX_BYTES=2048):
        response = _open(signed_in(vera), b" " * 4096)
    assert response.status_code == 400
    assert "an export file may be at most 2,048 bytes" in response.content.decode()
    assert not OpenedExport.objects.exists()


def test_no_file_is_refused(vera: User) -> None:
    response = signed_in(vera).post("/exports/", {})
    assert response.status_code == 400
    assert offline.NO_FILE in response.content.decode()


def test_only_its_owner_and_admins_open_a_file(vera: User) -> None:
    url = _opened_url(_open(signed_in(vera), _export()))
    opened = OpenedExport.objects.get()
    sam = make_user(username="sam")
    otto = make_user(username="otto", role="operator")
    ada = make_user(username="ada", role="admin")
    for other in (sam, otto):
        assert signed_in(other).get(url).status_code == 404
        assert signed_in(other).get(f"/exports/{opened.pk}/").status_code == 404
        assert "shop-order-1" not in signed_in(other).get("/exports/").content.decode()
    assert signed_in(ada).get(url).status_code == 200
    assert Client().get(url).status_code == 302
    assert Client().get(url)["Location"].startswith("/accounts/login/")
    # Sam, with no role at all, may open a file of his own.
    assert _open(signed_in(sam), _export()).status_code == 302


def test_reopening_from_the_recent_files_is_audited(vera: User) -> None:
    client = signed_in(vera)
    _open(client, _export())
    opened = OpenedExport.objects.get()
    listing = client.get("/exports/").content.decode()
    assert f'href="/exports/{opened.pk}/"' in listing
    again = client.get(f"/exports/{opened.pk}/")
    assert again["Location"] == f"/exports/{opened.pk}/workflows/{ROOT}/"
    assert AuditRecord.objects.filter(action="export.view", result="ok").count() == 2


def test_files_are_kept_a_bounded_time_and_count(vera: User, monkeypatch: Any) -> None:
    monkeypatch.setattr(offline, "KEEP_PER_USER", 2)
    client = signed_in(vera)
    for _ in range(3):
        _opened_url(_open(client, _export()))
    assert OpenedExport.objects.filter(owner=vera).count() == 2
    old = OpenedExport.objects.order_by("pk").first()
    assert old is not None
    OpenedExport.objects.filter(pk=old.pk).update(
        uploaded_at=timezone.now() - timedelta(days=offline.KEEP_DAYS, minutes=1)
    )
    # Past its time it no longer opens, and the next prune forgets it.
    assert client.get(f"/exports/{old.pk}/").status_code == 404
    assert offline.opened_exports_prune() == 1
    assert OpenedExport.objects.count() == 1


def test_the_nav_offers_it_without_any_application(vera: User) -> None:
    home = signed_in(vera).get("/exports/")
    assert home.status_code == 200
    assert 'href="/exports/">Open an export</a>' in home.content.decode()
    assert 'enctype="multipart/form-data"' in home.content.decode()


def test_a_gzipped_file_is_kept_as_it_came(vera: User) -> None:
    raw = gzip.compress(_export())
    _opened_url(_open(signed_in(vera), raw))
    assert bytes(OpenedExport.objects.get().data) == raw
    assert json.loads(gzip.decompress(raw))["workflow_id"] == ROOT


def test_the_prune_command_forgets_old_files(vera: User) -> None:
    _opened_url(_open(signed_in(vera), _export()))
    OpenedExport.objects.update(uploaded_at=timezone.now() - timedelta(days=offline.KEEP_DAYS + 1))
    out = StringIO()
    call_command("prune_opened_exports", stdout=out)
    assert out.getvalue().strip() == "Forgot 1 opened export file."
    assert not OpenedExport.objects.exists()
