"""Drop-in layers for code written for other job libraries.

- :mod:`jobbalancer.compat.rq`: an ``rq.Queue`` (and ``Job``) whose jobs run on jobbalancer; the
  queue class rq-scheduler hands due jobs to.
- :mod:`jobbalancer.compat.scheduler`: rq-scheduler's loop, as ``jb scheduler`` and
  ``jb balancer --scheduler`` run it.

Celery-style tasks are :func:`jobbalancer.tasks.task`.
"""
