"""The real `modelmill serve` over HTTP: MLflow's scoring protocol, the friendly /predict, health,
version, Prometheus metrics, 4xx naming the field, the size limit and the bearer token."""

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
import requests

from modelmill.scoring import EXPORTED_ONNX
from tasks.aliases import CHAMPION, alias_target
from tests.serving.conftest import MODEL, digits_rows, example_inputs, start_server, stop_server
from tests.support.mlflow_store import client_for


@pytest.fixture(scope="module")
def champion(served_project) -> str:
    return alias_target(client_for(served_project), MODEL, CHAMPION)


@pytest.fixture(scope="module")
def example(served_project, champion, tmp_path_factory):
    return example_inputs(client_for(served_project), champion, tmp_path_factory.mktemp("example"))


def pyfunc_logits(served_project, champion, rows) -> np.ndarray:
    import mlflow.pyfunc

    client_for(served_project)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion}")
    return np.asarray(model.predict(np.asarray(rows, dtype=np.float32)))


def test_health_version_and_the_version_header(server, champion):
    health = server.get("/health")
    assert health.status_code == 200 and health.json()["version"] == champion
    assert health.headers["X-Model-Version"] == champion
    version = server.get("/version").json()
    assert version["model"] == MODEL and version["version"] == champion and version["alias"] == "champion"
    assert version["runtime"] == EXPORTED_ONNX  # a float model: exported at load, parity checked
    missing = server.get("/no-such-path")
    assert missing.status_code == 404 and missing.headers["X-Model-Version"] == champion


@pytest.mark.parametrize("form", ["inputs", "instances", "dataframe_split", "dataframe_records"])
def test_invocations_speak_mlflows_scoring_protocol(server, served_project, champion, example, form):
    flat = [np.asarray(x).reshape(-1).tolist() for x in example]
    body = {
        "inputs": {"inputs": example},
        "instances": {"instances": example},
        "dataframe_split": {"dataframe_split": {"columns": [f"c{i}" for i in range(64)], "data": flat}},
        "dataframe_records": {"dataframe_records": [{f"c{i}": v for i, v in enumerate(r)} for r in flat]},
    }[form]
    response = server.post("/invocations", body)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == champion
    got = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(got, pyfunc_logits(served_project, champion, example), rtol=1e-5, atol=1e-5)


def test_mlflow_deployments_client_works_unchanged(server, served_project, champion, example):
    from mlflow.deployments import get_deploy_client

    answer = get_deploy_client(server.url).predict(endpoint=MODEL, inputs={"inputs": example})
    expected = pyfunc_logits(served_project, champion, example)
    np.testing.assert_allclose(np.asarray(answer["predictions"]), expected, rtol=1e-5, atol=1e-5)


def test_predict_takes_pixel_arrays_and_images(server, served_project, champion):
    from PIL import Image

    rows = digits_rows(served_project, 3)
    grid = np.asarray(rows[0], dtype=np.uint8).reshape(8, 8)
    png = io.BytesIO()
    Image.fromarray((grid.astype(int) * 255 // 16).astype(np.uint8)).save(png, format="PNG")  # digits: 0..16
    inputs = [rows[0], grid.tolist(), base64.b64encode(png.getvalue()).decode(), rows[1], rows[2]]
    response = server.post("/predict", {"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == champion and response.headers["X-Model-Version"] == champion
    labels = [p["label"] for p in body["predictions"]]
    assert labels[0] == labels[1] == labels[2]  # the same digit as a flat list, a grid and a PNG
    for p in body["predictions"]:
        assert set(p["probabilities"]) == {str(i) for i in range(10)}
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-6
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/invocations", {"inputs": [[0.0] * 64, [0.0] * 10]}, r"inputs\[1\]: expected 64 values"),
        ("/invocations", {"instances": [["a"] * 64]}, r"instances\[0\]: not an array of numbers"),
        ("/invocations", {"dataframe_split": {"columns": ["a"], "data": [[1]]}}, "dataframe_split.columns"),
        ("/invocations", {"rows": []}, "body: expected exactly one of"),
        ("/predict", {"inputs": [[300.0] * 64]}, "input 0: pixel values outside the range"),
        ("/predict", {"inputs": ["bm90IGFuIGltYWdl"]}, "input 0: not a decodable image"),
        ("/predict", {"instances": []}, "body: expected a JSON object with 'inputs'"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(server, path, body, message):
    import re

    response = server.post(path, body)
    assert response.status_code == 400, response.text
    assert re.search(message, response.json()["message"])
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_body_over_the_size_limit_and_broken_json_are_refused(server):
    big = server.post("/invocations", {"inputs": [[0.0] * 64] * 200_000})  # about 25 MB > 8 MiB
    assert big.status_code == 413 and "larger than 8388608 bytes" in big.json()["message"]
    broken = requests.post(server.url + "/invocations", data=b"{not json", timeout=10)
    assert broken.status_code == 400 and broken.json()["message"] == "body: not valid JSON"


def test_metrics_are_prometheus_text(server, champion):
    server.post("/invocations", {"inputs": [[0.0] * 64]})
    server.post("/invocations", {"inputs": [[0.0] * 3]})
    text = server.get("/metrics").text
    assert 'modelmill_requests_total{path="/invocations",status="200"}' in text
    assert 'modelmill_errors_total{path="/invocations"}' in text
    assert 'modelmill_request_seconds_bucket{le="0.005",path="/invocations"}' in text
    assert f'modelmill_model_version{{model="{MODEL}"}} {float(champion)}' in text


def test_a_token_is_required_off_loopback(served_project):
    refused = subprocess.run(
        [sys.executable, "-m", "flows.cli", "serve", "-C", str(served_project), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in __import__("os").environ.items()
                                                         if k != "MODELMILL_SERVE_TOKEN"},
    )  # fmt: skip
    assert refused.returncode == 1
    assert "binding beyond loopback requires a bearer token" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_with_a_token_every_path_but_health_needs_it(served_project):
    server = start_server(served_project, "--token", "s3cret")
    try:
        assert server.get("/health").status_code == 200
        assert server.post("/invocations", {"inputs": [[0.0] * 64]}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert server.post("/invocations", {"inputs": [[0.0] * 64]}, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert server.post("/invocations", {"inputs": [[0.0] * 64]}, headers=right).status_code == 200
        assert server.get("/metrics", headers=right).status_code == 200
    finally:
        stop_server(server)
