"""The form renderer: Django's, with plain inputs and selects written in Python.

Django renders each widget through a template of its own, a few includes deep: 60-80 us
an input here, and the workflow list's filter form has a dozen of them and a checkbox
per status, half the time of rendering that page. Inputs, and the checkboxes and radio
buttons a form lays out itself (`{{ choice.tag }}`), and selects of plain options are
written here exactly as Django's widget templates write them; every other widget goes
to the templates.
"""

from typing import Any

from django.forms.renderers import DjangoTemplates
from django.utils.html import conditional_escape

# Django's widget templates that are nothing but an include of input.html.
INPUTS = frozenset(
    f"django/forms/widgets/{name}.html"
    for name in [
        "input",
        "checkbox",
        "color",
        "date",
        "datetime",
        "email",
        "file",
        "hidden",
        "number",
        "password",
        "search",
        "tel",
        "text",
        "time",
        "url",
    ]
)
# A choice's input, which wraps itself in a label unless a template lays it out.
OPTIONS = frozenset(
    f"django/forms/widgets/{name}.html"
    for name in ("input_option", "checkbox_option", "radio_option")
)


SELECT = "django/forms/widgets/select.html"
SELECT_OPTION = "django/forms/widgets/select_option.html"


def _text(value: Any) -> str:
    # As `{{ value|stringformat:"s" }}` shows it: escaped unless marked safe.
    return str(conditional_escape(str(value)))


def _attrs(attrs: dict[str, Any]) -> str:
    # django/forms/widgets/attrs.html
    html = ""
    for name, value in attrs.items():
        if value is True:
            html += f" {_text(name)}"
        elif value is not False:
            html += f' {_text(name)}="{_text(value)}"'
    return html


def input_tag(widget: dict[str, Any]) -> str:
    """django/forms/widgets/input.html."""
    html = f'<input type="{_text(widget["type"])}" name="{_text(widget["name"])}"'
    if widget["value"] is not None:
        html += f' value="{_text(widget["value"])}"'
    return html + _attrs(widget["attrs"]) + ">"


def select_tag(widget: dict[str, Any]) -> str:
    """django/forms/widgets/select.html with its options' select_option.html, line breaks
    and all."""
    html = f'<select name="{_text(widget["name"])}"{_attrs(widget["attrs"])}>'
    for group_name, options, _ in widget["optgroups"]:
        if group_name:
            html += f'\n  <optgroup label="{_text(group_name)}">'
        for option in options:
            html += (
                f'\n  <option value="{_text(option["value"])}"{_attrs(option["attrs"])}>'
                f"{_text(option['label'])}</option>\n"
            )
        if group_name:
            html += "\n  </optgroup>"
    return html + "\n</select>"


def _plain_options(widget: dict[str, Any]) -> bool:
    return all(
        option["template_name"] == SELECT_OPTION
        for _, options, _ in widget["optgroups"]
        for option in options
    )


class QuickWidgets(DjangoTemplates):
    def render(self, template_name: str, context: dict[str, Any], request: Any = None) -> str:
        widget = context.get("widget")
        if isinstance(widget, dict):
            if template_name in INPUTS or (
                template_name in OPTIONS and not widget.get("wrap_label")
            ):
                return input_tag(widget)
            if template_name == SELECT and _plain_options(widget):
                return select_tag(widget)
        rendered: str = super().render(template_name, context, request)
        return rendered
