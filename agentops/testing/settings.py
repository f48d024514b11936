"""Settings of the test suite and the benchmarks: the production settings plus the crash-test
tools (the `agentops.testing` app registers them) and an RQ queue "tests" that only a test's
own worker listens on (the suite's shared worker never takes it).

The pytest plugin and bench/_setup.py point DJANGO_SETTINGS_MODULE here; every process a test
starts (web, workers, scheduler) inherits it, so a real worker runs the test tools too. The
production settings know nothing of them.
"""

from agentops.settings import *  # noqa: F403
from agentops.settings import INSTALLED_APPS, REDIS_URL, RQ_QUEUES, RUN_JOB_TIMEOUT

INSTALLED_APPS = [*INSTALLED_APPS, "agentops.testing"]
RQ_QUEUES = {**RQ_QUEUES, "tests": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RUN_JOB_TIMEOUT}}

# Every test's client is 127.0.0.1: the widget's per-address limits are tested with their own
# values (tests/agentops/widget), not met by accident by the rest of the suite.
WIDGET_NEW_VISITORS_PER_MINUTE = WIDGET_SESSIONS_PER_MINUTE = WIDGET_IDENTIFY_PER_MINUTE = 100_000

# Workers beat every 3 s (a heartbeat is trusted for three beats), so a test that kills a worker
# sees it gone within about 9 s instead of 30 s.
WORKER_HEARTBEAT_SECONDS = 3
