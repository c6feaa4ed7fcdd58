# The jobline image: one image for every part (api, worker, beat, sweep, flower).
# The command picks the part: `docker run IMAGE worker`, `docker run IMAGE api --host 0.0.0.0`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: install jobline and its dependencies into a virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY jobline ./jobline
RUN python -m venv /opt/jobline \
 && /opt/jobline/bin/pip install --upgrade pip \
 && /opt/jobline/bin/pip install .

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 jobline \
 && useradd --system --uid 10001 --gid jobline --create-home --home-dir /home/jobline jobline
COPY --from=build /opt/jobline /opt/jobline
ENV PATH=/opt/jobline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/jobline
EXPOSE 5000 5555
# Docker sends SIGTERM on stop: a worker finishes its running jobs (warm shutdown).
STOPSIGNAL SIGTERM
ENTRYPOINT ["jobline"]
CMD ["api", "--host", "0.0.0.0", "--port", "5000"]
