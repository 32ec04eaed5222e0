"""Rooms become rows: a Room for each room messages were said in, and the lobby.

Messages keep their room's name in their ``room`` column, which becomes a
foreign key to ``Room.name``.
"""

from typing import Any

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FIRST_ROOM = "lobby"


def create_rooms(apps: Any, schema_editor: Any) -> None:
    """Create the lobby, and a room for each name messages were said in."""
    room_model = apps.get_model("chat", "Room")
    message_model = apps.get_model("chat", "Message")
    # The database being migrated, which `migrate --database` may choose.
    using = schema_editor.connection.alias
    messages = message_model.objects.using(using)
    names = set(messages.values_list("room", flat=True).distinct())
    room_model.objects.using(using).bulk_create(
        [room_model(name=name) for name in sorted(names | {FIRST_ROOM})],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Room",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        max_length=50,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                "\\A[A-Za-z0-9_-]{1,50}\\Z",
                                "Expected 1 to 50 letters, digits, hyphens or "
                                "underscores, got %(value)r.",
                            )
                        ],
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RunPython(create_rooms, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="message",
            name="room",
            field=models.ForeignKey(
                db_column="room",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="chat.room",
                to_field="name",
            ),
        ),
    ]
