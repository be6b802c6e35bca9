"""The Space under load and abuse: benchmarks/space_load_test.py for a few seconds against space/app.py.

The app runs as a subprocess on localhost with a tiny random student; 3 gradio_client threads keep it
busy while every malformed request of the script is sent. The full run (60 s, 8 clients) is in
docs/results/space_load_test.md.
"""

from __future__ import annotations

import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import space_load_test  # noqa: E402


@pytest.fixture(scope="module")
def load_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("space-load")
    model = space_load_test.save_tiny_student(workdir / "student")
    return space_load_test.run_load_test(str(model), duration=4, concurrency=3, warmup=1, sizes=(32, 224),
                                         workdir=workdir, rss_interval=0.25)


def test_load_completes_requests_without_errors(load_run):
    assert load_run["errors"] == 0, load_run["error_samples"]
    assert load_run["requests_measured"] > 0 and load_run["throughput_rps"] > 0
    assert 0 < load_run["latency_s"]["p50"] <= load_run["latency_s"]["p95"] <= load_run["latency_s"]["max"]
    assert load_run["rss_mb"]["samples"] > 4 and load_run["rss_mb"]["max"] > 0


def test_server_keeps_serving_after_the_run(load_run):
    assert load_run["server_alive_after_run"]


@pytest.mark.parametrize("case", space_load_test.CASE_IDS)
def test_malformed_request_gets_a_clear_error(load_run, case):
    row = next(row for row in load_run["malformed"] if row["id"] == case)
    assert row["expected"] in row["error_shown"], row
    assert row["still_serving"], f"the good request after {case} failed"


def test_report_has_the_table_and_every_row(load_run):
    machine = {"cpu_cores": 2, "cpu": "x86_64", "python": "3", "torch": "2", "torch_threads": 2, "gradio": "6",
               "gradio_client": "2"}
    result = {**load_run, "machine": machine}
    text = space_load_test.report(result, "python benchmarks/space_load_test.py")
    assert "| clients | duration (warm-up) |" in text and "CPU cores" in text
    assert all(f"[{case}]" in text for case in space_load_test.CASE_IDS)


def test_only_files_in_the_upload_folder_are_opened(tmp_path):
    """The guard behind the `server-path` row: a bare {"path": ...} payload skips Gradio's own check."""
    import importlib.util

    import gradio as gr
    from PIL import Image

    spec = importlib.util.spec_from_file_location("space_app", REPO / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    uploads, outside = tmp_path / "uploads", tmp_path / "elsewhere"
    (uploads / "abc").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(uploads / "abc" / "ok.png")
    Image.new("RGB", (8, 8), "blue").save(outside / "secret.png")
    (uploads / "abc" / "link.png").symlink_to(outside / "secret.png")
    assert app.load_image({"path": str(uploads / "abc" / "ok.png")}, uploads_in=str(uploads)).size == (8, 8)
    for path in (outside / "secret.png", uploads / "abc" / ".." / ".." / "elsewhere" / "secret.png",
                 uploads / "abc" / "link.png", tmp_path / "missing.png", f"{uploads}/abc/ok.png\x00"):
        with pytest.raises(gr.Error, match="was not uploaded to this demo"):
            app.load_image({"path": str(path)}, uploads_in=str(uploads))
