"""The permissions of the ops page in the admin (a model without a table)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_realtime", "0003_task_record"),
    ]

    operations = [
        migrations.CreateModel(
            name="RealtimeOps",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "real-time ops",
                "verbose_name_plural": "real-time ops",
                "permissions": [
                    ("view_realtime_ops", "Can see live connections and streams"),
                    (
                        "change_realtime_ops",
                        "Can close connections and drain processes",
                    ),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
