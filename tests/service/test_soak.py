"""A bounded soak of a real backend process: concurrent clients, cancels, deletes and a SIGKILL mid-run end with
every job final, the interrupted ones run again, no 5xx, no working file left, and a bounded peak memory."""

from __future__ import annotations

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from tests.helpers.soak import run_soak


def test_soak_with_a_kill_mid_run_ends_clean(tmp_path, da3_small_folder):
    weights, _ = da3_small_folder
    report = run_soak(weights, tmp_path / "data", clients=4, jobs_per_client=4, process_res=28, model_memory_gb=1.0)
    summary = report.as_dict()
    assert report.client_errors == [] and report.server_errors == [], summary
    assert report.submitted == 16 and report.transport_errors > 0, summary  # the kill cut some requests off
    assert report.unfinished == [] and report.requeued_not_finished == [], summary
    assert report.running_at_kill >= 1 and report.requeued_done >= 1, summary  # re-queued, then done
    assert sum(report.states.values()) >= 16 - report.deleted, summary
    assert set(report.states) <= {"done", "cancelled"} and report.states.get("done", 0) >= 8, summary
    assert report.left_files == [], summary
    assert 0 < report.peak_rss_gb < 3.0, summary  # python, torch and a 0.1 GiB model: far below 3 GiB
