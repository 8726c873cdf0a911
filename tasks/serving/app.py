"""The FastAPI app of `modelmill serve`: MLflow's scoring protocol on /invocations, each kind's raw
inputs on /predict, /health, /version, /metrics; X-Model-Version on every response."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from modelmill.errors import PredictionInputError
from tasks.serving.follower import ChampionFollower, Served

log = logging.getLogger("modelmill.serve")
VERSION_HEADER = "X-Model-Version"
OPEN_PATHS = ("/health",)  # answered without the bearer token (load balancer probes)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class TooLarge(Exception):
    pass


class Metrics:
    """Prometheus metrics of one server process (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "modelmill_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.errors = Counter(
            "modelmill_errors", "requests answered 4xx/5xx", ["path"], registry=self.registry
        )
        self.latency = Histogram(
            "modelmill_request_seconds", "request latency", ["path"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.version = Gauge(
            "modelmill_model_version", "model version served", ["model"], registry=self.registry
        )
        self.swaps = Gauge("modelmill_model_swaps", "versions swapped in since start", registry=self.registry)
        self.rejected = Gauge(
            "modelmill_rejected_versions", "versions refused (failed a check)", registry=self.registry
        )


class Guard:
    """Pure ASGI middleware: bearer token, request-size limit, X-Model-Version, metrics."""

    def __init__(self, app: Any, follower: ChampionFollower, metrics: Metrics, token: str | None, limit: int):
        self.app, self.follower, self.metrics, self.token, self.limit = app, follower, metrics, token, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, path, sent = time.perf_counter(), scope["path"], {"status": 0}
        route = path if path in ROUTES else ("/endpoints" if path.startswith("/endpoints/") else "other")

        async def send_tagged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-model-version" for k, _ in headers):
                    served = self.follower.current
                    headers.append((b"x-model-version", (served.version if served else "none").encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_tagged)
            else:
                await self.app(scope, self.bounded(receive), send_tagged)
        except TooLarge:
            if not sent["status"]:
                await error(413, "TOO_LARGE", f"body: larger than {self.limit} bytes")(
                    scope, receive, send_tagged
                )
        finally:
            self.metrics.requests.labels(route, str(sent["status"])).inc()
            if sent["status"] >= 400:
                self.metrics.errors.labels(route).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    def refusal(self, scope: dict[str, Any]) -> Response | None:
        headers = dict(scope["headers"])
        if self.token and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return error(401, "UNAUTHENTICATED", "Authorization: a valid bearer token is required")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return error(413, "TOO_LARGE", f"body: larger than {self.limit} bytes")
        return None

    def bounded(self, receive: Any) -> Any:
        total = {"n": 0}

        async def counted() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            total["n"] += len(message.get("body", b""))
            if total["n"] > self.limit:
                raise TooLarge
            return message

        return counted


ROUTES = ("/invocations", "/predict", "/health", "/version", "/metrics")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def create_app(
    follower: ChampionFollower, token: str | None = None, max_request_bytes: int = 8 * 1024**2
) -> Any:
    """The app over a started follower; wrap it in Guard (returned) so every path is covered."""
    app = FastAPI(title="modelmill serve", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, "INTERNAL_ERROR", "internal error (see the server log)")

    async def body_of_or_error(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            return error(400, "BAD_REQUEST", "body: not valid JSON")

    def served_or_503() -> Served | JSONResponse:
        served = follower.current
        return (
            served
            if served is not None
            else error(503, "NO_MODEL", f"no verified version of {follower.name} yet")
        )

    async def invocations(request: Request) -> Response:
        body = await body_of_or_error(request)
        served = served_or_503()  # taken after the last await: one model from here to the answer
        if isinstance(served, JSONResponse) or isinstance(body, JSONResponse):
            return served if isinstance(served, JSONResponse) else body
        try:
            x = served.scorer.model_input(body)
        except PredictionInputError as exc:
            return answer(served, {"error_code": "BAD_REQUEST", "message": str(exc)}, 400)
        return answer(served, {"predictions": served.scorer.logits(x).tolist()})

    app.post("/invocations")(invocations)

    @app.post("/endpoints/{endpoint}/invocations")
    async def endpoint_invocations(endpoint: str, request: Request) -> Response:
        """What mlflow.deployments.get_deploy_client(URL).predict(endpoint=..., inputs=...) posts."""
        if endpoint not in (follower.name, follower.alias):
            return error(404, "NOT_FOUND", f"endpoint: {endpoint!r} is not {follower.name!r}")
        return await invocations(request)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = await body_of_or_error(request)
        served = served_or_503()
        if isinstance(served, JSONResponse) or isinstance(body, JSONResponse):
            return served if isinstance(served, JSONResponse) else body
        try:
            if not isinstance(body, dict) or "inputs" not in body:
                raise PredictionInputError("body: expected a JSON object with 'inputs' (a list)")
            x = served.scorer.raw_input(body["inputs"])
        except PredictionInputError as exc:
            return answer(served, {"error_code": "BAD_REQUEST", "message": str(exc)}, 400)
        answers = served.scorer.answers(served.scorer.logits(x))
        return answer(served, {"model": served.name, "version": served.version, "predictions": answers})

    @app.get("/health")
    async def health() -> Response:
        served = served_or_503()
        if isinstance(served, JSONResponse):
            return served
        return answer(served, {"status": "ok", "model": served.name, "version": served.version})

    @app.get("/version")
    async def version() -> Response:
        served = follower.current
        body = {
            "model": follower.name, "alias": follower.alias, "version": served.version if served else None,
            "since": served.since if served else None, "swaps": follower.swaps, "rejected": follower.rejected,
        }  # fmt: skip
        return JSONResponse(body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        served = follower.current
        if served is not None:
            metrics.version.labels(follower.name).set(float(served.version))
        metrics.swaps.set(follower.swaps)
        metrics.rejected.set(len(follower.rejected))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Guard(app, follower, metrics, token, max_request_bytes)


def answer(served: Served, body: dict[str, Any], status: int = 200) -> Response:
    """JSON from the model that answered, its version in X-Model-Version."""
    content = json.dumps(body, default=_plain, separators=(",", ":")).encode()
    return Response(content, status, {VERSION_HEADER: served.version}, media_type="application/json")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
