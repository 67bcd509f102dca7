from typing import Any

from django.core.management.base import BaseCommand

from forks.offline import KEEP_DAYS, opened_exports_prune


class Command(BaseCommand):
    help = (
        f"Forget export files opened in the offline viewer more than {KEEP_DAYS} days ago "
        "(opening a file also forgets them, and the opener's files beyond their newest)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        removed = opened_exports_prune()
        self.stdout.write(f"Forgot {removed} opened export file{'s' if removed != 1 else ''}.")
