"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

The board runs against its own job database, broker database and worker, with
the BMI job's simulated work at two seconds so that its progress can be seen.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, make_settings, start_worker
from tests.support import wait_until

# Playwright's 5 s default is short for Chromium sharing two busy cores with the suite.
expect.set_options(timeout=15_000)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Records every Content-Security-Policy violation on the page, from its first script on.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`);
});
"""

# Records every value each row's status and progress bar takes, as the page changes them.
WATCH_ROWS = """
window.__seen = {};
const note = (id, key, value) => {
  const log = (window.__seen[id] ||= {status: [], progress: []});
  const list = log[key];
  if (value !== null && list[list.length - 1] !== value) list.push(value);
};
new MutationObserver((records) => {
  for (const r of records) {
    const row = r.target.closest('tr[data-job-id]');
    if (!row) continue;
    const key = r.attributeName === 'data-status' ? 'status' : 'progress';
    note(row.dataset.jobId, key, r.oldValue);
    note(row.dataset.jobId, key, r.target.getAttribute(r.attributeName));
  }
}).observe(document.querySelector('tbody'), {
  subtree: true, attributes: true, attributeOldValue: true,
  attributeFilter: ['data-status', 'aria-valuenow'],
});
"""


@pytest.fixture(scope="module")
def board_settings(redis_url: str, mongo_url: str) -> Settings:
    """Settings of the board's own stack: separate databases, BMI work of two seconds."""
    return make_settings(
        redis_url[:-1] + "3",
        mongo_url,
        mongo_db="jobline_board",
        bmi_seconds=2,
        flower_url="http://flower.invalid:5555/",
        # The board reads its list again this often (30 s unless set).
        board_resync_seconds=1,
    )


@pytest.fixture(scope="module")
def board(board_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API and dashboard over HTTP, with a worker of the board's own behind it."""
    store = JobStore(board_settings)
    store.ensure_indexes()
    store.jobs.delete_many({})
    log = tmp_path_factory.mktemp("board") / "worker.log"
    worker = start_worker(board_settings, log, "--concurrency=2", "--hostname=board@%h")
    served = ServedApp(create_app(board_settings))
    yield Api(served.base)
    served.close()
    worker.stop()
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def watched_page(
    browser: Browser, width: int = 1400, height: int = 900, **options: Any
) -> tuple[Page, list[str]]:
    """A new page whose errors, console warnings and CSP violations are collected."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        # Alpine reports an expression its CSP build cannot parse as a warning;
        # the API's 4xx answers the board shows are logged too, and are no fault.
        if msg.type in ("error", "warning") and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    page.on("console", on_console)
    return page, errors


@pytest.fixture
def page(browser: Browser, board: Api) -> Iterator[Page]:
    """The board, loaded, following the event stream, with its rows watched."""
    page, errors = watched_page(browser)
    response = page.goto(board.url("/"))
    assert (
        response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    )
    expect(page.get_by_test_id("live")).to_have_text("live")
    expect(page.locator("input[name=weight]")).to_be_visible()
    page.evaluate(WATCH_ROWS)
    yield page
    violations = page.evaluate("window.__csp")
    page.context.close()
    assert violations == []
    assert errors == []


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def place_order(page: Page, **values: str) -> None:
    for name, value in values.items():
        page.fill(f"[name={name}]", value)
    page.get_by_role("button", name="Place order").click()


def order(page: Page, board: Api, **values: str) -> str:
    """Place an order the API accepts; returns the new job's id."""
    place_order(page, **values)
    expect(page.get_by_test_id("placed")).to_contain_text("placed")
    job_id = str(board.get("/api/v1/jobs?limit=1").json()["items"][0]["id"])
    assert page.get_by_test_id("placed").inner_text() == f"Order {ticket(job_id)} placed"
    return job_id


def ticket(job_id: str) -> str:
    return "#" + job_id.replace("-", "")[-6:]


def test_a_bmi_order_moves_from_queued_to_succeeded_with_its_progress_bar_filling(
    page: Page, board: Api
) -> None:
    job_id = order(page, board, name="Ada", weight="55", height="170")
    expect(row(page, job_id)).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(row(page, job_id).locator(".result")).to_contain_text("19.03")
    expect(row(page, job_id).locator("[role=progressbar]")).to_have_attribute(
        "aria-valuenow", "100"
    )
    seen = page.evaluate("window.__seen")[job_id]
    # A busy worker may claim the job before the board draws its queued row.
    assert seen["status"] in (["queued", "running", "succeeded"], ["running", "succeeded"])
    progress = [int(p) for p in seen["progress"]]
    assert progress == sorted(progress) and progress[-1] == 100
    assert any(0 < p < 100 for p in progress), "the bar should move while the job runs"
    assert ticket(job_id) in page.locator(".ready").inner_text()


def test_a_job_removed_without_an_event_leaves_the_board_at_its_next_resync(
    page: Page, board: Api, board_settings: Settings
) -> None:
    job_id = order(page, board, name="Gone", weight="60", height="170")
    expect(row(page, job_id)).to_have_attribute("data-status", "succeeded", timeout=30_000)
    # As retention removes a finished job: straight from MongoDB, no event sent.
    store = JobStore(board_settings)
    try:
        assert store.jobs.delete_one({"_id": job_id}).deleted_count == 1
    finally:
        store.close()
    # Well before the event stream ends (JOBLINE_STREAM_MAX_SECONDS) and reconnects.
    expect(row(page, job_id)).to_have_count(0, timeout=10_000)
    expect(page.get_by_test_id("live")).to_have_text("live")


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (
            {"name": "", "weight": "-5", "height": "0"},
            {
                "name": "at least 1",
                "weight": "greater than 0",
                "height": "greater than or equal to 20",
            },
        ),
        ({"name": "Ada", "weight": "55", "height": "301"}, {"height": "less than or equal"}),
        ({"name": "Ada", "weight": "", "height": "170"}, {"weight": "required"}),
    ],
)
def test_an_invalid_order_shows_each_error_beside_its_field_and_queues_nothing(
    page: Page, board: Api, values: dict[str, str], errors: dict[str, str]
) -> None:
    before = len(board.get("/api/v1/jobs?limit=500").json()["items"])
    place_order(page, **values)
    for field, message in errors.items():
        expect(page.locator(f'.error[data-field="{field}"]')).to_contain_text(message)
    others = {"name", "weight", "height"} - set(errors)
    for field in others:
        expect(page.locator(f'.error[data-field="{field}"]')).to_be_hidden()
    assert len(board.get("/api/v1/jobs?limit=500").json()["items"]) == before


def test_a_running_sleep_job_is_cancelled_from_the_board(page: Page, board: Api) -> None:
    page.select_option("select[name=type]", "sleep")
    job_id = order(page, board, seconds="30", steps="30")
    expect(row(page, job_id)).to_have_attribute("data-status", "running", timeout=30_000)
    row(page, job_id).get_by_role("button", name="Cancel").click()
    expect(row(page, job_id)).to_have_attribute("data-status", "cancelled")
    expect(row(page, job_id).get_by_role("button", name="Cancel")).to_be_hidden()
    assert board.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_a_rows_params_show_what_was_chosen_and_leave_out_options_left_unset(
    page: Page, board: Api
) -> None:
    submitted = {"type": "align", "params": {"seq_a": "ACGT", "seq_b": "ACG"}}
    job = board.post("/api/v1/jobs", json=submitted).json()
    assert job["params"]["scoring"] is None  # the API fills in every option
    params = row(page, job["id"]).locator(".params")
    expect(params).to_have_text("alphabet dna · seq_a ACGT · seq_b ACG")


def test_a_scheduled_job_shows_when_it_runs_on_the_viewers_own_clock(
    browser: Browser, board: Api
) -> None:
    job = board.post("/api/v1/jobs", json={"type": "noop", "delay_seconds": 3600}).json()
    page, errors = watched_page(browser, timezone_id="Asia/Kolkata", locale="en-GB")
    page.goto(board.url("/"))
    run_at = datetime.fromisoformat(job["run_at"])
    local_time = run_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M:%S")
    expect(row(page, job["id"]).locator(".duration")).to_contain_text(local_time)
    assert run_at.strftime("%H:%M:%S") not in row(page, job["id"]).inner_text()
    board.post(f"/api/v1/jobs/{job['id']}/cancel")
    page.context.close()
    assert errors == []


def test_a_failed_job_shows_its_error_and_runs_again_on_retry(page: Page, board: Api) -> None:
    job_id = board.post("/api/v1/jobs", json={"type": "test_broken", "params": {}}).json()["id"]
    expect(row(page, job_id)).to_have_attribute("data-status", "failed", timeout=30_000)
    expect(row(page, job_id).locator(".err")).to_contain_text("ValueError: bad data")
    row(page, job_id).get_by_role("button", name="Retry").click()
    expect(row(page, job_id).locator(".attempts")).to_have_text("try 2", timeout=30_000)
    # "try 2" shows while the retry waits; the board's worker may still be busy.
    expect(row(page, job_id)).to_have_attribute("data-status", "failed", timeout=30_000)
    assert board.get(f"/api/v1/jobs/{job_id}").json()["attempts"] == 2
    # The retry's answer may come after the events of the second failure: the row
    # never goes back to the queued state that answer describes.
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__seen")[job_id]["status"][-1] == "failed"
    expect(row(page, job_id).locator(".attempts")).to_have_text("try 2")


def test_a_job_held_back_by_its_types_limit_shows_queued_with_the_reason(
    page: Page, board: Api
) -> None:
    # max_running=1: the second job waits while the first holds the licence for 10 s.
    first = board.post("/api/v1/jobs", json={"type": "test_licensed", "params": {"seconds": 10}})
    first_path = f"/api/v1/jobs/{first.json()['id']}"
    wait_until(lambda: board.get(first_path).json()["status"] == "running", 30, "the first to run")
    second = board.post("/api/v1/jobs", json={"type": "test_licensed", "params": {"seconds": 0}})
    ids = [first.json()["id"], second.json()["id"]]
    reason = "type test_licensed has 1 running (max_running); waits for one to end"
    held = page.locator("tr.job.queued .held", has_text=reason)
    expect(held).to_have_count(1, timeout=60_000)
    expect(page.locator("tr.job.running .held")).to_be_hidden()
    for job_id in ids:
        expect(row(page, job_id)).to_have_attribute("data-status", "succeeded", timeout=60_000)
        expect(row(page, job_id).locator(".held")).to_be_hidden()


def test_the_board_filters_by_status_and_type_and_links_to_flower_and_the_docs(
    page: Page, board: Api
) -> None:
    board.submit_and_wait("/api/v1/jobs", {"type": "noop", "params": {}})
    page.select_option("select[name=status-filter]", "succeeded")
    expect(page.locator("tr.job:not([data-status=succeeded])")).to_have_count(0)
    expect(page.locator("tr.job").first).to_be_visible()
    page.select_option("select[name=type-filter]", "noop")
    expect(page.locator('tr.job:not(:has(.type:text-is("noop")))')).to_have_count(0)
    expect(page.locator("tr.job").first).to_be_visible()
    assert page.get_by_role("link", name="Flower").get_attribute("href") == (
        "http://flower.invalid:5555/"
    )
    docs = page.get_by_role("link", name="API docs").get_attribute("href")
    assert board.get(docs).status_code == 200


def test_an_api_key_entered_on_the_board_is_sent_with_its_requests(page: Page) -> None:
    def with_key(path: str) -> Any:
        return lambda r: (
            r.url.split("/api/v1/")[-1].startswith(path)
            and r.headers.get("authorization") == "Bearer k-123"
        )

    with (
        page.expect_request(with_key("job-types")),
        page.expect_request(with_key("events")),
        page.expect_request(with_key("jobs?")),
    ):
        page.fill("[name=api-key]", "k-123")
        page.keyboard.press("Tab")
    assert page.evaluate("localStorage.getItem('jobline.apiKey')") == "k-123"


def test_a_screenshot_of_the_board_is_saved(page: Page, board: Api) -> None:
    for body in (
        {"type": "bmi", "params": {"name": "Grace", "weight": 61, "height": 168}},
        {"type": "sleep", "params": {"seconds": 20, "steps": 20}},
    ):
        assert board.post("/api/v1/jobs", json=body).status_code == 202
    moving = page.locator('tr.job.running [role=progressbar]:not([aria-valuenow="0"])')
    expect(moving.first).to_be_visible(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    for job in board.get("/api/v1/jobs?status=running").json()["items"]:
        board.post(f"/api/v1/jobs/{job['id']}/cancel")


def test_long_words_stay_inside_the_jobs_card_and_the_log_in_a_1280_px_window(
    browser: Browser, board: Api
) -> None:
    # One long word in an error (a record's name) and in a log line, where nothing can wrap.
    fasta = f">a\nACGT\n>{'r' * 300}\nACZZGT\n".encode()
    upload = board.post("/api/v1/files", files={"file": ("pair.fa", fasta, "text/plain")}).json()
    failed = board.submit_and_wait(
        "/api/v1/jobs", {"type": "align", "params": {"fasta": upload["id"]}}
    )
    assert failed["status"] == "failed" and "r" * 300 in failed["error"]["message"]
    chatty = {"type": "test_chatty", "params": {"lines": 1, "secret": "x" * 300}}
    logged = board.submit_and_wait("/api/v1/jobs", chatty)
    page, errors = watched_page(browser, width=1280, height=800)
    page.goto(board.url("/"))
    card = page.locator(".card.jobs")
    expect(row(page, failed["id"]).get_by_role("button", name="Retry")).to_be_visible()
    expect(row(page, logged["id"])).to_be_visible()
    assert card.evaluate("card => card.scrollWidth <= card.clientWidth")
    right = _right(card)
    for button in ("Log", "Retry"):
        assert _right(row(page, failed["id"]).get_by_role("button", name=button)) <= right
    row(page, logged["id"]).get_by_role("button", name="Log").click()
    log = page.get_by_test_id("job-log")
    expect(log).to_contain_text("x" * 100)
    assert log.evaluate("log => log.scrollWidth <= log.clientWidth")
    # A line written through logging has the class "log" (its stream), not the log box's style.
    assert (
        log.locator(".line.log").first.evaluate("line => getComputedStyle(line).padding") == "0px"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"), full_page=True)
    page.context.close()
    assert errors == []


def test_a_rows_buttons_sit_side_by_side_at_1440_px_and_every_row_fits_the_card_at_1280(
    browser: Browser, board: Api
) -> None:
    # A result of four values, a running job (Log, Cancel) and a scheduled one (its time).
    aligned = board.submit_and_wait(
        "/api/v1/jobs", {"type": "align", "params": {"seq_a": "ACGTACGT", "seq_b": "ACGTTT"}}
    )
    running = board.post(
        "/api/v1/jobs", json={"type": "sleep", "params": {"seconds": 30, "steps": 30}}
    ).json()
    later = {"name": "Grace Brewster Murray Hopper", "weight": 70, "height": 165}
    scheduled = board.post(
        "/api/v1/jobs", json={"type": "bmi", "params": later, "delay_seconds": 3600}
    ).json()
    try:
        for width in (1280, 1440):
            page, errors = watched_page(browser, width=width, height=900)
            page.goto(board.url("/"))
            cancel = row(page, running["id"]).get_by_role("button", name="Cancel")
            expect(cancel).to_be_visible(timeout=15_000)
            expect(row(page, aligned["id"]).locator(".result")).to_contain_text("ACGTACGT")
            expect(row(page, scheduled["id"])).to_contain_text("scheduled")
            card = page.locator(".card.jobs")
            assert card.evaluate("card => card.scrollWidth <= card.clientWidth"), width
            assert _right(cancel) <= _right(card)
            if width == 1440:
                log = row(page, running["id"]).get_by_role("button", name="Log").bounding_box()
                beside = cancel.bounding_box()
                assert log is not None and beside is not None
                assert abs(log["y"] - beside["y"]) < 2  # one line, not stacked
            page.context.close()
            assert errors == []
    finally:
        for job in (running, scheduled):
            board.post(f"/api/v1/jobs/{job['id']}/cancel")


def _right(locator: Any) -> float:
    box = locator.bounding_box()
    assert box is not None
    return float(box["x"] + box["width"])


def test_the_board_is_served_without_a_build_step(board: Api) -> None:
    html = board.get("/")
    assert html.status_code == 200 and "text/html" in html.headers["Content-Type"]
    scripts = ("api.js", "orderform.js", "dashboard.js", "jobview.js", "workflows.js")
    for asset in (*scripts, "dashboard.css", "vendor/alpine-csp-3.15.12.min.js"):
        assert board.get(f"/dashboard/static/{asset}").status_code == 200
    assert local.port_open(int(board.base.rsplit(":", 1)[1]))


def test_the_board_s_policy_blocks_an_injected_inline_script(browser: Browser, board: Api) -> None:
    page, _ = watched_page(browser)
    page.goto(board.url("/"))
    expect(page.get_by_test_id("live")).to_have_text("live")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = true'; document.head.appendChild(s); }"
    )
    expect(page.locator("body")).to_be_visible()
    assert page.evaluate("window.__ran === undefined")
    assert page.evaluate("window.__csp") == ["script-src-elem blocked inline"]
    page.context.close()


def test_swagger_ui_renders_the_api_under_the_policy(browser: Browser, board: Api) -> None:
    page, errors = watched_page(browser)
    response = page.goto(board.url("/api/v1/docs"))
    assert (
        response is not None
        and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    )
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("jobline")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    page.locator(".opblock-tag", has_text="jobs").first.click()
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert page.evaluate("window.__csp") == []
    assert errors == []
    page.context.close()


def test_an_align_order_uploads_its_fasta_and_the_job_view_tails_the_log_and_links_files(
    page: Page, board: Api
) -> None:
    page.select_option("select[name=type]", "align")
    fasta = b">first\nGATTACA\n>second\nGCATGCT\n"
    page.set_input_files(
        "input[name=fasta]", files=[{"name": "reads.fa", "mimeType": "text/plain", "buffer": fasta}]
    )
    job_id = order(page, board)
    assert board.get(f"/api/v1/jobs/{job_id}").json()["params"]["fasta"]
    expect(row(page, job_id)).to_have_attribute("data-status", "succeeded", timeout=30_000)
    row(page, job_id).get_by_role("button", name="Log").click()
    view = page.get_by_test_id("job-view")
    expect(view.get_by_test_id("job-log")).to_contain_text("aligned first (7 letters)")
    link = view.get_by_test_id("job-file")
    expect(link).to_have_text("alignment.txt")
    with page.expect_download() as download:
        link.click()
    assert "GATTACA" in Path(download.value.path()).read_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job-view.png"), full_page=True)


def test_the_job_view_tails_a_running_jobs_log_line_by_line(page: Page, board: Api) -> None:
    job_id = board.post(
        "/api/v1/jobs", json={"type": "sleep", "params": {"seconds": 12, "steps": 3}}
    ).json()["id"]
    expect(row(page, job_id)).to_be_visible()
    row(page, job_id).get_by_role("button", name="Log").click()
    log = page.get_by_test_id("job-log")
    # A step every 4 s: the first line shows while the job still has seconds to run.
    expect(log).to_contain_text("step 1 of 3 done", timeout=10_000)
    assert board.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    expect(log).to_contain_text("step 3 of 3 done", timeout=30_000)
    assert log.locator(".line").count() == 3


def test_the_board_says_who_owns_jobs_made_while_keys_are_off(
    board: Api, keyed_api: dict[str, Api]
) -> None:
    note = 'data-testid="owner-note"'
    page = board.get("/").text
    assert note in page and "jobline jobs adopt --owner NAME" in page
    assert note not in keyed_api["anonymous"].get("/").text  # with keys on, nothing to say
