"""HTTP and TCP health probes, each on its own schedule on a bounded pool; never inside a scrape.

Every run opens a new connection (as blackbox_exporter does), so a listener that stopped
accepting, a full accept queue or a replaced certificate is seen by the next run; the run is
timed in blackbox_exporter's phases (resolve, connect, tls, processing, transfer).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import heapq
import http.client
import itertools
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from cryptography import x509

from dockpulse_exporter.config import Probe

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
FAILURE_REASONS = ("refused", "timeout", "dns", "tls", "status", "body")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # blackbox_exporter's (Go's net/http) limit
USER_AGENT = "dockpulse-probe"


@dataclass(slots=True)
class ProbeRun:
    """What one probe run saw; phases are summed over redirects, as blackbox_exporter does."""

    success: bool = False
    duration: float = 0.0
    status_code: int = 0
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    ssl: bool = False
    redirects: int = 0
    http_version: float = 0.0
    content_length: int = -1  # -1: no Content-Length header (blackbox_exporter's value)
    failure: str | None = None  # one of FAILURE_REASONS when the run failed
    cert_expiry: float | None = None  # the final server certificate's notAfter, Unix seconds
    tls_version: str | None = None  # "TLS 1.3", as blackbox_exporter names it


@dataclass(slots=True)
class ProbeResult:
    """The latest run of one probe plus its latency histogram."""

    probe: Probe
    container: str | None = None  # the container whose labels declared it; None: the file's
    last: ProbeRun = field(default_factory=ProbeRun)
    runs: int = 0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    @property
    def success(self) -> bool:
        return self.last.success

    @property
    def duration_seconds(self) -> float:
        return self.last.duration

    @property
    def status_code(self) -> int:
        return self.last.status_code

    def record(self, run: ProbeRun) -> None:
        self.last = run
        self.runs += 1
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, run.duration)] += 1
        self.latency_sum += run.duration

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        running, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.bucket_counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A probe and the container whose labels declared it (None: from the config file)."""

    probe: Probe
    container: str | None = None


def failure_reason(error: BaseException) -> str:
    """Map a connection error to one of the bounded FAILURE_REASONS."""
    if isinstance(error, socket.gaierror):
        return "dns"
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return "timeout"
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return "tls"
    return "refused"  # refused, reset, closed before answering: no usable connection


def tls_context(probe: Probe) -> ssl.SSLContext:
    """Verifying against the system's CAs, or the probe's `ca_file`; nothing when insecure."""
    return _tls_context(str(probe.ca_file) if probe.ca_file else None, probe.insecure_skip_verify)


@functools.lru_cache(maxsize=64)
def _tls_context(ca_file: str | None, insecure_skip_verify: bool) -> ssl.SSLContext:
    """One context per setting: loading the CA store costs ~30 ms of CPU, a handshake ~1 ms.
    (A ca_file changed on disk is read again after an exporter restart.)"""
    context = ssl.create_default_context(cafile=ca_file)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_expiry(der: bytes | None) -> float | None:
    """notAfter of a DER certificate (read without verifying it), in Unix seconds."""
    if not der:
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.at = time.perf_counter() + timeout

    def remaining(self) -> float:
        left = self.at - time.perf_counter()
        if left <= 0:
            raise TimeoutError("probe timeout")
        return left


def _start_tls(
    probe: Probe, sock: socket.socket, host: str, run: ProbeRun, deadline: _Deadline
) -> ssl.SSLSocket:
    """The TLS handshake on `sock` (verified unless the probe says otherwise); records the
    version and the server certificate's expiry in `run`."""
    sock.settimeout(deadline.remaining())
    tls_sock = tls_context(probe).wrap_socket(sock, server_hostname=host)
    run.tls_version = tls_sock.version().replace("TLSv", "TLS ")
    run.cert_expiry = certificate_expiry(tls_sock.getpeercert(binary_form=True))
    return tls_sock


def _request_once(
    probe: Probe, request: tuple[str, str, str | None], run: ProbeRun, deadline: _Deadline
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request (method, url, body) on a new connection; adds its phase times to `run`.
    Returns the response and its body (the connection is closed)."""
    method, url, body = request
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    started = time.perf_counter()
    address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    resolved = time.perf_counter()
    run.phases["resolve"] += resolved - started
    sock = socket.socket(address[0], address[1], address[2])
    try:
        sock.settimeout(deadline.remaining())
        sock.connect(address[4])
        connected = time.perf_counter()
        run.phases["connect"] += connected - resolved
        handshaken = connected
        if https:
            sock = _start_tls(probe, sock, host, run, deadline)
            handshaken = time.perf_counter()
            run.phases["tls"] += handshaken - connected
        connection = http.client.HTTPConnection(host, port)
        connection.sock = sock
        sock.settimeout(deadline.remaining())
        path = parts.path or "/"
        connection.request(
            method,
            f"{path}?{parts.query}" if parts.query else path,
            body=body.encode() if body is not None else None,
            headers={"User-Agent": USER_AGENT, **probe.headers, "Connection": "close"},
        )
        response = connection.getresponse()
        first_byte = time.perf_counter()
        run.phases["processing"] += first_byte - handshaken
        sock.settimeout(deadline.remaining())
        content = response.read()
        run.phases["transfer"] += time.perf_counter() - first_byte
        run.ssl = https
        if not https:
            run.tls_version = run.cert_expiry = None  # redirected from https to http
        return response, content
    finally:
        sock.close()


def _redirected(
    request: tuple[str, str, str | None], status: int, url: str
) -> tuple[str, str, str | None]:
    """The next request, as Go's client (blackbox_exporter) makes it: 301/302/303 turn a
    request other than GET/HEAD into a GET without body; 307/308 repeat it."""
    method, _, body = request
    if status in (301, 302, 303) and method not in ("GET", "HEAD"):
        return "GET", url, None
    return method, url, body


def _check(probe: Probe, status: int, content: bytes) -> str | None:
    """The failure reason for an answer, None when it passes (status first, then the body)."""
    if status not in probe.expected_status:
        return "status"
    if any(pattern.search(content) for pattern in probe.fail_if_body_matches_regexp):
        return "body"
    if not all(pattern.search(content) for pattern in probe.fail_if_body_not_matches_regexp):
        return "body"
    return None


def _tcp_once(probe: Probe, run: ProbeRun, deadline: _Deadline) -> None:
    """Connect (and with `tls`, handshake); success is getting that far."""
    host, port = probe.url.host or "", probe.url.port
    sock = socket.create_connection((host, port), timeout=deadline.remaining())
    try:
        if probe.tls:
            sock = _start_tls(probe, sock, host, run, deadline)
            run.ssl = True
        run.success = True
    finally:
        sock.close()


def probe_once(probe: Probe) -> ProbeRun:
    """Run `probe` once on fresh connections, following redirects like blackbox_exporter."""
    run = ProbeRun()
    deadline = _Deadline(probe.timeout)
    started = time.perf_counter()
    if probe.url.scheme == "tcp":
        try:
            _tcp_once(probe, run, deadline)
        except OSError as error:
            run.failure = failure_reason(error)
        run.duration = time.perf_counter() - started
        return run
    request = (probe.method, str(probe.url), probe.body)
    try:
        while True:
            response, content = _request_once(probe, request, run, deadline)
            location = response.getheader("Location")
            if response.status in REDIRECT_STATUSES and location and run.redirects < MAX_REDIRECTS:
                run.redirects += 1
                request = _redirected(request, response.status, urljoin(request[1], location))
                continue
            break
        run.status_code = response.status
        run.http_version = response.version / 10
        length = response.getheader("Content-Length")
        run.content_length = int(length) if length and length.isdigit() else -1
        run.failure = _check(probe, run.status_code, content)
        run.success = run.failure is None
    except (OSError, http.client.HTTPException) as error:
        run.failure = failure_reason(error)
    run.duration = time.perf_counter() - started
    return run


class ProbeRunner:
    """Runs every probe on its own interval on a bounded pool of `workers` threads (so at most
    that many sockets); `results()` is what scrapes read.

    One scheduler thread hands due runs to the pool. A new probe runs at once; its later runs
    keep a phase of their own within the interval (from its name, as Prometheus spreads its
    scrapes), so many probes do not all connect in the same instant. A run is due one interval
    after the previous one was due (at once when it ran late) and never overlaps it. A run
    lasts at most its timeout, so a hanging target holds one worker for that long; others
    wait only while every worker is held. `on_result` (re-rendering the exposition) is
    called at most every `publish_interval` seconds, after runs finished.
    """

    def __init__(
        self,
        probes: list[Probe],
        on_result: Callable[[], None] = lambda: None,
        workers: int = 16,
        publish_interval: float = 1.0,  # re-rendering 200 probes costs ~25 ms of CPU
    ) -> None:
        self.on_result = on_result
        self.publish_interval = publish_interval
        self._file = {probe.name: ProbeTarget(probe) for probe in probes}
        self._targets: dict[str, ProbeTarget] = {}
        self._results: dict[str, ProbeResult] = {}
        self._generation: dict[str, int] = {}  # bumped when a probe is added or changed
        self._due: list[tuple[float, int, str, int]] = []  # (when, tie-break, name, generation)
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._dirty = False
        self._published = 0.0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._scheduler = threading.Thread(target=self._loop, name="probe-scheduler", daemon=True)
        self.set_label_probes([])

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def set_label_probes(self, targets: list[ProbeTarget]) -> None:
        """Replace the probes from Docker labels; the file's probes win on a name clash. A new
        or changed probe runs at once; a removed one's results go."""
        wanted = {t.probe.name: t for t in targets if t.probe.name not in self._file}
        wanted.update(self._file)
        with self._cond:
            for name in self._targets.keys() - wanted.keys():
                self._results.pop(name, None)
                self._generation.pop(name, None)
            now = time.monotonic()
            for name, target in wanted.items():
                if self._targets.get(name) != target:
                    self._results[name] = ProbeResult(target.probe, container=target.container)
                    self._generation[name] = generation = next(self._counter)
                    heapq.heappush(self._due, (now, generation, name, generation))
            self._targets = wanted
            self._cond.notify_all()

    def results(self) -> list[ProbeResult]:
        with self._cond:
            return [
                dataclasses.replace(r, bucket_counts=list(r.bucket_counts))
                for r in self._results.values()
                if r.runs > 0
            ]

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    due, _, name, generation = heapq.heappop(self._due)
                    if self._generation.get(name) == generation:  # not removed nor replaced
                        self._pool.submit(self._run, self._targets[name], generation, due)
                publish = self._dirty and now - self._published >= self.publish_interval
                if not publish:
                    waits = [self._due[0][0] - now] if self._due else []
                    if self._dirty:
                        waits.append(self._published + self.publish_interval - now)
                    self._cond.wait(min(waits) if waits else None)
                    continue
                self._dirty, self._published = False, now
            self.on_result()

    def _run(self, target: ProbeTarget, generation: int, due: float) -> None:
        try:
            run = probe_once(target.probe)
        except Exception:  # a bug must not end the probe's schedule
            log.exception("probe %s: run failed", target.probe.name)
            run = ProbeRun()
        name = target.probe.name
        with self._cond:
            if self._generation.get(name) != generation:
                return
            result = self._results[name]
            result.record(run)
            interval = target.probe.interval
            if result.runs == 1:  # then at a fixed phase per name: many probes spread out
                due += interval * zlib.crc32(name.encode()) / 2**32
            next_due = max(due + interval, time.monotonic())
            heapq.heappush(self._due, (next_due, next(self._counter), name, generation))
            self._dirty = True
            self._cond.notify_all()
