"""Stories about what the browser may run: StepChange's own files only, the API docs'
Swagger UI included, and no template that would need more."""

import re

from django.test import Client

from stepchange.settings import BASE_DIR

# What a policy without 'unsafe-inline' or 'unsafe-eval' refuses: inline scripts, handler
# attributes, style attributes and elements, htmx's hx-on and hx-trigger filters.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*application/json)|<style|\son[a-z]+=|\sstyle=|hx-on|"
    r'hx-trigger="[^"]*\['
)


def test_every_answer_carries_a_policy_of_stepchanges_own_files(db: None) -> None:
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy + ";"
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy


def test_the_api_docs_use_the_local_swagger_ui_and_refuse_frames(db: None) -> None:
    response = Client().get("/api/v1/docs")
    html = response.content.decode()
    assert response["X-Frame-Options"] == "DENY"
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html


def test_no_template_holds_inline_script_style_or_evaluated_htmx() -> None:
    offenders = [
        f"{path.relative_to(BASE_DIR)}: {match.group(0)}"
        for path in sorted((BASE_DIR / "templates").rglob("*.html"))
        for match in INLINE.finditer(path.read_text())
    ]
    assert offenders == []
