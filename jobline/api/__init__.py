"""The HTTP API: ``create_app(settings)`` builds the Flask app and its versioned API."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from flask import Blueprint, Flask
from flask_restx import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from jobline.api import problems
from jobline.api.services import EXTENSION
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.jobs import Catalogue
from jobline.jobs import load as load_catalogue
from jobline.store.files import FileStore
from jobline.store.jobs import JobStore
from jobline.store.keys import KeyStore
from jobline.store.logs import LogStore

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


class JoblineApi(Api):  # type: ignore[misc]
    """Flask-RESTX API whose every error is a problem document."""

    def handle_error(self, e: Exception) -> Any:
        return problems.from_exception(e)

    @cached_property
    def __schema__(self) -> dict[str, Any]:
        """The spec, its error answers documented as the problems they are."""
        from jobline.api import swagger

        return swagger.document_problems(super().__schema__)

    def render_root(self) -> Any:
        """The API's index at ``/api/v1/`` (Flask-RESTX answers 404 there by default)."""
        from jobline.api import index
        from jobline.api.services import pipeline

        return index.document(self, API_PREFIX, pipeline().settings)


def create_api_blueprint(catalogue: Catalogue) -> Blueprint:
    """The versioned API, one namespace per resource, documenting ``catalogue``'s types."""
    from jobline.api import (
        calculations,
        docs,
        events,
        files,
        job_types,
        logs,
        payloads,
        schedules,
        swagger,
        workflows,
    )
    from jobline.api import jobs as jobs_api

    bp = Blueprint(
        "api",
        __name__,
        url_prefix=API_PREFIX,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    api = JoblineApi(
        bp,
        version="1",
        title="jobline",
        description="Submit slow work, get an id at once, come back for status, progress "
        "and result.",
        doc="/docs",
        authorizations={
            "bearer": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Bearer KEY`, a key from `jobline keys create`",
            }
        },
        security="bearer",
    )
    # One rule for every operation: a query string is read only where one is declared.
    bp.before_request(payloads.refuse_unread_query)
    api.documentation(swagger.page(api))
    docs.describe_catalogue(jobs_api.ns, jobs_api.request_model, catalogue)
    api.add_namespace(jobs_api.ns, path="/jobs")
    api.add_namespace(job_types.ns, path="/job-types")
    api.add_namespace(calculations.ns, path="/calculations")
    api.add_namespace(schedules.ns, path="/schedules")
    api.add_namespace(workflows.ns, path="/workflows")
    api.add_namespace(events.ns)
    api.add_namespace(logs.ns)
    api.add_namespace(files.ns, path="/files")
    api.add_namespace(files.job_files_ns)
    return bp


def create_app(settings: Settings | None = None, *, pipeline: Pipeline | None = None) -> Flask:
    """Build the app; nothing connects until a request needs it."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        RESTX_ERROR_404_HELP=False,
        RESTX_MASK_SWAGGER=False,
        # Each job type's models are referenced from the generic request, not an operation.
        RESTX_INCLUDE_ALL_MODELS=True,
        JSON_SORT_KEYS=False,
    )
    if pipeline is None:
        celery = make_celery(settings, answers_clients=True)
        store = JobStore(settings)
        pipeline = Pipeline(settings, store, celery, load_catalogue(settings.job_module_list))
    keys = KeyStore(pipeline.store.db)
    try:
        pipeline.store.ensure_indexes()
        keys.ensure_indexes()
        pipeline.progression().flows.ensure_indexes()
        LogStore(pipeline.store.db).ensure_indexes()
        FileStore.of(settings, pipeline.store.db).ensure_indexes()
    except Exception as exc:  # MongoDB may come up later; readyz says so meanwhile
        log.warning("could not create indexes yet: %s", exc)
    app.extensions[EXTENSION] = pipeline

    from jobline import board
    from jobline.api import auth, headers, health, limits, metrics, payloads

    if settings.proxy_hops:
        # The client's address is the one the nearest proxies appended to
        # X-Forwarded-For; whatever a client wrote there itself is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]

    # Order matters: the timer first, then who is asking, then their rate limit.
    metrics.instrument(app)
    headers.init_app(app)
    app.before_request(payloads.refuse_long_uri)
    auth.init_app(app, settings, keys)
    limits.init_app(app, settings)
    app.before_request(payloads.refuse_oversized)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(board.blueprint(settings))
    app.register_blueprint(create_api_blueprint(pipeline.catalogue))
    app.register_error_handler(Exception, problems.from_exception)
    return app
