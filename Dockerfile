# jobbalancer image: one image for every role (worker, balancer, web); the command picks the role.
#
#   docker build -t jobbalancer .
#   docker run --rm -e JB_REDIS_URL=redis://redis-host:6379/0 jobbalancer jb worker --path workers
#
# docker-compose.yml builds and runs it; docs/deploy.md explains the deployment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Jobs run as the worker's user, so the worker must not be root (it refuses to be, by default).
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/jb --shell /usr/sbin/nologin jb

WORKDIR /opt/jobbalancer

# Only what the package build needs, so editing tests or docs does not invalidate the install layer.
COPY pyproject.toml README.md ./
COPY jobbalancer ./jobbalancer
# The web extra brings the dashboard (`jb web`); workers and balancers never import it.
RUN pip install '.[web]' \
    && rm -rf build jobbalancer.egg-info

# Example tasks: `jb worker --path workers` puts this folder on sys.path so `tasks:*` calls import.
# Add your own modules here (or mount them) and list them with --path.
COPY workers ./workers

# The install stays owned by root: jobs (running as jb) cannot rewrite the code that runs them.
USER jb

CMD ["jb", "--help"]
