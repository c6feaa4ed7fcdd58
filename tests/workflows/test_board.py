"""The board's workflows panel in headless Chromium: live steps, cancel and retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import Api
from tests.workflows.support import WORKFLOWS, submit

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


def panel(page: Page, workflow_id: str) -> Any:
    return page.locator(f'li.workflow[data-workflow-id="{workflow_id}"]')


def test_a_workflow_s_steps_move_live_on_the_board_until_it_succeeds(
    page: Page,
    board: Api,
) -> None:
    flow = submit(
        board,
        [
            {"id": "list", "type": "test_items", "params": {"count": 3}},
            {
                "id": "each",
                "type": "test_greet",
                "needs": ["list"],
                "for_each": "list",
            },
            {"id": "join", "type": "test_inputs", "needs": ["each"]},
        ],
    )
    shown = panel(page, flow["id"])
    expect(shown).to_be_visible(timeout=10_000)
    expect(shown.locator(".step")).to_have_count(3)
    expect(shown).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(shown.locator('.step[data-step="each"]')).to_contain_text("3/3")
    expect(shown.locator('.step[data-step="join"]')).to_have_attribute("data-status", "succeeded")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "board-workflows.png"), full_page=True)


def test_a_workflow_is_cancelled_and_retried_from_the_board(
    page: Page,
    board: Api,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "open"
    flow = submit(
        board,
        [
            {"id": "wait", "type": "test_slow", "params": {"seconds": 30}},
            {"id": "gate", "type": "test_gate", "params": {"unless": str(gate)}, "needs": ["wait"]},
        ],
    )
    shown = panel(page, flow["id"])
    expect(shown.locator('.step[data-step="wait"]')).to_have_attribute(
        "data-status", "running", timeout=20_000
    )
    shown.get_by_role("button", name="Cancel").click()
    expect(shown).to_have_attribute("data-status", "cancelled", timeout=10_000)
    assert board.get(f"{WORKFLOWS}/{flow['id']}").json()["status"] == "cancelled"
    # Its step's job, cancelled with it, runs again only through the workflow.
    step_job = page.locator(f'tr[data-job-id="{flow["steps"][0]["job_ids"][0]}"]')
    expect(step_job).to_have_attribute("data-status", "cancelled")
    expect(step_job.get_by_role("button", name="Retry")).to_be_hidden()
    gate.touch()
    shown.get_by_role("button", name="Retry").click()
    expect(shown.locator('.step[data-step="wait"]')).to_have_attribute(
        "data-status", "running", timeout=20_000
    )
    assert board.get(f"{WORKFLOWS}/{flow['id']}").json()["steps"][0]["run"] == 1
    # Stop the long step again, so the worker is not kept from stopping by it.
    assert board.post(f"{WORKFLOWS}/{flow['id']}/cancel").status_code == 200
