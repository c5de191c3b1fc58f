"""Image storage, local disk vs S3 (issue 16): upload and read throughput of a 1 MB image through
one image_service process, with ``IMAGE_STORAGE=local`` and with ``IMAGE_STORAGE=s3`` against
moto's S3 server on loopback, in one run, beside the bare ASGI baseline.

Uploads: distinct 1 MB PNGs (noise, so the re-encoding stays 1 MB and no upload is a duplicate),
sent by ``--upload-workers`` clients at once; each is received, decoded and re-encoded by Pillow,
then stored. Reads: ``GET /images/{id}/content`` of one stored image under the load generator
(the owner check, then the bytes streamed from the store).

    .venv/bin/python -m bench.bench_storage [--uploads 60] [--duration 5] [--database postgresql]

moto is a Python server, much slower than MinIO or S3: the s3 rows measure our client path plus
moto, so they are a floor. moto runs on the load generator's core.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.harness import (
    BENCH_SECRET,
    BenchEnv,
    add_database_option,
    percentile,
    print_table,
    run_benchmark,
    start_app,
    start_service,
)
from common.config import Settings, load_settings
from common.security import encode_token
from tests.s3_server import S3Server

IMAGE_SIDE = 580  # 580 × 580 × 3 bytes of noise: a PNG of about 1 MB


def noise_pngs(count: int) -> list[bytes]:
    rng = np.random.default_rng(16)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1)
        out.append(buffer.getvalue())
    return out


def upload_all(url: str, token: str, images: list[bytes], workers: int) -> tuple[float, list[float], list[str]]:
    """(seconds, per-upload latencies in ms, image ids) for every image, ``workers`` at a time."""
    latencies: list[float] = []
    ids: list[str] = []
    queue = list(enumerate(images))
    lock = threading.Lock()

    def work() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    index, data = queue.pop()
                started = time.perf_counter()
                answer = client.post("/api/v1/images", files={"file": (f"{index}.png", data, "image/png")})
                elapsed = (time.perf_counter() - started) * 1000
                answer.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    ids.append(answer.json()["id"])

    threads = [threading.Thread(target=work) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=60, help="uploads per backend")
    parser.add_argument("--upload-workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each read run")
    parser.add_argument("--connections", type=int, default=16)
    add_database_option(parser)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    images = noise_pngs(args.uploads + 1)
    mb = statistics.mean(len(i) for i in images) / 1e6
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    store = S3Server()
    store.start()
    rows, results = [], []
    try:
        with BenchEnv(database=args.database) as env, start_app("bench.baseline_app:app") as base:
            baseline = run_benchmark(
                "bare ASGI baseline", f"{base.url}/", connections=args.connections, duration=args.duration
            )
            results.append(baseline)
            for backend in ("local", "s3"):
                # An owner per backend: the same bytes of the same owner would be answered as duplicates.
                token, _ = encode_token(settings, str(uuid.uuid4()), "user", "access")
                storage_env = {"IMAGE_STORAGE": backend, "IMAGE_STORAGE_DIR": str(Path(env.tmp.name) / backend)}
                if backend == "s3":
                    storage_env.update(store.env(f"bench-{uuid.uuid4().hex[:8]}"))
                service_env = {
                    **env.env,
                    **storage_env,
                    "IMAGE_MAX_BYTES": str(20 * 1024 * 1024),
                    "GENERATION_WORKERS_ENABLED": "false",
                }
                with start_service("image_service", service_env) as svc:
                    upload_all(svc.url, token, images[:1], 1)  # warm up: imports, first decode, the bucket
                    seconds, latencies, ids = upload_all(svc.url, token, images[1:], args.upload_workers)
                    rows.append(
                        (
                            backend,
                            len(ids) / seconds,
                            len(ids) * mb / seconds,
                            percentile(latencies, 0.50),
                            percentile(latencies, 0.95),
                        )
                    )
                    read = run_benchmark(
                        f"read 1 MB image, {backend}",
                        f"{svc.url}/api/v1/images/{ids[0]}/content",
                        {"Authorization": f"Bearer {token}"},
                        connections=args.connections,
                        duration=args.duration,
                    )
                    results.append(read)
    finally:
        store.stop()

    print(f"\nimage_service, one process, {args.database}; images of {mb:.2f} MB\n")
    print(f"{'uploads':<10} {'per s':>7} {'MB/s':>7} {'p50 ms':>8} {'p95 ms':>8}  ({args.upload_workers} at once)")
    for backend, rate, throughput, p50, p95 in rows:
        print(f"{backend:<10} {rate:>7.1f} {throughput:>7.1f} {p50:>8.1f} {p95:>8.1f}")
    print()
    print_table(results, results[0])
    for r in results[1:]:
        print(f"{r.name}: {r.rps * mb:.0f} MB/s")


if __name__ == "__main__":
    main()
