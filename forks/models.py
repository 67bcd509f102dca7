"""Edited forks as StepChange keeps them: a draft that operators stage, review and run.

The draft holds what the operator asked for (the restart step, the new values as plain
JSON, the choices), never an encoded payload: encoding happens when the fork runs, against
the system database as it is then. What was actually written is in the audit log.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class EditedFork(models.Model):
    class Status(models.TextChoices):
        STAGED = "staged"
        APPROVED = "approved"
        DONE = "done"
        DISCARDED = "discarded"

    application = models.ForeignKey(
        "stepchange.Application", on_delete=models.CASCADE, related_name="edited_forks"
    )
    source_workflow_id = models.CharField(max_length=255)
    start_step = models.IntegerField()
    # The operator's new values: None = unchanged. Inputs as {"args": [...], "kwargs": {...}}.
    input = models.JSONField(null=True, blank=True)
    input_edited = models.BooleanField(default=False)
    # {"<function_id>": value}; a step given an output has its error cleared.
    step_outputs = models.JSONField(default=dict, blank=True)
    new_workflow_id = models.CharField(max_length=255)
    application_version = models.CharField(max_length=255, blank=True)
    queue_name = models.CharField(max_length=255)
    # The format the edited values are written in.
    serialization = models.CharField(max_length=32)
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STAGED)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    approved_by_name = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    run_by_name = models.CharField(max_length=150, blank=True)
    run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One draft per new workflow id: running two of them would fork twice.
            models.UniqueConstraint(
                fields=["application", "new_workflow_id"], name="edited_fork_new_id_once"
            )
        ]

    def __str__(self) -> str:
        return f"edited fork {self.pk} of {self.source_workflow_id}"

    @property
    def open(self) -> bool:
        return self.status in (self.Status.STAGED, self.Status.APPROVED)

    def edited_steps(self) -> list[int]:
        return sorted(int(function_id) for function_id in self.step_outputs)

    def summary(self) -> dict[str, Any]:
        return {
            "input_edited": self.input_edited,
            "edited_steps": self.edited_steps(),
        }


class ImportUpload(models.Model):
    """An export file uploaded for import, held between its preview and the confirmation
    (any StepChange process may serve either). Read again and checked again on confirm;
    deleted once imported, and a day after it was uploaded."""

    application = models.ForeignKey(
        "stepchange.Application", on_delete=models.CASCADE, related_name="import_uploads"
    )
    sha256 = models.CharField(max_length=64)
    content = models.BinaryField()
    uploaded_by_name = models.CharField(max_length=150)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.application_id}/{self.sha256[:12]}"


class OpenedExport(models.Model):
    """An export file a user opened in the offline viewer, kept so that its pages (and
    their htmx parts) can read it again: its bytes gzip-compressed, for its owner only,
    for a bounded time and count (`forks.offline`). Nothing in it is ever imported."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="opened_exports"
    )
    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    # The file's size as uploaded; `data` holds it gzip-compressed.
    size = models.PositiveBigIntegerField()
    data = models.BinaryField()
    uploaded_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"
