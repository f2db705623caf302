# Grouping (notify.grouping): the id of the notification a group started with, so that a client
# tells the notification a grouped one replaces from an earlier group of the same key.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notify", "0007_digests"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="group_first",
            field=models.PositiveBigIntegerField(blank=True, editable=False, null=True),
        ),
    ]
