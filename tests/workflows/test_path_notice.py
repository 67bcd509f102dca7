"""Stories about the notice an operator reads before acting: with no executor connected,
actions are written into the system database (and which are not available that way); with
neither an executor nor a system database, actions are unavailable. The pages ask the
same function the actions use to choose their path."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from conductor.models import DATABASE_PATH, EXECUTOR_PATH, Executor
from forks import native
from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows import actions
from workflows.actions import (
    DATABASE_ACTIONS,
    Action,
    Parameters,
    action_path,
    database_write,
    path_notice,
)
from workflows.jobs import bulk_not_on_database

DATABASE_SAYS = "actions are written into the system database directly (the database path)"


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def connect(application: Application) -> Executor:
    return Executor.objects.create(
        application=application,
        executor_id="exec-1",
        language="python",
        dbos_version="3.2.0",
        state=Executor.State.CONNECTED,
        last_seen_at=timezone.now(),
    )


def test_the_path_is_the_executor_then_the_database_then_none(system_databases: None) -> None:
    with_database = Application.objects.create(name="with-db", system_database_url="sqlite://")
    bare = Application.objects.create(name="bare")
    executor = connect(bare)
    assert action_path(bare, [executor]) == EXECUTOR_PATH
    assert action_path(with_database, [executor]) == EXECUTOR_PATH
    assert action_path(with_database, []) == DATABASE_PATH
    assert action_path(bare, []) == ""
    assert path_notice(with_database, [executor], not_on_database=["Rewind"]) is None
    database = path_notice(with_database, [], not_on_database=["Rewind"])
    assert database is not None
    assert (database.path, database.unavailable) == (DATABASE_PATH, ["Rewind"])
    nowhere = path_notice(bare, [], not_on_database=["Rewind"])
    assert nowhere is not None
    assert (nowhere.path, nowhere.unavailable) == ("", [])
    assert "actions are unavailable" in nowhere.text
    assert "a key of bare" in nowhere.text


def test_the_actions_said_unavailable_are_exactly_those_database_write_refuses(
    system_databases: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every writer answers at once: what is left is database_write's own dispatch.
    for name in (
        "native_cancel",
        "native_resume",
        "native_delete",
        "native_fork",
        "native_fork_from_failure",
        "native_rewind",
    ):
        monkeypatch.setattr(native, name, lambda **_: "written")
    application = Application.objects.create(name="pinned", system_database_url="sqlite://")
    for action in Action:
        if action in DATABASE_ACTIONS:
            written: object = database_write(application, action, "wf", Parameters())
            assert written == "written"
        else:
            with pytest.raises(actions.DatabaseWriteError, match="not done without"):
                database_write(application, action, "wf", Parameters())
    # Every single-workflow action is written there now (rewind too).
    assert actions.not_on_database() == []


def test_an_operator_reads_before_acting_that_the_action_goes_to_the_database(
    otto: User, vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    application = registered(fixture)
    page = f"/apps/{application.name}/workflows/{by_role(fixture, 'error')}/"
    as_operator = signed_in(otto).get(page).content.decode()
    assert DATABASE_SAYS in as_operator
    assert "Not available that way" not in as_operator
    # Said before the first form that acts (fork from failure, in the failure box).
    assert as_operator.index(DATABASE_SAYS) < as_operator.index('class="failure-actions"')
    assert DATABASE_SAYS not in signed_in(vera).get(page).content.decode()
    connect(application)
    assert DATABASE_SAYS not in signed_in(otto).get(page).content.decode()


def test_the_bulk_bar_says_which_bulk_actions_the_database_path_cannot_do(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    application = registered(sdk_fixtures["py320-sqlite-default"])
    listing = signed_in(otto).get(f"/apps/{application.name}/workflows/").content.decode()
    bar = listing.split('id="bulk"')[1].split('class="column-picker"')[0]
    assert DATABASE_SAYS in bar
    # Every bulk action is written there now (a fork onto a version too).
    assert "Not available that way" not in bar
    assert bulk_not_on_database() == []
    connect(application)
    listing = signed_in(otto).get(f"/apps/{application.name}/workflows/").content.decode()
    assert DATABASE_SAYS not in listing


def test_an_executor_whose_stepchange_process_died_is_neither_offered_nor_said(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    # Its row still says connected until its heartbeat is stale, but nothing beats for the
    # process holding it: the page offers what the database path does, as the notice says.
    fixture = sdk_fixtures["py320-sqlite-default"]
    application = registered(fixture)
    executor = connect(application)
    executor.application_version = "v-held-by-the-dead"
    executor.channel_name = "specific.gone-process!abc"
    executor.save()
    page = signed_in(otto).get(f"/apps/{application.name}/workflows/{by_role(fixture, 'error')}/")
    html = page.content.decode()
    assert DATABASE_SAYS in html
    assert "v-held-by-the-dead" not in html
