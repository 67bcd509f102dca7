"""The names an application's workflows were seen with: what the list's search box offers
as you type, and how it tells a name from an id.

DBOS keeps no index on workflow names, so a distinct scan of a large system database is
out of the question per keystroke, or even per page. StepChange keeps its own list
(`SeenName`, in its own database), which a background loop fills: at first from the
newest SCAN_ROWS workflows, then from the workflows created since the newest one seen,
bounded the same way; one statement on DBOS's created_at index each time. A name used
only by older workflows is learned once one of them is listed. Through an executor (no
system database to scan), the names of the workflows the list showed are noted.
"""

import asyncio
import logging
from collections.abc import Iterable

from django.db import DatabaseError
from django.db.models import Max

from stepchange.asyncdb import db_async
from stepchange.models import Application
from workflows import systemdb
from workflows.models import SeenName

logger = logging.getLogger(__name__)

# The most workflows one refresh reads, and how often the loop refreshes every application.
SCAN_ROWS = 50_000
REFRESH_SECONDS = 60
# The most names the search box offers, and the most one search reads its text as.
OFFERED = 200
MATCHED = 50
# A name longer than SeenName keeps is never offered (and so is searched by its id).
LONGEST = SeenName._meta.get_field("name").max_length or 255


def names_offered(application: Application) -> list[str]:
    """The names to offer, alphabetically: the OFFERED most recently seen."""
    recent = SeenName.objects.filter(application=application).order_by("-last_seen_ms")
    return sorted(recent.values_list("name", flat=True)[:OFFERED])


def names_matching(application: Application, text: str) -> list[str]:
    """The names seen that start with `text` (ignoring case), at most MATCHED of them."""
    found = SeenName.objects.filter(application=application, name__istartswith=text)
    return list(found.order_by("name").values_list("name", flat=True)[:MATCHED])


def names_seen_refresh(application: Application) -> int:
    """Learn the names of the workflows created since the newest one seen (at most the
    SCAN_ROWS newest of them); how many names were new or seen again."""
    mark = SeenName.objects.filter(application=application).aggregate(Max("last_seen_ms"))
    rows = systemdb.workflows(application)
    if mark["last_seen_ms__max"]:
        rows = rows.filter(created_at_ms__gt=mark["last_seen_ms__max"])
    seen = [
        SeenName(application=application, name=name, last_seen_ms=created)
        for name, created in rows.names_seen(newest=SCAN_ROWS)
        if len(name) <= LONGEST
    ]
    SeenName.objects.bulk_create(
        seen,
        update_conflicts=True,
        unique_fields=["application", "name"],
        update_fields=["last_seen_ms"],
    )
    return len(seen)


def names_seen_note(application: Application, names: Iterable[str | None]) -> None:
    """Note names the list showed (through an executor); known ones are left as they are."""
    new = {name for name in names if name and len(name) <= LONGEST}
    if new:
        SeenName.objects.bulk_create(
            [SeenName(application=application, name=name) for name in new],
            ignore_conflicts=True,
        )


def _refresh_every_application() -> None:
    for application in Application.objects.exclude(system_database_url=""):
        try:
            names_seen_refresh(application)
        except (systemdb.SystemDatabaseError, DatabaseError) as exc:
            # The list says what is wrong with the database; the names wait for the next turn.
            logger.info("Names of %s not refreshed: %s", application.name, exc)


async def names_refresh_forever() -> None:
    """The background loop (stepchange.background) that keeps every application's names."""
    while True:
        await db_async(_refresh_every_application)()
        await asyncio.sleep(REFRESH_SECONDS)
