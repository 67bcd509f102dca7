"""The admin site, opened to members of the admin role as well as Django staff."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest

from stepchange.roles import PERM_ADMINISTER
from stepchange.sso import PasswordLoginAllowed


class AdminLoginForm(PasswordLoginAllowed, AdminAuthenticationForm):
    pass


class StepChangeAdminSite(admin.AdminSite):
    site_header = "StepChange administration"
    site_title = "StepChange admin"
    index_title = "Administration"
    site_url = "/"
    login_form = AdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        # Members of the admin role use the admin without Django's is_staff flag.
        user: Any = request.user
        return bool(user.is_active and (user.is_staff or user.has_perm(PERM_ADMINISTER)))
