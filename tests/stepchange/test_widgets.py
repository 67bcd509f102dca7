"""The console's form renderer writes plain inputs itself: every form of the console must
come out exactly as Django's own renderer makes it, unbound, filled in and refused."""

from typing import Any

import pytest
from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.contrib.auth.models import User
from django.forms.renderers import DjangoTemplates
from django.utils.safestring import mark_safe

from conductor.views import RequestFilterForm, RetentionForm
from stepchange.views import AuditFilterForm, TokenForm
from stepchange.widgets import QuickWidgets, input_tag
from workflows.views import ActionForm, BulkForm, SavedViewForm, WorkflowFilterForm

FILLED = {
    "status": ["ERROR", "ENQUEUED"],
    "workflow_name": 'orders "big" & <small>',
    "start_time": "2026-12-03T07:05",
    "end_time": "not a time",
    "limit": "100",
    "cursor": "abc'def",
    "name": "mine",
    "shared": "on",
    "reason": "because",
    "start_step": "x",
    "username": "vic",
    "password": "secret",
    "days": "-1",
}


class Odd(forms.Form):
    """Widgets the console's forms do not use, and attrs of every kind."""

    number = forms.IntegerField(widget=forms.NumberInput(attrs={"min": 0, "step": True}))
    hidden = forms.CharField(widget=forms.HiddenInput(attrs={"data-x": False}))
    email = forms.EmailField(required=False, help_text="We never write to it.")
    choice = forms.ChoiceField(choices=[("a", "A & a"), ("b", "B")], widget=forms.RadioSelect)
    when = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    safe = forms.CharField(initial=mark_safe("<b>kept</b>"))
    check = forms.BooleanField(required=False)
    many = forms.MultipleChoiceField(
        choices=[("1", "one"), ("2", "two")], widget=forms.CheckboxSelectMultiple
    )
    pick = forms.ChoiceField(choices=[("x", "X")])
    grouped = forms.ChoiceField(
        choices=[("Group <1>", [("a", "A"), ("b", "B")]), ("c", "C & D")], initial="b"
    )
    several = forms.MultipleChoiceField(choices=[("1", "one"), ("2", "two")], required=False)


def _forms(data: dict[str, Any] | None) -> list[forms.BaseForm]:
    user = User(username="vic")
    made: list[forms.BaseForm] = [
        cls(data)
        for cls in (
            WorkflowFilterForm,
            SavedViewForm,
            AuditFilterForm,
            TokenForm,
            RequestFilterForm,
            RetentionForm,
            Odd,
        )
    ]
    made += [ActionForm(data), BulkForm(data), AuthenticationForm(data=data)]
    made.append(PasswordChangeForm(user, data))
    return made


def _shown(form: forms.BaseForm) -> str:
    parts = [str(form)]
    for field in form:
        parts.append(str(field))
        parts += [str(choice.tag()) for choice in field.subwidgets]
        parts += [str(choice) for choice in field.subwidgets]
    return "\n".join(parts)


@pytest.mark.parametrize("data", [None, FILLED, {}], ids=["unbound", "filled", "empty"])
def test_every_console_form_is_rendered_as_django_renders_it(
    db: None, data: dict[str, Any] | None
) -> None:
    for django_form, quick_form in zip(_forms(data), _forms(data), strict=True):
        django_form.renderer = DjangoTemplates()
        quick_form.renderer = QuickWidgets()
        expected = _shown(django_form)
        assert _shown(quick_form) == expected, type(django_form).__name__
        assert "<input" in expected
    odd = next(form for form in _forms(data) if isinstance(form, Odd))
    assert "<optgroup" in _shown(odd)


def test_an_input_is_written_as_the_template_writes_it() -> None:
    widget = {
        "type": "text",
        "name": 'n"1',
        "value": "<v & 'w'>",
        "attrs": {"id": "id_n", "required": True, "disabled": False, "maxlength": 5},
    }
    assert input_tag(widget) == (
        '<input type="text" name="n&quot;1" value="&lt;v &amp; &#x27;w&#x27;&gt;"'
        ' id="id_n" required maxlength="5">'
    )
    assert input_tag({**widget, "value": None, "attrs": {}}) == (
        '<input type="text" name="n&quot;1">'
    )
