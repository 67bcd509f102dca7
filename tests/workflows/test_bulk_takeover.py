"""A bulk job whose process died (its beat is gone) is taken over at once, not when its
lease runs out, and continues where it stopped; a job of a live process is left to it, and
a process that lost its job stops instead of racing the new holder."""

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from conductor import processes
from stepchange.models import Application, AuditRecord
from tests.fake_executor import FakeExecutor
from tests.workflows.test_bulk import items_of, job_left_behind
from workflows import jobs
from workflows.models import BulkJob

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "specific.other-process"


@pytest.fixture(autouse=True)
def _no_beats() -> Iterator[None]:
    cache.delete(processes.KEY.format(process=OTHER))
    yield
    cache.delete(processes.KEY.format(process=OTHER))


async def job_held_by(orders: Application, holder: str, states: dict[str, str]) -> BulkJob:
    """A job another process runs now: its lease has most of a minute to go."""
    job = await job_left_behind(orders, "cancel", states)
    job.held_by, job.lease_until = holder, timezone.now() + timedelta(seconds=50)
    await job.asave(update_fields=["held_by", "lease_until"])
    return job


async def test_a_job_whose_process_stopped_beating_is_taken_over_at_once(
    orders: Application, executor: FakeExecutor
) -> None:
    job = await job_held_by(orders, OTHER, {"a": "ok", "b": "sent", "c": "pending"})
    running = asyncio.create_task(jobs.run_next())
    cancel = await executor.answer("cancel", success=True)
    assert await asyncio.wait_for(running, 3)
    # What was answered is not sent again; what was sent unanswered and what was left are.
    assert cancel["workflow_ids"] == ["b", "c"]
    assert await executor.communicator.receive_nothing(timeout=0.2)
    items = await items_of(job.pk)
    assert [items[w].state for w in "abc"] == ["ok", "ok", "ok"]
    done = await BulkJob.objects.aget(pk=job.pk)
    assert done.state == "done"
    assert done.held_by == await processes.own_process()
    audited = [r.target async for r in AuditRecord.objects.filter(parameters__bulk_job=job.pk)]
    assert sorted(audited) == ["b", "c"]


async def test_a_job_of_a_live_process_is_left_to_it(
    orders: Application, executor: FakeExecutor
) -> None:
    await cache.aset(processes.KEY.format(process=OTHER), 1, timeout=5)
    job = await job_held_by(orders, OTHER, {"a": "pending"})
    assert not await jobs.run_next()
    assert await executor.communicator.receive_nothing(timeout=0.2)
    left = await BulkJob.objects.aget(pk=job.pk)
    assert (left.held_by, left.state) == (OTHER, "running")


async def test_a_process_that_lost_its_job_stops_at_its_next_batch(
    orders: Application, executor: FakeExecutor
) -> None:
    job = await job_held_by(orders, OTHER, {"a": "pending"})
    # This process holds it as far as it knows; then the other one takes it back.
    job.held_by = await processes.own_process()
    await BulkJob.objects.filter(pk=job.pk).aupdate(held_by=OTHER)
    await jobs.run(job)
    assert await executor.communicator.receive_nothing(timeout=0.2)
    assert (await items_of(job.pk))["a"].state == "pending"
    left = await BulkJob.objects.aget(pk=job.pk)
    assert (left.held_by, left.state) == (OTHER, "running")
