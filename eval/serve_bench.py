"""Benchmark of `mamba-retrieval serve`: requests/s and latency under many concurrent clients, batching on against
batching off (`--max-batch 1`), in one run.

    python -m mamba_retrieval.eval.serve_bench [--model mamba-retrieval-tiny] [--requests 1000] [--clients 16]

Each server is a real `mamba-retrieval serve` process on a free port of 127.0.0.1; `--clients` asyncio clients
(httpx2, the openai client's HTTP library) send `--requests` single short texts between them. Every answer is
checked: status 200, one embedding, equal (1e-5) to the embedding of the same text asked alone. The modes alternate
(on, off, on, off, ...) `--repeats` times, because the machine is shared; the table gives the median of the repeats
and their ratio. Then a sweep of bad requests, sent concurrently, must all get a 4xx in OpenAI's error shape. The
figures and settings are written to `--output` (JSON).
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import numpy as np

from mamba_retrieval.modeling.data_files import write_text_atomic

TEXTS = [f"question {i}: how does a state-space model read text number {i * 13 % 97}?" for i in range(100)]
BAD_REQUESTS = [
    b"{not json",
    b"[]",
    json.dumps({"input": "no model"}).encode(),
    json.dumps({"model": "not-served", "input": "a"}).encode(),
    json.dumps({"model": "{name}", "input": ""}).encode(),
    json.dumps({"model": "{name}", "input": []}).encode(),
    json.dumps({"model": "{name}", "input": [1, 2, 3]}).encode(),
    json.dumps({"model": "{name}", "input": ["a", None]}).encode(),
    json.dumps({"model": "{name}", "input": 12}).encode(),
    json.dumps({"model": "{name}", "input": "a", "encoding_format": "int8"}).encode(),
    json.dumps({"model": "{name}", "input": "a", "dimensions": 0}).encode(),
    json.dumps({"model": "{name}", "input": "a", "dimensions": "8"}).encode(),
    json.dumps({"model": "{name}", "input": "a", "unknown_field": 1}).encode(),
    json.dumps({"model": "{name}", "input": ["a"] * 2049}).encode(),
    json.dumps({"model": "{name}", "input": "word " * 9000}).encode(),
    json.dumps({"model": "{name}", "input": ["word " * 8000] * 40}).encode(),
]


class Server:
    """`mamba-retrieval serve` in a subprocess on a free port; its log in a temporary file."""

    def __init__(self, model, options):
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        command = [sys.executable, "-m", "mamba_retrieval.modeling.cli", "serve", model, "--port", "0", *options]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            text = Path(self.log.name).read_text()
            found = re.search(r"serving (\S+),.* at (http://\S+)/v1", text)
            if found and "Application startup complete" in text:
                self.name, self.url = found.group(1), found.group(2)
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the server did not start:\n{text[-3000:]}")
            time.sleep(0.1)

    def cpu_seconds(self):
        """CPU time the server process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)
        self.log.close()
        os.unlink(self.log.name)


async def embed(client, url, name, text):
    body = {"model": name, "input": text, "encoding_format": "float"}
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/embeddings", json=body)
    return time.perf_counter() - started, response


async def load(url, name, requests, clients, references):
    """`requests` single-text requests from `clients` concurrent clients; (seconds, latencies, failures)."""
    latencies, failures, next_request = [], [], iter(range(requests))

    async def one_client(client):
        for i in next_request:  # a shared iterator: each request number is sent once, by whichever client is free
            text = TEXTS[i % len(TEXTS)]
            try:
                latency, response = await embed(client, url, name, text)
            except httpx2.HTTPError as error:
                failures.append(f"request {i}: {type(error).__name__}: {error}")
                continue
            latencies.append(latency)
            data = response.json().get("data") if response.status_code == 200 else None
            if not data or len(data) != 1:
                failures.append(f"request {i}: {response.status_code} {response.text[:200]}")
            elif not np.allclose(data[0]["embedding"], references[text], atol=1e-5):
                failures.append(f"request {i}: the embedding is not its text's")

    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
        return time.perf_counter() - started, latencies, failures


async def reference_embeddings(url, name):
    """Each text's embedding asked alone, one request at a time."""
    async with httpx2.AsyncClient(timeout=120) as client:
        references = {}
        for text in TEXTS:
            _, response = await embed(client, url, name, text)
            response.raise_for_status()
            references[text] = np.array(response.json()["data"][0]["embedding"])
        return references


async def bad_request_sweep(url, name, clients):
    """Every bad request sent `clients` times at once: the statuses and whether each answer had OpenAI's error shape."""
    bodies = [body.replace(b"{name}", name.encode()) for body in BAD_REQUESTS] * clients
    async with httpx2.AsyncClient(timeout=120) as client:

        async def send(body):
            response = await client.post(f"{url}/v1/embeddings", content=body)
            try:
                error = response.json()["error"]
                shaped = set(error) == {"message", "type", "param", "code"} and bool(error["message"])
            except (ValueError, KeyError, TypeError):
                shaped = False
            return response.status_code, shaped

        answers = await asyncio.gather(*(send(body) for body in bodies))
        healthy = (await client.get(f"{url}/health")).json()["status"] == "ok"
    return answers, healthy


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mamba-retrieval-tiny", help="the model to serve")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (one short text each)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument("--max-batch", default="32", help="the batched server's --max-batch")
    parser.add_argument("--max-wait-ms", default="5", help="the batched server's --max-wait-ms")
    parser.add_argument("--output", default="serve-bench.json", help="where the figures are written (JSON)")
    args = parser.parse_args(argv)
    modes = {
        "batched": ["--max-batch", args.max_batch, "--max-wait-ms", args.max_wait_ms],
        "unbatched": ["--max-batch", "1"],
    }

    runs, references, sweep = {mode: [] for mode in modes}, None, None
    for repeat in range(args.repeats):
        for mode, options in modes.items():
            server = Server(args.model, options)
            try:
                if references is None:
                    references = asyncio.run(reference_embeddings(server.url, server.name))
                if sweep is None:
                    sweep = asyncio.run(bad_request_sweep(server.url, server.name, args.clients))
                asyncio.run(load(server.url, server.name, args.clients * 2, args.clients, references))  # warm-up
                before = httpx2.get(f"{server.url}/health").json()
                server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
                seconds, latencies, failures = asyncio.run(
                    load(server.url, server.name, args.requests, args.clients, references)
                )
                server_cpu, client_cpu = server.cpu_seconds() - server_cpu, time.process_time() - client_cpu
                health = httpx2.get(f"{server.url}/health").json()
            finally:
                server.close()
            run = {
                "requests_per_s": args.requests / seconds,
                "p50_ms": 1000 * percentile(latencies, 50),
                "p99_ms": 1000 * percentile(latencies, 99),
                "answered": len(latencies),
                "failures": failures[:20],
                "failure_count": len(failures),
                "mean_batch": (health["texts"] - before["texts"]) / max(health["batches"] - before["batches"], 1),
                "worker_busy": (health["encode_seconds"] - before["encode_seconds"]) / seconds,
                "encode_ms_per_text": 1000
                * (health["encode_seconds"] - before["encode_seconds"])
                / max(health["texts"] - before["texts"], 1),
                "server_cpu_ms_per_request": 1000 * server_cpu / args.requests,
                "client_cpu_ms_per_request": 1000 * client_cpu / args.requests,
            }
            runs[mode].append(run)
            print(
                f"repeat {repeat + 1} {mode:>9}: {run['requests_per_s']:7.1f} req/s  p50 {run['p50_ms']:7.1f} ms  "
                f"p99 {run['p99_ms']:7.1f} ms  answered {run['answered']}/{args.requests}  failures "
                f"{run['failure_count']}  mean batch {run['mean_batch']:.1f}  worker busy {run['worker_busy']:.0%}  "
                f"CPU ms/request: server {run['server_cpu_ms_per_request']:.1f}, "
                f"clients {run['client_cpu_ms_per_request']:.1f}",
                flush=True,
            )

    summary = {
        mode: {
            key: statistics.median(run[key] for run in mode_runs)
            for key in ("requests_per_s", "p50_ms", "p99_ms", "mean_batch", "encode_ms_per_text")
        }
        for mode, mode_runs in runs.items()
    }
    ratio = summary["batched"]["requests_per_s"] / summary["unbatched"]["requests_per_s"]
    every_run = [run for mode_runs in runs.values() for run in mode_runs]
    lost = sum(run["failure_count"] + args.requests - run["answered"] for run in every_run)
    answers, healthy = sweep
    bad_ok = all(400 <= status < 500 and shaped for status, shaped in answers)
    print(f"\n{args.clients} clients, {args.requests} single-text requests per run, median of {args.repeats} runs")
    print("| mode | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for mode, figures in summary.items():
        print(f"| {mode} | {figures['requests_per_s']:.1f} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} |")
    print(f"batched / unbatched requests/s: {ratio:.2f}x")
    alone, together = summary["unbatched"]["encode_ms_per_text"], summary["batched"]["encode_ms_per_text"]
    print(
        f"the model's own share: {alone:.1f} ms per text encoded alone, {together:.1f} ms per text in batches of "
        f"{summary['batched']['mean_batch']:.1f} (worker wall time): at most {alone / together:.1f}x from batching, "
        "before the HTTP and client costs, which batching does not share"
    )
    print(f"requests lost or wrong: {lost}")
    print(
        f"bad requests: {len(answers)} sent ({len(BAD_REQUESTS)} kinds x {args.clients}), all 4xx in OpenAI's error "
        f"shape: {bad_ok}; statuses {sorted({status for status, _ in answers})}; healthy after: {healthy}"
    )
    record = {
        "command": "python -m mamba_retrieval.eval.serve_bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "requests": args.requests,
        "clients": args.clients,
        "modes": modes,
        "runs": runs,
        "median": summary,
        "ratio_requests_per_s": ratio,
        "ratio_encode_per_text": alone / together,
        "lost_or_wrong": lost,
        "bad_requests": {"sent": len(answers), "all_4xx_openai_shape": bad_ok, "healthy_after": healthy},
        "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}",
        "load_average_1_5_15_min_at_end": os.getloadavg(),  # the machine is shared: how busy it was
    }
    write_text_atomic(args.output, json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0 if lost == 0 and bad_ok and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
