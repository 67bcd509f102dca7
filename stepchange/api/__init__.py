"""StepChange's JSON APIs. `/api/v1/`: its class and authentication (`base`), its error
answers (`errors`), the applications list and the audit log (`endpoints`);
`stepchange/urls.py` builds that one API from these and the routers of the other apps.
`/conductor/v2/`: the Conductor-compatible API (`conductor_v2`), a NinjaAPI of its own over
the same services, with the same authentication and its errors as problem details.
"""
