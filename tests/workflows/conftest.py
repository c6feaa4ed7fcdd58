"""Workflows over the session's servers and worker, on an empty workflows collection."""

from __future__ import annotations

import pytest

from jobline.store.jobs import JobStore
from jobline.store.workflows import WorkflowStore
from tests.conftest import Api

# The board's own API, worker and browser, for the workflows panel's tests.
from tests.test_dashboard import board, board_settings, browser, page  # noqa: F401


@pytest.fixture
def flows(store: JobStore) -> WorkflowStore:
    """The workflows collection of the session's database, emptied."""
    flows = WorkflowStore(store.db)
    flows.ensure_indexes()
    flows.workflows.delete_many({})
    flows.runs.delete_many({})
    return flows


@pytest.fixture
def wf_api(live_api: Api, flows: WorkflowStore) -> Api:
    """The API with the shared worker behind it, no job and no workflow stored."""
    return live_api
