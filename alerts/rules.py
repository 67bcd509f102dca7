"""What each kind of alert rule takes, and the one validation of it that the console form,
the API and the services share. Pure: no database, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerts.models import AlertRule

Kind = AlertRule.Kind

NOT_A_NUMBER = "{label} must be a whole number; got {value!r}."
TOO_SMALL = "{label} must be at least {low}; got {value}."
TOO_LARGE = "{label} must be at most {high}; got {value}."
REQUIRED = "{label} is required for this kind of rule."
NOT_TEXT = "{label} must be text; got {value!r}."
UNKNOWN_PARAMETER = "This kind of rule takes no {name!r}; it takes: {known}."
UNKNOWN_KIND = "Unknown rule kind {kind!r}; known: {known}."
BAD_STATUS = "status must be PENDING, ENQUEUED or both; got {value!r}."
WAITING_STATUSES = ("PENDING", "ENQUEUED")

DAY = 86_400


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    number: bool = True
    required: bool = True
    low: int = 0
    high: int = 1_000_000_000
    default: Any = None
    # The shape of a text parameter, for the API's document (checked here too).
    pattern: str | None = None


WINDOW = Param("window_seconds", "The window (seconds)", low=1, high=30 * DAY)
THRESHOLD = Param("threshold", "The threshold", low=0)
OLDER = Param("older_than_seconds", "How long (seconds)", low=1, high=365 * DAY)
NAME = Param("workflow_name", "The workflow name", number=False)
NAME_OPTIONAL = Param("workflow_name", "The workflow name", number=False, required=False)
QUEUE = Param("queue_name", "The queue name", number=False, required=False)
_ONE = "(?:PENDING|ENQUEUED|pending|enqueued)"
STATUS = Param(
    "status",
    "The status",
    number=False,
    required=False,
    default="PENDING,ENQUEUED",
    pattern=rf"^\s*{_ONE}(?:\s*,\s*{_ONE})*\s*$",
)

PARAMETERS: dict[str, tuple[Param, ...]] = {
    Kind.FAILURES: (NAME, THRESHOLD, WINDOW),
    Kind.STUCK: (STATUS, OLDER, NAME_OPTIONAL),
    Kind.QUEUE_DEPTH: (QUEUE, THRESHOLD),
    Kind.NO_EXECUTOR: (OLDER,),
    Kind.EXECUTOR_GONE: (),
    Kind.POISON: (),
    Kind.STRANDED: (),
    Kind.FLAPPING: (THRESHOLD, WINDOW),
    Kind.FORK_WAITING: (OLDER,),
}


class RuleError(ValueError):
    """A rule refused: the message says why."""


def parameters_clean(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a rule of `kind`, checked and normalised; RuleError says what is
    wrong with the first bad one. Empty strings count as absent."""
    if kind not in PARAMETERS:
        raise RuleError(UNKNOWN_KIND.format(kind=kind, known=", ".join(PARAMETERS)))
    params = PARAMETERS[kind]
    known = {p.name for p in params}
    for name, value in raw.items():
        if name not in known and value not in (None, ""):
            raise RuleError(
                UNKNOWN_PARAMETER.format(name=name, known=", ".join(sorted(known)) or "nothing")
            )
    cleaned: dict[str, Any] = {}
    for param in params:
        value = raw.get(param.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if param.required:
                raise RuleError(REQUIRED.format(label=param.label))
            if param.default is not None:
                cleaned[param.name] = param.default
            continue
        cleaned[param.name] = _number(param, value) if param.number else _text(param, value)
    if kind == Kind.STUCK:
        cleaned["status"] = _statuses(cleaned["status"])
    return cleaned


def _number(param: Param, value: Any) -> int:
    if isinstance(value, bool):
        raise RuleError(NOT_A_NUMBER.format(label=param.label, value=value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise RuleError(NOT_A_NUMBER.format(label=param.label, value=value)) from None
    if not isinstance(value, int):
        raise RuleError(NOT_A_NUMBER.format(label=param.label, value=value))
    if value < param.low:
        raise RuleError(TOO_SMALL.format(label=param.label, low=param.low, value=value))
    if value > param.high:
        raise RuleError(TOO_LARGE.format(label=param.label, high=param.high, value=value))
    return value


def _text(param: Param, value: Any) -> str:
    if not isinstance(value, str):
        raise RuleError(NOT_TEXT.format(label=param.label, value=value))
    return value.strip()[:300]


def _statuses(value: str) -> str:
    statuses = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not statuses or any(s not in WAITING_STATUSES for s in statuses):
        raise RuleError(BAD_STATUS.format(value=value))
    return ",".join(dict.fromkeys(statuses))


def describe(kind: str, parameters: dict[str, Any]) -> str:
    """One line saying what a rule watches, for pages and messages."""
    p = parameters
    match kind:
        case Kind.FAILURES:
            return (
                f"more than {p['threshold']} failures of {p['workflow_name']} "
                f"in {p['window_seconds']} s"
            )
        case Kind.STUCK:
            what = p.get("workflow_name") or "a workflow"
            return f"{what} {p['status']} for more than {p['older_than_seconds']} s"
        case Kind.QUEUE_DEPTH:
            return f"queue {p.get('queue_name') or '(any)'} deeper than {p['threshold']}"
        case Kind.NO_EXECUTOR | Kind.FORK_WAITING:
            return f"{Kind(kind).label} (T = {p['older_than_seconds']} s)"
        case Kind.FLAPPING:
            return f"more than {p['threshold']} recoveries in {p['window_seconds']} s"
    return str(Kind(kind).label)
