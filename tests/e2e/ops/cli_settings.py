"""Settings of a ``manage.py realtime`` process in the e2e tests.

The test suite's, on the test database the test process made (its file
name in ``REALTIME_CLI_TEST_DB``), so that the command's sessions are the
live server's.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["REALTIME_CLI_TEST_DB"]
ASGI_APPLICATION = "tests.integration.ops.tail_app.application"
