"""An rq program as it would be written for rq: enqueue, poll the status, read the result.

The test runs a copy with only the ``from rq import Queue`` line changed.
"""

import os
import sys
import time

from redis import Redis
from rq import Queue
from rq.job import Retry

from tests.compat.rq_funcs import count_words, explode, shout


def wait(job, timeout=30):
    deadline = time.monotonic() + timeout
    while not (job.is_finished or job.is_failed):
        if time.monotonic() > deadline:
            sys.exit(f"job {job.id} still {job.get_status()}")
        time.sleep(0.05)
    return job


def main():
    redis = Redis.from_url(os.environ["REDIS_URL"])
    queue = Queue("default", connection=redis)
    words = queue.enqueue(count_words, "the quick brown fox", job_timeout=30)
    loud = queue.enqueue_call(func=shout, args=("hello",), kwargs={"suffix": "?"}, job_id="loud-1", meta={"by": "me"})
    after = queue.enqueue(shout, "after", depends_on=[words, loud])
    broken = queue.enqueue(explode, "kaboom", retry=Retry(max=1))
    for job in (words, loud, after, broken):
        wait(job)
    print("words", words.get_status(), words.return_value())
    print("loud", loud.id, loud.get_status(), loud.return_value(), loud.get_meta())
    print("after", after.get_status(), after.result)
    print("broken", broken.get_status(), "kaboom" in (broken.exc_info or ""))


if __name__ == "__main__":
    main()
