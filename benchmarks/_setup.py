"""Prepare a project's database: migrate, make the user, log in once.

``python -m benchmarks._setup`` runs with the ``DJANGO_SETTINGS_MODULE`` and
``BENCH_DB`` of one project and prints the ``Cookie`` header of a logged-in
session, made by Django's test client, on its last line.
"""

import django
from django.core.management import call_command

USERNAME = "bench"
PASSWORD = "bench-Password-not-common-42"


def main() -> None:
    django.setup()
    from django.contrib.auth.models import User
    from django.test import Client

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_user(USERNAME, password=PASSWORD)
    client = Client()
    if not client.login(username=USERNAME, password=PASSWORD):
        raise SystemExit("Logging in with the test client failed.")
    morsel = client.cookies["sessionid"]
    print(f"{morsel.key}={morsel.value}")


if __name__ == "__main__":
    main()
