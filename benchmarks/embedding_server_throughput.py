"""Benchmark (b): sustained throughput against a server answering each request after 200 ms.

Starts the OpenAI-protocol test server (``tests/helpers/embedding_servers``) on 127.0.0.1 with a
fixed latency, embeds synthetic texts with ``max_concurrency`` requests in flight, and
compares the achieved requests/s with the limit ``max_concurrency / latency``.

    .venv/bin/python benchmarks/embedding_server_throughput.py [--requests 400] \
        [--latency 0.2] [--concurrency 8] [--batch-size 16] [--dim 256]

Target: >= 90% of the limit (8 / 0.2 s = 40 requests/s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from helpers.embedding_servers import OpenAITestServer

    from components.embedding import EmbeddingConfig, embed_texts
    from components.embedding.providers import get_provider
    from components.runtime import configure_environment

    configure_environment()
    os.environ["BENCH_EMBEDDING_KEY"] = "bench-key"
    n_texts = args.requests * args.batch_size
    texts = [f"synthetic passage {i} about subject {i % 97}" for i in range(n_texts)]
    with (
        OpenAITestServer(dim=args.dim, latency_s=args.latency, api_key="bench-key") as server,
        tempfile.TemporaryDirectory() as cache,
    ):
        config = EmbeddingConfig(
            provider="openai",
            model="bench",
            base_url=server.base_url,
            api_key_env="BENCH_EMBEDDING_KEY",
            cache_dir=Path(cache),
            batch_size=args.batch_size,
            max_concurrency=args.concurrency,
            shard_size=n_texts,
            progress="off",
            timeout_s=30,
        )
        get_provider(config)  # client construction is not part of the sustained rate
        start = time.perf_counter()
        matrix = embed_texts(texts, config)
        wall = time.perf_counter() - start
        records = sorted(server.requests, key=lambda r: r.started)
        span = records[-1].finished - records[0].started
    limit = args.concurrency / args.latency
    sustained = len(records) / span
    result = {
        "requests": len(records),
        "texts": n_texts,
        "latency_s": args.latency,
        "max_concurrency": args.concurrency,
        "server_max_in_flight": server.max_in_flight,
        "limit_rps": limit,
        "sustained_rps": sustained,
        "fraction": sustained / limit,
        "wall_s_including_planning_and_assembly": wall,
        "wall_rps": len(records) / wall,
        "shape": list(matrix.shape),
    }
    print(json.dumps(result, indent=2))
    print(
        f"sustained {sustained:.1f} req/s = {100 * sustained / limit:.1f}% of the "
        f"{limit:.0f} req/s limit (end-to-end incl. planning and assembly: "
        f"{100 * result['wall_rps'] / limit:.1f}%); target >= 90%: "
        f"{'PASS' if sustained / limit >= 0.9 else 'FAIL'}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
