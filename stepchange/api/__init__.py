"""The JSON API under /api/v1/: its class and authentication (`base`), its error answers
(`errors`), the applications list and the audit log (`endpoints`). `stepchange/urls.py`
builds the one API from these and the routers of the other apps; nothing else imports it.
"""
