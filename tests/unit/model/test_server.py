"""Model server: the SageMaker container HTTP contract, in-process (TestClient) and as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest

from model import server
from tests.unit.conftest import feature_rows

ROOT = Path(__file__).resolve().parents[3]

# starlette 1.10 asks for `httpx2` behind TestClient; the locked test group has httpx 0.28
HTTPX_DEPRECATION = "Using `httpx` with `starlette.testclient` is deprecated"
pytestmark = pytest.mark.filterwarnings(f"ignore:{HTTPX_DEPRECATION}")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=HTTPX_DEPRECATION)
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def app(trained):
    return server.create_app(trained.extracted["v1"], variant="ModelA")


@pytest.fixture
def client(app):
    return TestClient(app)


def _csv(dataset, count: int) -> str:
    return "\n".join(",".join(repr(value) for value in row) for row in dataset.test.features[:count].tolist())


def test_ping_is_200_once_the_model_is_loaded(client):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": "v1"}


def test_invocations_with_a_json_batch(client, dataset):
    rows = feature_rows(dataset, dataset.test, 4)
    response = client.post("/invocations", json={"instances": rows}, headers={"accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers[server.VARIANT_HEADER] == "ModelA"
    document = response.json()
    assert document["model_version"] == "v1"
    assert [item["label"] for item in document["predictions"]] == dataset.test.labels[:4].tolist()


def test_invocations_with_csv_gives_the_same_predictions_as_json(client, dataset):
    as_csv = client.post("/invocations", content=_csv(dataset, 3), headers={"content-type": "text/csv"})
    as_json = client.post("/invocations", json={"instances": feature_rows(dataset, dataset.test, 3)})
    assert as_csv.status_code == as_json.status_code == 200
    assert as_csv.json() == as_json.json()


def test_a_row_the_schema_rejects_is_400_naming_row_and_feature(client, dataset):
    rows = feature_rows(dataset, dataset.test, 2)
    rows[1]["mean_area"] = -3
    response = client.post("/invocations", json={"instances": rows})
    assert response.status_code == 400
    assert response.headers[server.VARIANT_HEADER] == "ModelA"
    body = response.json()
    assert body["error"].startswith("1 of 2 row(s) are invalid: row 1: feature 'mean_area' = -3 is outside")
    assert body["details"] == [body["error"].split(": ", 1)[1]]


def test_malformed_json_is_400(client):
    response = client.post("/invocations", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("the body is not valid JSON")


@pytest.mark.parametrize("depth", [50_000, 900])
def test_a_deeply_nested_body_is_400_naming_the_depth(client, depth):
    body = b'{"features": ' + b"[" * depth + b"]" * depth + b"}"
    response = client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "nested more than 32 levels deep" in response.json()["error"]


def test_unsupported_content_type_is_415(client):
    response = client.post("/invocations", content=b"1,2", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert (
        response.json()["error"] == 'unsupported Content-Type "text/plain"; send application/json or text/csv'
    )


def test_unsupported_accept_is_406(client, dataset):
    response = client.post(
        "/invocations", content=_csv(dataset, 1), headers={"content-type": "text/csv", "accept": "text/csv"}
    )
    assert response.status_code == 406
    assert "this model returns application/json" in response.json()["error"]


def test_bodies_over_the_limit_are_413(trained, dataset):
    assert server.DEFAULT_MAX_BODY_BYTES == 6 * 1024 * 1024
    small = TestClient(server.create_app(trained.extracted["v2"], max_body_bytes=2000))
    body = _csv(dataset, 10).encode()
    assert len(body) > 2000
    declared = small.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert declared.status_code == 413
    assert declared.json()["error"] == (
        "the request body exceeds 2000 bytes; split the rows into smaller requests"
    )
    assert server.VARIANT_HEADER not in declared.headers

    def chunks():  # no Content-Length: the limit applies while streaming
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    streamed = small.post("/invocations", content=chunks(), headers={"content-type": "text/csv"})
    assert streamed.status_code == 413
    within = small.post("/invocations", content=_csv(dataset, 2), headers={"content-type": "text/csv"})
    assert within.status_code == 200


def test_unexpected_errors_are_500_with_a_generic_message_and_logged(
    app, client, dataset, monkeypatch, caplog
):
    def broken(rows, model):
        raise RuntimeError("secret detail from /srv/internal/path")

    monkeypatch.setattr(app.state.entry, "predict_fn", broken)
    with caplog.at_level("ERROR", logger="model.server"):
        response = client.post("/invocations", json={"instances": feature_rows(dataset, dataset.test, 1)})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error while serving the prediction", "details": []}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "secret detail" in caplog.text


def test_no_variant_header_without_a_variant(trained, dataset):
    plain = TestClient(server.create_app(trained.extracted["v2"]))
    response = plain.post("/invocations", json={"features": feature_rows(dataset, dataset.test, 1)[0]})
    assert response.status_code == 200
    assert response.json()["model_version"] == "v2"
    assert server.VARIANT_HEADER not in response.headers


def test_wrong_methods_and_paths(client):
    assert client.get("/invocations").status_code == 405
    assert client.post("/ping").status_code == 405
    assert client.get("/").status_code == 404


def test_a_directory_without_an_entry_point_is_refused(tmp_path):
    with pytest.raises(server.ServerSetupError, match=r"has no code/inference\.py"):
        server.create_app(tmp_path)


def test_cli_reports_an_unusable_artifact(tmp_path, capsys):
    broken = tmp_path / "model.tar.gz"
    broken.write_bytes(b"not a tarball")
    assert server.main(["--artifact", str(broken), "--port", "1"]) == 2
    assert "error: cannot serve the model: cannot extract" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_real_server_from_an_artifact_serves_and_shuts_down_gracefully(trained, dataset, tmp_path):
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model.server",
            "--artifact",
            str(trained.artifacts["v2"].archive),
            "--port",
            str(port),
            "--variant",
            "ModelB",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where the artifact is extracted
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.1)
        assert [path.name.startswith("mlpipeline-model-") for path in tmp_path.iterdir()] == [True]
        response = httpx.post(
            f"{base}/invocations",
            content=json.dumps({"instances": feature_rows(dataset, dataset.test, 2)}),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers[server.VARIANT_HEADER] == "ModelB"
        assert response.json()["model_version"] == "v2"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # the extracted artifact is gone
