"""The Space (space/app.py) under load and abuse, on localhost.

Starts the app in a subprocess (a free port, its own Gradio cache folder), waits until it answers, then
for ``--duration`` seconds runs ``--concurrency`` client threads, each with its own ``gradio_client.Client``,
calling the ``classify`` endpoint in a loop with the shipped examples (space/examples/) at a mix of sizes.
Right after the warm-up, while that load runs, it sends malformed and abusive requests one by one
(not an image, a truncated JPEG, an empty file, decompression bombs, an upload over the size cap, paths
on the server, broken API payloads) and checks that each gets its clear error and that the next good
request still works. The server's resident memory (RSS, psutil) is sampled throughout.
Writes ``docs/results/space_load_test.json`` and ``.md`` and prints the Markdown.

    python benchmarks/space_load_test.py                      # 60 s, 8 clients: ~85 s on 2 CPU cores
    python benchmarks/space_load_test.py --duration 10 --concurrency 2 --out ""     # a smoke run, no files

The model is ``--model``, else outputs/quickstart when it has been trained, else a tiny randomly
initialised student saved to a temporary folder (hf_deit.modeling.build_student).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "space" / "app.py"
EXAMPLES = sorted((REPO / "space" / "examples").glob("*.png"))
QUICKSTART = REPO / "outputs" / "quickstart"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # space/app.py: MAX_UPLOAD = "20mb"
# "No memory growth": the server's RSS, fitted by a straight line over the measured part of the run, grows by
# less than this. RSS swings by +-50 MB from request to request (an 800 px image and its overlays come and go),
# so two single readings or short windows can differ by that much with no leak at all; a least-squares
# line through ~100 samples of a 50 s run has a standard error of ~13 MB (reported with the fit).
MEMORY_LIMIT_MB = 32.0


# ----------------------------------------------------------------------------------------------- models


def save_tiny_student(path: Path) -> Path:
    """A randomly initialised 2-layer DeiT student for the CIFAR-10 names (the examples' file names)."""
    from hf_deit.config import ModelConfig
    from hf_deit.modeling import build_student

    shape = ModelConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    model, processor = build_student(shape, dict(enumerate(path.stem for path in EXAMPLES)))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def default_model(workdir: Path) -> str:
    if (QUICKSTART / "model.safetensors").is_file():
        return str(QUICKSTART)
    return str(save_tiny_student(workdir / "tiny-student"))


# ----------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python space/app.py`` on 127.0.0.1:<free port>, offline, with its own Gradio cache folder."""

    def __init__(self, model: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.cache = workdir / "gradio-cache"
        self.log_path = workdir / "server.log"
        env = {
            **os.environ, "MODEL_ID": model, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(self.cache), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, str(APP)], cwd=REPO, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self.startup_s = float("nan")

    def wait_until_up(self, start_timeout: float = 180.0) -> None:
        """Until the app answers (it imports gradio, torch and transformers and loads the model first)."""
        started = self.started
        try:
            while not self._answers():
                if self.process.poll() is not None:
                    raise RuntimeError(f"space/app.py exited with code {self.process.returncode}:\n{self.log_tail()}")
                if time.monotonic() - started > start_timeout:
                    raise TimeoutError(f"space/app.py did not answer within {start_timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.25)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "config", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process.poll() is None and self._answers()

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class RssSampler(threading.Thread):
    """The server process's RSS every ``interval`` seconds, as (monotonic time, bytes)."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.monotonic(), self.process.memory_info().rss))
            except Exception:  # the process is gone: the load test reports it
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()



def memory_summary(trace: list[tuple[float, float]], start: float, end: float, limit_mb: float) -> dict[str, Any]:
    """RSS figures (MB) of a trace of (seconds since the load began, MB), measured window [start, end]."""
    window = [(t, rss) for t, rss in trace if start <= t <= end]
    if len(window) < 3:
        raise ValueError(f"only {len(window)} RSS samples in the measured window: run longer")
    times, values = [t for t, _ in window], [rss for _, rss in window]
    fit = statistics.linear_regression(times, values)
    slope = fit.slope  # MB per second
    residuals = [rss - (fit.intercept + slope * t) for t, rss in window]
    spread = sum((t - statistics.fmean(times)) ** 2 for t in times)
    slope_error = (sum(r * r for r in residuals) / (len(window) - 2) / spread) ** 0.5 if spread else float("nan")
    middle = (start + end) / 2
    first = [rss for t, rss in window if t < middle]
    second = [rss for t, rss in window if t >= middle]
    edge = max(1.0, (end - start) / 20)  # a few samples at each end
    return {
        "after_warmup": round(statistics.median([r for t, r in window if t <= start + edge]), 1),
        "end": round(statistics.median([r for t, r in window if t >= end - edge]), 1),
        "max": round(max(rss for _, rss in trace), 1),
        "max_during_warmup": round(max((rss for t, rss in trace if t < start), default=float("nan")), 1),
        "median_first_half": round(statistics.median(first), 1),
        "median_second_half": round(statistics.median(second), 1),
        "trend_mb_per_min": round(60 * slope, 1),
        "fitted_growth": round(slope * (end - start), 1),
        "fitted_growth_standard_error": round(slope_error * (end - start), 1),
        "samples_in_window": len(window),
        "limit": limit_mb,
        "no_growth": slope * (end - start) < limit_mb,
        "samples": len(trace),
    }


# ----------------------------------------------------------------------------------------------- inputs


def make_inputs(workdir: Path, sizes: tuple[int, ...]) -> list[tuple[str, int]]:
    """Every example at every long side in ``sizes``: PNG up to 256 pixels, JPEG above (as photos come)."""
    from PIL import Image

    folder = workdir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for example in EXAMPLES:
        image = Image.open(example).convert("RGB")
        for side in sizes:
            if side == image.width:
                inputs.append((str(example), side))
                continue
            resized = image.resize((side, side * 3 // 4 if side > 256 else side), Image.BICUBIC)
            path = folder / f"{example.stem}-{side}.{'png' if side <= 256 else 'jpg'}"
            resized.save(path, quality=90) if side > 256 else resized.save(path)
            inputs.append((str(path), side))
    return inputs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@dataclass
class Case:
    """One malformed or abusive request and the message the sender must see."""

    id: str
    input: str
    expect: str
    send: Callable[[Any, str], str]  # (client, url) -> the error message shown (raises AssertionError if none)
    test: str = ""


def _upload_error(path: Path) -> Callable[[Any, str], str]:
    def send(client: Any, url: str) -> str:
        from gradio_client import handle_file

        try:
            client.predict(handle_file(str(path)), api_name="/classify")
        except Exception as error:
            return str(error)
        raise AssertionError(f"{path.name} was classified")

    return send


def _raw_call(payload: Any, raw_body: Optional[bytes] = None) -> Callable[[Any, str], str]:
    """Through Gradio's HTTP API (``/gradio_api/call/classify``), as curl or a hand-written client would."""

    def send(client: Any, url: str) -> str:
        import httpx

        if raw_body is not None:
            response = httpx.post(url + "gradio_api/call/classify", content=raw_body,
                                  headers={"content-type": "application/json"}, timeout=30)
        else:
            response = httpx.post(url + "gradio_api/call/classify", json=payload, timeout=30)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text.strip()}"
        event_id = response.json()["event_id"]
        stream = httpx.get(url + f"gradio_api/call/classify/{event_id}", timeout=60).text
        event = stream.split("event:", 1)[-1].split("\n", 1)[0].strip() if "event:" in stream else ""
        data = stream.split("data:", 1)[-1].strip() if "data:" in stream else ""
        if event == "error":
            message = json.loads(data).get("error") if data.startswith("{") else data
            return str(message)  # "None" when Gradio hides the reason
        raise AssertionError(f"not refused: {event or stream[:200]}")

    return send


def _raw_upload(path: Path) -> Callable[[Any, str], str]:
    """POST the file to ``/gradio_api/upload`` directly: a client that skips gradio_client's size check."""

    def send(client: Any, url: str) -> str:
        import httpx

        with open(path, "rb") as handle:
            response = httpx.post(url + "gradio_api/upload", files={"files": (path.name, handle)}, timeout=60)
        if response.status_code == 200:
            raise AssertionError(f"{path.name} was accepted: {response.text[:200]}")
        return f"HTTP {response.status_code}: {response.text.strip()}"

    return send


CASE_IDS = ("not-an-image", "truncated-jpeg", "empty-file", "bomb-header", "bomb-zlib", "over-size-cap",
            "over-size-cap-raw", "no-image", "server-path", "path-traversal", "not-a-file", "no-inputs",
            "invalid-json")


def make_cases(workdir: Path, server_cache: Path) -> list[Case]:
    import numpy as np
    from PIL import Image

    folder = workdir / "malformed"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.png").write_text("this is a text file, not a picture\n")
    photo = io.BytesIO()
    Image.open(EXAMPLES[0]).convert("RGB").resize((640, 480)).save(photo, "JPEG", quality=90)
    (folder / "cut.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0))
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", zlib.compress(b""))
                                      + _png_chunk(b"IEND", b""))
    Image.new("L", (6000, 6000)).save(folder / "zeros.png")  # 36 MP of real, decodable data, ~35 kB on disk
    noise = np.random.default_rng(0).integers(0, 256, (2800, 2800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "big.bmp")  # 23.5 MB, 7.8 MP: only the byte cap refuses it
    sizes = {name: (folder / name).stat().st_size for name in ("bomb.png", "zeros.png", "big.bmp")}
    server_image = EXAMPLES[5]
    escape = str(server_cache) + "/.." * (len(Path(server_cache).resolve().parts) - 1) + "/etc/passwd"
    cases = [
        Case("not-an-image", "text saved as `notes.png`", "Could not read notes.png as an image",
             _upload_error(folder / "notes.png")),
        Case("truncated-jpeg", "truncated JPEG (first half of a 640x480 photo, `cut.jpg`)",
             "Could not decode cut.jpg: the file looks damaged", _upload_error(folder / "cut.jpg")),
        Case("empty-file", "empty file (0 bytes, `empty.png`)", "Could not read empty.png as an image",
             _upload_error(folder / "empty.png")),
        Case("bomb-header", f"decompression bomb: a {sizes['bomb.png']}-byte PNG declaring 30000x30000 (900 MP)",
             "bomb.png declares too many pixels to decode safely", _upload_error(folder / "bomb.png")),
        Case("bomb-zlib", f"decompression bomb: a 6000x6000 (36 MP) PNG of zeros, {sizes['zeros.png'] / 1e3:.0f} kB",
             "zeros.png is 6000x6000 pixels, more than this demo accepts (25 megapixels)",
             _upload_error(folder / "zeros.png")),
        Case("over-size-cap", f"upload over the 20 MB cap ({sizes['big.bmp'] / 2**20:.1f} MiB BMP) with gradio_client",
             f"exceeds the maximum file size of {MAX_UPLOAD_BYTES} bytes", _upload_error(folder / "big.bmp")),
        Case("over-size-cap-raw", "the same file POSTed straight to `/gradio_api/upload` (client check skipped)",
             f"HTTP 413: File size exceeded maximum allowed size of {MAX_UPLOAD_BYTES} bytes",
             _raw_upload(folder / "big.bmp")),
        Case("no-image", "no image (`None`)", "Upload, paste or take a picture first", _raw_call({"data": [None]})),
        Case("server-path", f"a path on the server instead of an upload: `{{\"path\": \"{server_image}\"}}`",
             f"{server_image.name} was not uploaded to this demo", _raw_call({"data": [{"path": str(server_image)}]})),
        Case("path-traversal", "a file payload escaping the upload folder: `<cache>/../../etc/passwd` (`..` up to "
             "`/`) with `meta: gradio.FileData`", "Cannot move /etc/passwd to the gradio cache dir because it was "
             "not uploaded by a user", _raw_call({"data": [{"path": escape, "meta": {"_type": "gradio.FileData"}}]})),
        Case("not-a-file", "a string instead of a file payload: `{\"data\": [\"cat.png\"]}`",
             "validation error for ImageData", _raw_call({"data": ["cat.png"]})),
        Case("no-inputs", "no inputs: `{\"data\": []}`", "didn't receive enough input values",
             _raw_call({"data": []})),
        Case("invalid-json", "a body that is not JSON", "HTTP 422", _raw_call(None, raw_body=b"{not json")),
    ]
    assert tuple(case.id for case in cases) == CASE_IDS
    for case in cases:
        case.test = f"test_space_load.py::test_malformed_request_gets_a_clear_error[{case.id}]"
    return cases


# ----------------------------------------------------------------------------------------------- the run


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _client(url: str, downloads: Path) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def _classify_ok(client: Any, path: str, labels: set[str]) -> None:
    from gradio_client import handle_file

    fused, cls_head, distill_head, attention, reading = client.predict(handle_file(path), api_name="/classify")
    if fused["label"] not in labels or not os.path.isfile(attention) or "layer" not in reading:
        raise AssertionError(f"unexpected output for {path}: {fused!r}, {attention!r}, {reading!r}")


def run_load_test(
    model: Optional[str] = None,
    duration: float = 60.0,
    concurrency: int = 8,
    warmup: Optional[float] = None,
    sizes: tuple[int, ...] = (32, 224, 800),
    workdir: Optional[Path] = None,
    rss_interval: float = 0.5,
    memory_limit_mb: float = MEMORY_LIMIT_MB,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Start the app, load it for ``duration`` seconds (the first ``warmup`` of them not counted), send the
    malformed requests meanwhile, stop it; return every number the report shows."""
    import psutil

    own_workdir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="space-load-")) if workdir is None else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    warmup = max(1.0, min(10.0, 0.2 * duration)) if warmup is None else warmup
    try:
        model = model or default_model(workdir)
        labels = {path.stem for path in EXAMPLES}
        log(f"starting space/app.py with {model}")
        server = Server(model, workdir)
        try:
            inputs = make_inputs(workdir, sizes)
            cases = make_cases(workdir, server.cache)  # while the server starts
            server.wait_until_up()
            log(f"up after {server.startup_s:.1f} s at {server.url}; {concurrency} clients for {duration:.0f} s")
            sampler = RssSampler(server.process.pid, rss_interval)
            sampler.start()
            records: list[tuple[float, float, int, Optional[str]]] = []
            lock = threading.Lock()
            began = time.monotonic()
            deadline = began + duration

            def worker(index: int) -> None:
                rng = random.Random(index)
                try:
                    client = _client(server.url, workdir / f"downloads-{index}")
                except Exception as error:  # counted like a failed request
                    with lock:
                        now = time.monotonic()
                        records.append((now, now, 0, f"Client(): {type(error).__name__}: {error}"))
                    return
                while time.monotonic() < deadline:
                    path, side = rng.choice(inputs)
                    start = time.monotonic()
                    try:
                        _classify_ok(client, path, labels)
                        error = None
                    except Exception as failure:
                        error = f"{type(failure).__name__}: {failure}"
                    with lock:
                        records.append((start, time.monotonic(), side, error))

            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
            for thread in threads:
                thread.start()
            time.sleep(max(0.0, began + warmup - time.monotonic()))

            rows = []  # the malformed requests, under load, each followed by a good request from the same client
            probe = _client(server.url, workdir / "downloads-probe")
            for case in cases:
                shown, still_serving = "", False
                try:
                    shown = case.send(probe, server.url)
                except Exception as error:
                    shown = f"(no error: {type(error).__name__}: {error})"
                try:
                    _classify_ok(probe, str(EXAMPLES[3]), labels)
                    still_serving = True
                except Exception as error:
                    log(f"after {case.id}: the next good request failed: {error}")
                rows.append({"id": case.id, "input": case.input, "error_shown": shown, "expected": case.expect,
                             "clear": case.expect in shown, "still_serving": still_serving, "test": case.test})
                log(f"{case.id}: {'ok' if rows[-1]['clear'] and still_serving else 'FAILED'}: {shown[:120]}")
            malformed_done = time.monotonic() - began

            for thread in threads:
                thread.join()
            ended = time.monotonic()
            sampler.stop()
            final_ok = server.alive()
            try:
                _classify_ok(probe, str(EXAMPLES[0]), labels)
            except Exception as error:
                final_ok = False
                log(f"the request after the run failed: {error}")
            rss_final = None
            if server.process.poll() is None:
                rss_final = psutil.Process(server.process.pid).memory_info().rss / 2**20
            cache_bytes = sum(f.stat().st_size for f in server.cache.rglob("*") if f.is_file())
            cache_files = sum(1 for f in server.cache.rglob("*") if f.is_file())
            server_log_errors = server.log_tail(10_000).count("Traceback")
        finally:
            server.stop()

        measured = [r for r in records if r[0] >= began + warmup]
        latencies = [end - start for start, end, _, error in measured if error is None]
        errors = [error for *_, error in records if error is not None]
        window_end = max((end for _, end, _, _ in measured), default=ended)
        window = max(window_end - (began + warmup), 1e-9)
        per_size = {}
        for side in sizes:
            values = [end - start for start, end, s, error in measured if s == side and error is None]
            per_size[str(side)] = {"requests": len(values), "p50_s": round(_percentile(values, 0.5), 3),
                                   "p95_s": round(_percentile(values, 0.95), 3)}
        trace = [(round(t - began, 2), round(rss / 2**20, 1)) for t, rss in sampler.samples]
        memory = memory_summary(trace, warmup, duration, memory_limit_mb)
        memory.update(after_run=round(rss_final, 1) if rss_final is not None else None, interval_s=rss_interval)
        result = {
            "model": model if not model.startswith(str(REPO)) else os.path.relpath(model, REPO),
            "duration_s": duration, "warmup_s": warmup, "concurrency": concurrency, "sizes": list(sizes),
            "queue": {"concurrency_limit": 2, "max_size": 32},
            "server_startup_s": round(server.startup_s, 1),
            "requests": len(records), "requests_measured": len(measured),
            "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "throughput_rps": round(len(latencies) / window, 2),
            "latency_s": {"p50": round(_percentile(latencies, 0.5), 3), "p95": round(_percentile(latencies, 0.95), 3),
                          "max": round(max(latencies, default=float("nan")), 3),
                          "mean": round(statistics.fmean(latencies), 3) if latencies else float("nan")},
            "latency_by_size": per_size,
            "rss_mb": memory,
            "no_memory_growth": memory["no_growth"],
            "malformed": rows, "malformed_sent_between_s": [round(warmup, 1), round(malformed_done, 1)],
            "server_alive_after_run": final_ok, "server_tracebacks_logged": server_log_errors,
            "gradio_cache": {"files": cache_files, "mb": round(cache_bytes / 1e6, 1)},
            "rss_trace_mb": trace,
        }
        return result
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """The benchmarks' machine description (benchmarks/timing.py) plus the Gradio versions served."""
    import gradio
    import gradio_client

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import machine as benchmark_machine

    return {**benchmark_machine(), "python": platform.python_version(), "gradio": gradio.__version__,
            "gradio_client": gradio_client.__version__}


def markdown(result: dict[str, Any]) -> str:
    latency, rss = result["latency_s"], result["rss_mb"]
    ms = lambda seconds: f"{1000 * seconds:.0f} ms"  # noqa: E731
    verdict = "yes" if result["no_memory_growth"] else "**no**"
    lines = [
        "| clients | duration (warm-up) | requests (measured) | errors | throughput | p50 | p95 | max | "
        "server RSS after warm-up / end / max | RSS median, 1st / 2nd half | RSS trend (fit) | no memory growth |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {result['concurrency']} | {result['duration_s']:.0f} s ({result['warmup_s']:.0f} s) | "
        f"{result['requests']} ({result['requests_measured']}) | {result['errors']} | "
        f"{result['throughput_rps']:.2f} req/s | {ms(latency['p50'])} | {ms(latency['p95'])} | {ms(latency['max'])} | "
        f"{rss['after_warmup']:.0f} / {rss['end']:.0f} / {rss['max']:.0f} MB | "
        f"{rss['median_first_half']:.0f} / {rss['median_second_half']:.0f} MB | "
        f"{rss['fitted_growth']:+.1f} ± {rss['fitted_growth_standard_error']:.1f} MB "
        f"({rss['trend_mb_per_min']:+.1f} MB/min) | "
        f"{verdict} (fit < {rss['limit']:.0f} MB) |",
        "",
        "| image long side | requests | p50 | p95 |",
        "|---:|---:|---:|---:|",
    ]
    for side, row in result["latency_by_size"].items():
        lines.append(f"| {side} px | {row['requests']} | {ms(row['p50_s'])} | {ms(row['p95_s'])} |")
    lines += [
        "",
        "| malformed or abusive request | error shown to the sender | clear | server still serving | test |",
        "|---|---|---|---|---|",
    ]
    for row in result["malformed"]:
        shown = row["error_shown"].replace("|", "\\|").replace("\n", " ")
        shown = shown if len(shown) <= 220 else shown[:217] + "..."
        lines.append(f"| {row['input']} | {shown} | {'yes' if row['clear'] else '**no**'} | "
                     f"{'yes' if row['still_serving'] else '**no**'} | `{row['test']}` |")
    return "\n".join(lines)


def report(result: dict[str, Any], command: str) -> str:
    info = result["machine"]
    rss = result["rss_mb"]
    return "\n".join([
        "# The Space under load",
        "",
        f"`{command}`",
        "",
        f"Machine: {info['cpu_cores']} CPU cores ({info.get('device') or info.get('cpu')}), shared with other work; no GPU. Python "
        f"{info['python']}, torch {info['torch']} ({info['torch_threads']} threads), gradio {info['gradio']}, "
        f"gradio_client {info['gradio_client']}. Server and clients run on the same cores.",
        "",
        f"Model `{result['model']}`; the app's queue runs {result['queue']['concurrency_limit']} requests at a "
        f"time and holds at most {result['queue']['max_size']}. {result['concurrency']} client threads, each with "
        f"its own `gradio_client.Client`, call `/classify` back to back with the 10 examples at long sides "
        f"{', '.join(str(s) for s in result['sizes'])} px (a request = upload + queue + inference + attention "
        "overlays + downloading both overlays). Latencies count requests started after the warm-up. The "
        "malformed requests were sent one after the other under that load, from "
        f"{result['malformed_sent_between_s'][0]:.0f} to {result['malformed_sent_between_s'][1]:.0f} s into the run, each followed by a good request from the "
        "same client (\"server still serving\"); the run ends when the last of them is answered.",
        "",
        markdown(result),
        "",
        f"**Memory.** RSS of the server process, sampled every {rss['interval_s']} s ({rss['samples']} samples, "
        f"{rss['samples_in_window']} in the measured window); "
        "\"after warm-up\" and \"end\" are medians over the first and last 5% of the measured window. "
        "\"No memory growth\" means: a least-squares line through every RSS sample of the measured window "
        f"rises by less than {rss['limit']:.0f} MB over it (± is the fit's standard error). RSS swings by tens of MB from one request to the "
        "next (an 800 px image, its two overlays and their PNG encoding come and go), so two single readings, or "
        "a short window at each end, can differ by that much with no leak; the fit through all the samples does not. "
        f"Peak during warm-up: {rss['max_during_warmup']:.0f} MB; idle, after the clients stopped: "
        f"{rss['after_run']} MB. Over a run this short, a leak smaller than "
        f"~{rss['limit'] / max(result['requests_measured'], 1) * 1000:.0f} kB "
        "per request would go unnoticed.",
        "",
        *(f"{note}\n" for note in result.get("notes", [])),
        f"The server took {result['server_startup_s']:.0f} s to start (imports and model load, not counted). "
        f"After the run it was {'still' if result['server_alive_after_run'] else '**not**'} serving; "
        f"its Gradio cache held {result['gradio_cache']['files']} files ({result['gradio_cache']['mb']} MB: "
        "uploads and overlays are stored by content hash, so repeated inputs do not add files).",
        "",
    ])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="student folder or Hub id (default: outputs/quickstart, "
                        "else a tiny random student)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load, warm-up included")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--warmup", type=float, default=None, help="seconds not counted (default: 20%%, <= 10 s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224, 800], help="image long sides (px)")
    parser.add_argument("--memory-limit-mb", type=float, default=MEMORY_LIMIT_MB)
    parser.add_argument("--out", default="docs/results/space_load_test", help="writes OUT.json and OUT.md; '' for none")
    parser.add_argument("--report-from", default=None, metavar="JSON",
                        help="no run: recompute the memory verdict and rewrite OUT.md from a saved run")
    args = parser.parse_args(argv)
    if args.report_from:
        result = json.loads(Path(args.report_from).read_text())
        kept = {key: result["rss_mb"][key] for key in ("after_run", "interval_s")}
        result["rss_mb"] = {**memory_summary(result["rss_trace_mb"], result["warmup_s"], result["duration_s"],
                                             args.memory_limit_mb), **kept}
        result["no_memory_growth"] = result["rss_mb"]["no_growth"]
        result.pop("memory_limit_mb", None)  # written by the first version of this script
        command = result["command"]
    else:
        result = run_load_test(args.model, args.duration, args.concurrency, args.warmup, tuple(args.sizes),
                               memory_limit_mb=args.memory_limit_mb)
        result["machine"] = machine()
        arguments = sys.argv[1:] if argv is None else argv
        command = " ".join(["python benchmarks/space_load_test.py", *arguments])
        result["command"] = command
    print(markdown(result))
    if args.out:
        out = REPO / args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(report(result, command))
        print(f"wrote {out.with_suffix('.json')} and .md", file=sys.stderr)
    healthy = (result["errors"] == 0 and result["server_alive_after_run"]
               and all(row["clear"] and row["still_serving"] for row in result["malformed"]))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
