"""URL converters.

`workflow`: a workflow id as the application chose it, slashes, spaces and line breaks
included (DBOS puts no limit on one). Like Django's `path`, but `.` stops at a line break.
The route that ends with one takes the rest of the path: routes under a workflow must come
before it.
"""

from django.urls import register_converter


class WorkflowIdConverter:
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(WorkflowIdConverter, "workflow")
