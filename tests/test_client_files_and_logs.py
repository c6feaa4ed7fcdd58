"""Logs and files through the Python client and the ``jobline`` commands, against a live stack."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobline.cli import main
from jobline.clients.python import ApiError, Client
from tests.conftest import Api

FASTA = ">a\nGATTACA\n>b\nGCATGCT\n"


@pytest.fixture
def client(live_api: Api) -> Iterator[Client]:
    with Client(live_api.base) as client:
        yield client


def cli(api: Api, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--url", api.base], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_client_logs_returns_every_line_across_pages(client: Client) -> None:
    job = client.submit("test_chatty", {"lines": 300})
    client.wait(job["id"], timeout=60)
    lines = client.logs(job["id"], page_size=100)
    assert [line["message"] for line in lines[1:4]] == ["line 0", "line 1", "line 2"]
    assert len(lines) == 303 and lines[-1]["message"] == "done"


def test_client_follow_logs_yields_lines_as_they_come_until_the_job_ends(client: Client) -> None:
    job = client.submit("sleep", {"seconds": 1.5, "steps": 3})
    messages = [line["message"] for line in client.follow_logs(job["id"], timeout=30)]
    assert messages == ["step 1 of 3 done", "step 2 of 3 done", "step 3 of 3 done"]
    assert client.get(job["id"])["status"] == "succeeded"


def test_client_upload_and_download_round_trip_through_a_job(
    client: Client, tmp_path: Path
) -> None:
    source = tmp_path / "reads.fa"
    source.write_bytes(bytes(range(256)) * 4000)
    record = client.upload(source)
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert client.file(record["id"]) == record
    job = client.submit("test_maker", {"source": record["id"]})
    client.wait(job["id"], timeout=30)
    saved = client.download(job["id"], "copy.bin", tmp_path / "out.bin")
    assert saved.read_bytes() == source.read_bytes()
    with pytest.raises(ApiError) as missing:
        client.download(job["id"], "nothing.bin", tmp_path / "none.bin")
    assert missing.value.status == 404


def test_a_file_a_job_made_is_listed_beside_uploads_and_another_job_can_read_it(
    client: Client, live_api: Api, tmp_path: Path
) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(b"x" * 1000)
    upload = client.upload(source)
    job = client.wait(client.submit("test_maker", {"source": upload["id"]})["id"], timeout=30)
    (made,) = job["files"]
    newest = client.list_files(limit=2)["items"]
    assert [f["id"] for f in newest] == [made["id"], upload["id"]]
    assert newest[0]["name"] == "copy.bin" and newest[0]["sha256"] == upload["sha256"]
    assert [f["kind"] for f in newest] == ["output", "upload"]
    assert client.list_files(kind="output", limit=1)["items"][0]["id"] == made["id"]
    code, out, _ = cli(live_api, "files", "--limit", "2")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [made["id"], upload["id"]]
    assert out.splitlines()[1].split()[1:] == ["upload", "1000", upload["created_at"], "input.bin"]
    code, out, _ = cli(live_api, "files", "--kind", "upload", "--limit", "1")
    assert code == 0 and out.split()[0] == upload["id"]
    reread = client.wait(client.submit("test_maker", {"source": made["id"]})["id"], timeout=30)
    assert reread["status"] == "succeeded" and reread["result"] == {"size": 1000}


def test_cli_submit_with_an_at_path_uploads_the_file_and_downloads_the_alignment(
    live_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = tmp_path / "reads.fa"
    reads.write_text(FASTA)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(live_api, "submit", "align", f"fasta=@{reads}", "--wait")
    assert code == 0, err
    job = json.loads(out)
    assert job["status"] == "succeeded" and "uploaded" in err
    code, _, err = cli(live_api, "download", job["id"], "alignment.txt")
    assert code == 0, err
    assert "GATTACA" in (tmp_path / "alignment.txt").read_text()
    code, out, _ = cli(live_api, "logs", job["id"])
    assert code == 0 and "aligned a (7 letters) with b (7 letters)" in out


def test_cli_upload_prints_the_record_and_logs_follow_prints_until_the_end(
    live_api: Api, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    code, out, _ = cli(live_api, "upload", str(path))
    assert code == 0 and json.loads(out)["name"] == "notes.txt"
    job = live_api.post(
        "/api/v1/jobs", json={"type": "sleep", "params": {"seconds": 1, "steps": 2}}
    )
    code, out, _ = cli(live_api, "logs", job.json()["id"], "--follow")
    assert code == 0
    assert [line.split(None, 3)[3] for line in out.splitlines()] == [
        "step 1 of 2 done",
        "step 2 of 2 done",
    ]


def test_cli_submit_with_an_at_path_to_nothing_fails_without_submitting(live_api: Api) -> None:
    result = CliRunner().invoke(
        main, ["submit", "align", "fasta=@/nonexistent.fa", "--url", live_api.base]
    )
    assert result.exit_code == 2 and "no such file" in result.output
