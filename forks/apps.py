from django.apps import AppConfig


class ForksConfig(AppConfig):
    name = "forks"
