"""The PostgreSQL channel layer's and history store's tables.

Created on PostgreSQL databases only; see
:mod:`django_realtime.layers.postgres.schema`.
"""

from django.db import migrations

from django_realtime.layers.postgres.schema import (
    CREATE_SQL,
    DROP_SQL,
    PostgresOnlySQL,
)


class Migration(migrations.Migration):
    dependencies = [("django_realtime", "0001_outbox")]

    operations = [PostgresOnlySQL(CREATE_SQL, reverse_sql=DROP_SQL)]
