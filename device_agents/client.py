"""HTTP clients of the coordinator: ``CoordinatorClient`` (an agent, device token) and
``AdminClient`` (the operator CLI, admin token). httpx + the wire schemas; nothing heavy.

Errors: ``CoordinatorUnavailable`` (connection refused, timeout, 429, and 502/503/504 - what a
proxy says while the coordinator restarts: retry later with ``Backoff``, without a bound),
``ServerError`` (another 5xx, usually 500: the coordinator failed on this very request; retried
with the same backoff, but at most ``Backoff.server_error_tries`` times or for
``Backoff.server_error_s``, then ``retrying`` raises ``GaveUp``) and ``Rejected`` (a 4xx, or
``GaveUp``: sending the same request again will not help; ``status`` and ``detail`` say why).
An agent therefore never resends one request forever: a spooled result refused with a 4xx, or
failed on with 5xx until the bound, is set aside (``Spool.reject``). A download whose sha256 is
wrong raises ``ArtifactCorrupt`` and leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from device_agents.protocol import (
    API_PREFIX,
    SHA256_HEADER,
    ArtifactPublic,
    ArtifactRef,
    DeviceCreate,
    DevicePublic,
    DeviceRegistered,
    DevicesPublic,
    Heartbeat,
    HeartbeatAck,
    JobCreate,
    JobFailure,
    JobPublic,
    JobsPublic,
    LeaseResponse,
    MeasurementsPublic,
    PropertiesUpdate,
    ResultAck,
    ResultSubmission,
)
from device_agents.schemas import DeviceProperties

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class CoordinatorError(Exception):
    """Root of the client's errors."""


class CoordinatorUnavailable(CoordinatorError):
    """The coordinator cannot be reached (or a proxy says so: 502/503/504, 429): try later."""


# What a reverse proxy or an overloaded server answers while the coordinator itself is not
# there: waiting helps. Any other 5xx is the coordinator failing on the request (ServerError).
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})


class ServerError(CoordinatorUnavailable):
    """The coordinator answered 5xx (not 502/503/504): it failed on this request. Retried a
    bounded number of times (``Backoff.server_error_tries`` / ``server_error_s``)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class Rejected(CoordinatorError):
    """The coordinator refused the request (4xx): retrying the same request will not help."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class GaveUp(Rejected):
    """``retrying`` stopped resending a request the coordinator kept failing on (5xx): as with
    a refusal, sending it again will not help (a spooled result is set aside, not resent)."""


class ArtifactCorrupt(CoordinatorError):
    """The downloaded bytes do not match the artifact's sha256."""


class Stopped(Exception):
    """Raised by ``retrying`` when the stop event is set while waiting to retry."""


class Backoff:
    """Capped exponential backoff with jitter: delay n is uniform in [c/2, c], c = min(cap, b*2^n).

    The jitter spreads agents that lost the coordinator at the same moment; the floor of c/2
    keeps a retry loop from spinning. ``server_error_tries`` and ``server_error_s`` bound how
    often and how long ``retrying`` resends a request the coordinator answers with a 5xx
    (``ServerError``); an unreachable coordinator is waited for without a bound.
    Defaults match ``agent.server_error_tries`` / ``agent.server_error_s`` in lab_config.yaml."""

    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 60.0,
        *,
        server_error_tries: int = 8,
        server_error_s: float = 600.0,
        rng: random.Random | None = None,
    ):
        if server_error_tries < 1 or server_error_s <= 0:
            raise ValueError("server_error_tries must be >= 1 and server_error_s > 0")
        self.base_s = base_s
        self.cap_s = cap_s
        self.server_error_tries = server_error_tries
        self.server_error_s = server_error_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 62)
        return self._rng.uniform(ceiling / 2, ceiling)  # never a busy loop of zero delays

    def reset(self) -> None:
        self.attempt = 0


def retrying(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    stop: threading.Event,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T:
    """Call until it does not raise CoordinatorUnavailable; raise Stopped if ``stop`` is set.

    A ``ServerError`` (5xx) counts against the backoff's bound: on the ``server_error_tries``-th
    one, or ``server_error_s`` after the first, ``GaveUp`` (a ``Rejected``) is raised instead.
    ``Rejected`` (4xx) is never retried."""
    backoff.reset()
    server_errors = 0
    first_error_at = 0.0
    while True:
        if stop.is_set():
            raise Stopped()
        try:
            return call()
        except ServerError as exc:
            server_errors += 1
            now = time.monotonic()
            first_error_at = first_error_at or now
            if (server_errors >= backoff.server_error_tries
                    or now - first_error_at >= backoff.server_error_s):
                raise GaveUp(exc.status, f"gave up after {server_errors} answers "
                                         f"of HTTP 5xx in {now - first_error_at:.0f} s; "
                                         f"the last: {exc.detail}") from exc
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(exc, delay)
            if stop.wait(delay):
                raise Stopped() from exc
        except CoordinatorUnavailable as exc:
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(exc, delay)
            if stop.wait(delay):
                raise Stopped() from exc


class _Http:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code in UNAVAILABLE_STATUSES:
            raise CoordinatorUnavailable(f"HTTP {response.status_code}: {response.text[:500]}")
        if response.status_code >= 500:
            raise ServerError(response.status_code, response.text[:500])
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise Rejected(response.status_code, detail)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            raise CoordinatorUnavailable(f"{method} {path}: {exc!r}") from exc
        return self._check(response)

    def call(self, method: str, path: str, model: type[M], body: BaseModel | None = None) -> M:
        content = body.model_dump_json() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        response = self.request(method, path, content=content, headers=headers)
        return model.model_validate_json(response.content)


class CoordinatorClient(_Http):
    """What an agent says to the coordinator, with its device token."""

    def me(self) -> DevicePublic:
        return self.call("GET", f"{API_PREFIX}/agent/me", DevicePublic)

    def put_properties(self, properties: DeviceProperties) -> DevicePublic:
        body = PropertiesUpdate(properties=properties)
        return self.call("PUT", f"{API_PREFIX}/agent/properties", DevicePublic, body)

    def heartbeat(self, beat: Heartbeat) -> HeartbeatAck:
        return self.call("POST", f"{API_PREFIX}/agent/heartbeat", HeartbeatAck, beat)

    def lease(self) -> LeaseResponse:
        response = self.request("POST", f"{API_PREFIX}/agent/lease")
        return LeaseResponse.model_validate_json(response.content)

    def submit_result(self, job_id: int, submission: ResultSubmission) -> ResultAck:
        path = f"{API_PREFIX}/agent/jobs/{job_id}/result"
        return self.call("POST", path, ResultAck, submission)

    def report_failure(self, job_id: int, failure: JobFailure) -> JobPublic:
        return self.call("POST", f"{API_PREFIX}/agent/jobs/{job_id}/failure", JobPublic, failure)

    def download_artifact(self, artifact: ArtifactRef, dest: Path) -> Path:
        """Stream the artifact to ``dest`` (atomically), verifying its sha256 on the way."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", artifact.url) as response:
                if response.status_code >= 400:
                    response.read()
                self._check(response)
                header = response.headers.get(SHA256_HEADER, "").lower()
                if header and header != artifact.sha256:
                    raise ArtifactCorrupt(
                        f"artifact {artifact.id}: header sha256 {header} != job's {artifact.sha256}"
                    )
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_bytes(1024 * 1024):
                        digest.update(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            raise CoordinatorUnavailable(f"download of artifact {artifact.id}: {exc!r}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != artifact.sha256:
            tmp.unlink(missing_ok=True)
            raise ArtifactCorrupt(
                f"artifact {artifact.id}: downloaded sha256 {digest.hexdigest()} "
                f"!= expected {artifact.sha256}"
            )
        os.replace(tmp, dest)
        return dest


class AdminClient(_Http):
    """What the operator CLI says to the coordinator, with the admin token."""

    def register_device(self, body: DeviceCreate) -> DeviceRegistered:
        return self.call("POST", f"{API_PREFIX}/devices", DeviceRegistered, body)

    def list_devices(self, *, include_retired: bool = False) -> DevicesPublic:
        response = self.request(
            "GET", f"{API_PREFIX}/devices", params={"include_retired": include_retired}
        )
        return DevicesPublic.model_validate_json(response.content)

    def retire_device(self, name: str) -> DevicePublic:
        return self.call("POST", f"{API_PREFIX}/devices/{name}/retire", DevicePublic)

    def upload_artifact(
        self, path: Path, *, quant: str, fmt: str = "gguf", candidate_id: int | None = None
    ) -> ArtifactPublic:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        params: dict[str, Any] = {"quant": quant, "format": fmt}
        if candidate_id is not None:
            params["candidate_id"] = candidate_id
        with open(path, "rb") as fh:
            response = self.request(
                "POST",
                f"{API_PREFIX}/artifacts",
                params=params,
                content=fh,
                headers={SHA256_HEADER: sha, "Content-Type": "application/octet-stream"},
            )
        return ArtifactPublic.model_validate_json(response.content)

    def create_job(self, body: JobCreate) -> JobPublic:
        return self.call("POST", f"{API_PREFIX}/jobs", JobPublic, body)

    def get_job(self, job_id: int) -> JobPublic:
        return self.call("GET", f"{API_PREFIX}/jobs/{job_id}", JobPublic)

    def list_jobs(self, *, state: str | None = None) -> JobsPublic:
        params = {"state": state} if state else None
        response = self.request("GET", f"{API_PREFIX}/jobs", params=params)
        return JobsPublic.model_validate_json(response.content)

    def measurements(self, *, job_id: int | None = None) -> MeasurementsPublic:
        params = {"job_id": job_id} if job_id is not None else None
        response = self.request("GET", f"{API_PREFIX}/measurements", params=params)
        return MeasurementsPublic.model_validate_json(response.content)


def wait_until_up(base_url: str, *, timeout_s: float = 30.0) -> None:
    """Block until GET /healthz answers 200 (used by tests, the bench and docker healthchecks)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url.rstrip('/')}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise CoordinatorUnavailable(f"{base_url} did not come up in {timeout_s} s ({last!r})")
