"""What an edited fork is planned from and what the plan writes: the source workflow's raw
rows (`Source`), where they were read and so where the fork goes (`Origin`), every row the
fork writes (`Plan`), and the errors of a fork that cannot be planned or run.

Both routes share these: `forks.services` reads a `Source` from a system database and
writes a `Plan` there; `forks.imports` reads one from an executor's export and sends a
`Plan` back to that executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workflows import systemdb
from workflows.actions import WORKFLOW_NOT_FOUND

# Where a fork's rows go: straight into the system database, or to an executor that
# imports them (`forks.imports`).
DATABASE_ROUTE = "database"
IMPORT_ROUTE = "import"

# The same words as the native actions use.
NO_SOURCE = WORKFLOW_NOT_FOUND


class ForkError(Exception):
    """A fork that cannot be staged or run; `status` is the API's code."""

    status = 400


class ForkInvalidError(ForkError):
    """Some values or choices are wrong; `errors` names the field (and step) of each."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(_describe(error) for error in errors))
        self.errors = errors


class SourceNotFoundError(ForkError):
    status = 404


class ForkRefusedError(ForkError):
    status = 409


class NoSystemDatabaseError(ForkError):
    status = 503


def _describe(error: dict[str, Any]) -> str:
    where = (
        error["field"] if error.get("step") is None else f"{error['field']} (step {error['step']})"
    )
    return f"{where}: {error['message']}"


@dataclass(frozen=True)
class Source:
    """The source workflow as its database has it: raw rows, column for column."""

    status: dict[str, Any]
    inputs: str | None
    steps: list[dict[str, Any]]
    history: list[dict[str, Any]]
    streams: list[dict[str, Any]]

    @property
    def serialization(self) -> str | None:
        return self.status.get("serialization") or None


@dataclass(frozen=True, kw_only=True)
class Origin:
    """Where the source was read, and so where the fork goes: the system database at
    `alias`, or (route "import") the executor that exported it."""

    route: str
    source: Source
    schema: systemdb.Schema
    exists: Callable[[str], bool]
    alias: str = ""
    executor_id: str = ""
    language: str = ""


@dataclass
class Plan:
    """Every row the fork writes, table by table, and what the operator should know."""

    alias: str
    schema: systemdb.Schema
    source_id: str
    new_id: str
    start_step: int
    serialization: str
    application_version: str | None
    queue_name: str
    status_row: dict[str, Any]
    input_row: dict[str, Any] | None
    step_rows: list[dict[str, Any]]
    history_rows: list[dict[str, Any]]
    event_rows: list[dict[str, Any]]
    stream_rows: list[dict[str, Any]]
    warnings: list[str]
    diff: dict[str, Any]
    route: str = DATABASE_ROUTE
    # The import route's executor, which exported the source and imports the fork.
    executor_id: str = ""
    language: str = ""
