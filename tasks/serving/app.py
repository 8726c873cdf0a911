"""The FastAPI app of `modelmill serve`: MLflow's scoring protocol on /invocations, each kind's raw
inputs on /predict, /health, /version, /metrics; X-Model-Version on every response."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
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
from modelmill.input_log import InputLog
from tasks.serving.follower import ChampionFollower, Served

log = logging.getLogger("modelmill.serve")
Handler = Callable[[bytes], tuple[int, bytes, str]]  # raw body -> (status, JSON bytes, version)
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
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        """One request counted and timed (the labelled children cached: no label lookup per request)."""
        children = self._children.get((route, status))
        if children is None:
            errors = self.errors.labels(route) if status >= 400 else None
            children = (self.requests.labels(route, str(status)), errors, self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)


class Guard:
    """Pure ASGI middleware: bearer token, request-size limit, X-Model-Version, metrics; the two
    scoring endpoints answered here directly (the hot path: no routing, no Request object)."""

    def __init__(self, app: Any, service: Scoring, metrics: Metrics, token: str | None, limit: int):
        self.app, self.service, self.metrics, self.token, self.limit = app, service, metrics, token, limit
        self.follower = service.follower
        self.hot: dict[str, Handler] = {
            "/invocations": service.invocations,
            "/predict": service.predict,
        }

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
            elif path in self.hot and scope["method"] == "POST":
                sent["status"] = await self.answer_hot(self.hot[path], receive, send)
            else:
                await self.app(scope, self.bounded(receive), send_tagged)
        except TooLarge:
            if not sent["status"]:
                await error(413, "TOO_LARGE", f"body: larger than {self.limit} bytes")(
                    scope, receive, send_tagged
                )
        finally:
            self.metrics.record(route, sent["status"], time.perf_counter() - start)

    async def answer_hot(self, handler: Handler, receive: Any, send: Any) -> int:
        """Read the whole body (bounded), score it, send the JSON answer; returns the status."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            status, body, version = handler(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception:  # noqa: BLE001 - logged here; the client gets no traceback
            log.exception("POST %s failed", handler.__name__)
            status, body, version = 500, INTERNAL, self.service.version_now()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-model-version", version.encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

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


class Scoring:
    """/invocations and /predict as functions of the raw body: (status, JSON bytes, version)."""

    def __init__(self, follower: ChampionFollower, inputs: InputLog | None = None):
        self.follower, self.inputs = follower, inputs  # inputs: where /predict's raw inputs are kept

    def version_now(self) -> str:
        served = self.follower.current
        return served.version if served else "none"

    def invocations(self, raw: bytes) -> tuple[int, bytes, str]:
        body = parsed(raw)
        served = self.follower.current  # taken once the body is read: one model from here to the answer
        if served is None:
            return self.no_model()
        if body is BROKEN:
            return 400, BROKEN_JSON, served.version
        try:
            x = served.scorer.model_input(body)
        except PredictionInputError as exc:
            return 400, bad_request(str(exc)), served.version
        return 200, encode({"predictions": np.ascontiguousarray(served.scorer.logits(x))}), served.version

    def predict(self, raw: bytes) -> tuple[int, bytes, str]:
        body = parsed(raw)
        served = self.follower.current
        if served is None:
            return self.no_model()
        if body is BROKEN:
            return 400, BROKEN_JSON, served.version
        try:
            if not isinstance(body, dict) or "inputs" not in body:
                raise PredictionInputError("body: expected a JSON object with 'inputs' (a list)")
            frame = served.scorer.raw_frame(body["inputs"])
            x = served.scorer.model_rows(frame)
        except PredictionInputError as exc:
            return 400, bad_request(str(exc)), served.version
        if self.inputs is not None:
            self.inputs.offer(frame, served.version)
        answers = served.scorer.answers(served.scorer.logits(x))
        return (
            200,
            encode({"model": served.name, "version": served.version, "predictions": answers}),
            served.version,
        )

    def no_model(self) -> tuple[int, bytes, str]:
        message = f"no verified version of {self.follower.name} yet"
        return 503, encode({"error_code": "NO_MODEL", "message": message}), "none"


BROKEN = object()  # a body that is not JSON
INTERNAL = b'{"error_code":"INTERNAL_ERROR","message":"internal error (see the server log)"}'
BROKEN_JSON = b'{"error_code":"BAD_REQUEST","message":"body: not valid JSON"}'


def parsed(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return BROKEN


def bad_request(message: str) -> bytes:
    return encode({"error_code": "BAD_REQUEST", "message": message})


def encode(body: dict[str, Any]) -> bytes:
    """orjson, numpy arrays and scalars written directly (no .tolist())."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


ROUTES = ("/invocations", "/predict", "/health", "/version", "/metrics")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def create_app(
    follower: ChampionFollower,
    token: str | None = None,
    max_request_bytes: int = 8 * 1024**2,
    inputs: InputLog | None = None,
) -> Any:
    """The app over a started follower; wrap it in Guard (returned) so every path is covered.
    `inputs`: a started InputLog that keeps /predict's raw inputs (closed at shutdown)."""
    lifespan = None if inputs is None else closing(inputs)
    app = FastAPI(title="modelmill serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    metrics, service = Metrics(), Scoring(follower, inputs)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, "INTERNAL_ERROR", "internal error (see the server log)")

    def hot(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:  # POST is answered by Guard; this is the rest
            status, body, version = handler(await request.body())
            return Response(body, status, {VERSION_HEADER: version}, media_type="application/json")

        return route

    app.post("/invocations")(hot(service.invocations))
    app.post("/predict")(hot(service.predict))

    @app.post("/endpoints/{endpoint}/invocations")
    async def endpoint_invocations(endpoint: str, request: Request) -> Response:
        """What mlflow.deployments.get_deploy_client(URL).predict(endpoint=..., inputs=...) posts."""
        if endpoint not in (follower.name, follower.alias):
            return error(404, "NOT_FOUND", f"endpoint: {endpoint!r} is not {follower.name!r}")
        return await hot(service.invocations)(request)

    @app.get("/health")
    async def health() -> Response:
        served = follower.current
        if served is None:
            return error(503, "NO_MODEL", f"no verified version of {follower.name} yet")
        return answer(served, {"status": "ok", "model": served.name, "version": served.version})

    @app.get("/version")
    async def version() -> Response:
        served = follower.current
        body = {
            "model": follower.name, "alias": follower.alias, "version": served.version if served else None,
            "since": served.since if served else None, "runtime": served.scorer.runtime if served else None,
            "swaps": follower.swaps, "rejected": follower.rejected,
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

    return Guard(app, service, metrics, token, max_request_bytes)


def closing(inputs: InputLog) -> Any:
    """A lifespan that writes the pending inputs when the server shuts down."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        inputs.close()

    return lifespan


def answer(served: Served, body: dict[str, Any], status: int = 200) -> Response:
    """JSON from the model that answered, its version in X-Model-Version."""
    return Response(encode(body), status, {VERSION_HEADER: served.version}, media_type="application/json")
