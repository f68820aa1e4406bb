"""Serving: ``mlflow models serve -m models:/<name>@champion --env-manager local`` over HTTP.

The served champion's ``/invocations`` output equals the in-process adaptor's (to 1e-6) at
every trained ``dim``; a ``dim`` that was not trained is refused with a clear 400 error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.http import free_port
from helpers.registry import (
    TRAINED_DIMS,
    evaluation_document,
    finished_run,
    mlflow_store,
    planted,
    train_variants,
)

from components.adaptor import load_adaptor
from components.registry import CHAMPION, RegistryConfig, load_champion, promote
from components.registry import register_run_model as register

BIN = Path(sys.executable).parent
MODEL = "served"

pytestmark = pytest.mark.slow


def post(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serving")
    data = planted()
    good = train_variants(data, tmp / "adaptors")["good"]
    with mlflow_store(tmp / "mlflow") as uri:
        register(
            finished_run(uri),
            good,
            evaluation_document(data, good),
            {"git_commit": "abc"},
            model_name=MODEL,
        )
        assert promote(MODEL, data.evaluation_set(), RegistryConfig()).action == "promoted"
        port = free_port()
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": uri,
        }
        log = tmp / "serve.log"
        server = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}@{CHAMPION}",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            cwd=tmp,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"mlflow models serve exited: {log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no /ping after 120 s: {log.read_text()[-3000:]}")
                time.sleep(1)
            adaptor, _ = load_adaptor(good)
            yield {"base": base, "adaptor": adaptor, "data": data, "uri": uri}
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def test_served_champion_matches_the_in_process_adaptor_at_every_dim(served: dict) -> None:
    x = served["data"].queries.numpy()[:25]
    for m in TRAINED_DIMS:
        status, body = post(
            f"{served['base']}/invocations", {"inputs": x.tolist(), "params": {"dim": m}}
        )
        assert status == 200, body
        vectors = np.asarray(body["predictions"], dtype=np.float32)
        assert vectors.shape == (25, m)
        np.testing.assert_allclose(vectors, served["adaptor"].embed(x, m).numpy(), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_served_champion_rejects_an_untrained_dim(served: dict) -> None:
    x = served["data"].queries.numpy()[:2]
    status, body = post(
        f"{served['base']}/invocations", {"inputs": x.tolist(), "params": {"dim": 5}}
    )
    assert status == 400
    assert "invalid dim 5" in body["message"] and "[4, 8, 16]" in body["message"]
    status, body = post(f"{served['base']}/invocations", {"inputs": [[0.1] * 7]})
    assert status == 400 and "16" in body["message"]


def test_python_snippet_loads_the_champion(served: dict) -> None:
    model = load_champion(MODEL, tracking_uri=served["uri"])
    x = served["data"].corpus.numpy()[:10]
    np.testing.assert_allclose(
        model.predict(x, params={"dim": 8}), served["adaptor"].embed(x, 8).numpy(), atol=1e-6
    )
    default = model.predict(x)  # no dim: the recommended one
    assert default.shape[1] == model.metadata.metadata["recommended_dim"]
