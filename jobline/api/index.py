"""``GET /api/v1/``: the API's index, where ``jobline up``'s banner points a newcomer.

Public like the docs it links to (it shows no job): the version, whether keys
are required, the docs and the spec, and each resource with its description,
read from the API's own namespaces so that it never drifts from them.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

from flask import url_for
from flask_restx import Api

from jobline.core.settings import Settings

# A Flask route variable, <converter:name> or <name>.
VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def document(api: Api, prefix: str, settings: Settings) -> dict[str, Any]:
    """The index of ``api``, mounted at ``prefix``."""
    return {
        "name": api.title,
        "description": api.description,
        "api_version": api.version,
        "version": version("jobline"),
        "auth": "bearer key required" if settings.auth else "off",
        "links": {
            "self": api.base_path,
            "docs": url_for(api.endpoint("doc")),
            "spec": api.specs_url,
            "board": "/",
            "healthz": "/healthz",
            "readyz": "/readyz",
            "metrics": "/metrics",
        },
        "resources": resources(api, prefix),
    }


def resources(api: Api, prefix: str) -> list[dict[str, str]]:
    """Each namespace with a resource of its own: name, description and where it is."""
    found = []
    for ns in api.namespaces:
        path = api.ns_paths.get(ns, ns.path)
        if path in ("", "/"):  # mounted at the root: point at its first route
            urls = [url for r in ns.resources for url in r.urls]
            if not urls:
                continue  # Flask-RESTX's empty default namespace
            fixed = [url for url in urls if "<" not in url]
            # A job's own resource (its logs, its files) as a template: /jobs/{job_id}/logs
            path = fixed[0] if fixed else VARIABLE.sub(r"{\1}", urls[0])
        found.append({"name": ns.name, "description": ns.description, "href": prefix + path})
    return found
