"""Django's database sessions, read through a prepared query (`stepchange.prepared`): the
row by its key, its expiry checked here. Every signed-in request loads its session."""

import logging
from typing import Any

from django.contrib.sessions.backends import db
from django.core.exceptions import SuspiciousOperation
from django.db import router
from django.utils import timezone

from stepchange.prepared import prepared


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        model = self.model
        key = self.session_key
        try:
            if key is None:  # no cookie: nothing to read
                raise model.DoesNotExist
            alias = router.db_for_read(model)

            def by_key(session_key: str) -> Any:
                return model.objects.using(alias).filter(session_key=session_key)[:1]

            found = prepared(("session", alias), by_key, str).first(key)
            if found is None or found.expire_date <= timezone.now():
                raise model.DoesNotExist
            return found
        except (model.DoesNotExist, SuspiciousOperation) as exc:
            if isinstance(exc, SuspiciousOperation):
                logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
            self._session_key = None
            return None
