"""Structured logs: one JSON object a line, with the job's fields, and never a secret.

Log events pass their fields as ``extra`` (``job_id``, ``type``, ``attempt``,
``owner``, ``duration``...). A filter on the handler scrubs anything that looks
like an API key, a bearer token or a password inside a URL, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from jobline.core.settings import Settings

_SECRETS = (
    (re.compile(r"jl_[A-Za-z0-9_-]{4,}"), "jl_[redacted]"),
    (re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"), r"\1[redacted]"),
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@"), r"\1[redacted]@"),
)
# What every text matching one of _SECRETS contains: one search of a few
# literals spares most texts the four substitutions.
_MAYBE_SECRET = re.compile(r"jl_|://|(?i:bearer|basic|authorization)")
_HANDLER_NAME = "jobline"
# Celery repeats each task message's fields as a "data" extra; the message says it once.
_LEFT_OUT = [*RESERVED_ATTRS, "data"]
# A record's own attributes that come from code, not data: never a secret.
_FROM_CODE = frozenset(RESERVED_ATTRS) - {"exc_text", "stack_info"}


def scrub(text: str) -> str:
    """``text`` with API keys, bearer tokens and URL passwords replaced."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Scrubs the message, its arguments and string extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        for key, value in vars(record).items():
            if isinstance(value, str) and key not in _FROM_CODE:
                record.__dict__[key] = scrub(value)
        if record.exc_info:
            # Formatted and scrubbed here; formatters fall back to exc_text.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(settings: Settings | None = None) -> None:
    """Send every logger's records, scrubbed, to stderr as JSON (or text); idempotent."""
    level = settings.log_level if settings else "INFO"
    json_logs = settings is None or settings.log_format == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if json_logs:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=_LEFT_OUT,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level)


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """What a log line says about a job; never its params or result, which may be private."""
    return {
        "job_id": job.get("_id"),
        "type": job.get("type"),
        "attempt": job.get("attempts"),
        "owner": job.get("owner"),
    }
