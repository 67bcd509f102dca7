"""URL converters.

`workflow`: a workflow id as the application chose it, slashes, spaces and line breaks
included (DBOS puts no limit on one). Like Django's `path`, but `.` stops at a line break.
The route that ends with one takes the rest of the path: routes under a workflow must come
before it.
"""

from collections.abc import Callable
from urllib.parse import quote

from django.urls import register_converter, reverse
from django.utils.http import RFC3986_SUBDELIMS


class WorkflowIdConverter:
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(WorkflowIdConverter, "workflow")

# Stands for a workflow id while its page's URL is reversed once for a whole list.
_MARKER = "workflow-id-goes-here"


class WorkflowUrls:
    """The URL of any workflow's page under one route, as `reverse` gives it: the route
    reversed once, each id quoted into the marker's place as `reverse` quotes it (a list
    links every row; the `workflow` converter passes ids through as they are). Templates
    hold it as a value (`workflow_href` calls it): they do not call it themselves."""

    do_not_call_in_templates = True

    def __init__(self, route: str, *args: object) -> None:
        reversed_ = reverse(route, args=[*args, _MARKER])
        self.before, _, self.after = reversed_.rpartition(_MARKER)

    def __call__(self, workflow_id: str) -> str:
        quoted = quote(workflow_id, safe=RFC3986_SUBDELIMS + "/~:@")
        return self.before + quoted + self.after


def workflow_urls(app_name: str) -> Callable[[str], str]:
    """The URL of any workflow's page in `app_name` (see `WorkflowUrls`)."""
    return WorkflowUrls("workflow-detail", app_name)
