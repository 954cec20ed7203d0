"""Fixtures: the emulator binary on a free port, a webhook receiver, the official SDK client,
a tap on the SDK's raw HTTP answers, and the known-differences verdict."""
import contextlib
import gzip
import hashlib
import hmac
import json
import os
import queue
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import requests

import nylas.handler.http_client as sdk_http
from nylas import Client

from checks import ROOT, Conformance, known_differences, load_spec

API_KEY = "conformance-api-key"

# Every scope a test may declare; a README tag outside them is a typo and fails the suite.
SCOPES = {
    "grants.list", "grants.find", "messages.list", "messages.find", "messages.pagination",
    "calendars.list", "calendars.find", "events.list", "events.find", "events.default-window",
    "events.recurring", "events.import", "events.pagination", "webhooks.create", "webhooks.list",
    "webhooks.find", "webhooks.update", "webhooks.rotate_secret", "webhooks.destroy",
    "webhooks.send_test_event", "error.404", "error.400", "error.401", "error.429", "gzip",
    "notification.envelope", "notification.signature", "notification.message.created",
    "notification.message.updated", "notification.message.deleted", "notification.event.created",
    "notification.event.updated", "notification.event.deleted", "notification.calendar.created",
    "notification.calendar.updated", "notification.calendar.deleted", "notification.grant.created",
    "notification.grant.updated", "notification.grant.deleted", "notification.grant.expired",
    "notification.message.opened", "notification.message.link_clicked",
    "notification.message.bounce_detected", "notification.thread.replied",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- webhook receiver

class Receiver:
    """Answers challenges and records every POST: (path, headers, raw body)."""

    def __init__(self):
        self.port = free_port()
        self.posts = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                body = q.get("challenge", [""])[0].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with receiver.cond:
                    receiver.posts.append({"path": urlparse(self.path).path,
                                           "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "raw": raw, "at": time.time()})
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def notifications(self, path=None):
        """Decoded notifications: dicts with the envelope, the raw bytes and the headers."""
        out = []
        with self.lock:
            posts = list(self.posts)
        for p in posts:
            if path and p["path"] != path:
                continue
            raw = p["raw"]
            body = gzip.decompress(raw) if p["headers"].get("content-encoding") == "gzip" else raw
            try:
                env = json.loads(body)
            except ValueError:
                env = None
            out.append({"envelope": env, "raw": raw, "headers": p["headers"], "path": p["path"]})
        return out

    def wait_for(self, pred, timeout=15.0, path=None):
        """The first notification (at `path`) for which pred(envelope) is true, or None."""
        deadline = time.time() + timeout
        while True:
            for n in self.notifications(path):
                if n["envelope"] is not None and pred(n["envelope"]):
                    return n
            left = deadline - time.time()
            if left <= 0:
                return None
            with self.cond:
                self.cond.wait(min(left, 0.2))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def signature_ok(raw, headers, secret):
    sig = (headers.get("x-nylas-signature") or "").strip().lower()
    if sig.startswith("sha256="):
        sig = sig[7:]
    want = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, want)


# ---------------------------------------------------------------- the emulator

class Emulator:
    def __init__(self, receiver, tmpdir):
        binary = os.environ.get("NYLAS_EMULATOR_BIN", os.path.join(ROOT, "target", "debug", "nylas-emulator"))
        if not os.path.isabs(binary):
            binary = os.path.join(ROOT, binary)
        if not os.path.exists(binary):
            pytest.exit(f"no emulator binary at {binary}: cargo build -p nylas-emulator "
                        f"(or set NYLAS_EMULATOR_BIN)", returncode=2)
        self.port = free_port()
        self.log_path = os.path.join(tmpdir, "nylas-emulator.log")
        self.log = open(self.log_path, "wb")
        args = [binary, "--listen", f"127.0.0.1:{self.port}", "--api-key", API_KEY, "--grants", "2",
                "--seed", "12", "--time-scale", "1", "--delivery-timeout-secs", "5",
                "--webhook-url", receiver.url("/hook/main")]
        # grant.expired lags an expiry by up to 10 minutes (as at Nylas); keep the suite short.
        helptext = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
        if "--grant-expired-lag-max-secs" in helptext:
            args += ["--grant-expired-lag-max-secs", "3"]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE, stderr=self.log, env=dict(os.environ, RUST_LOG="warn"))
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = b""
        if not line:
            self.stop()
            pytest.exit(f"the emulator printed no ready line; log: {self.log_path}", returncode=2)
        self.ready = json.loads(line)
        self.base_url = self.ready["base_url"]
        self.grant_ids = self.ready["grant_ids"]
        self.destinations = self.ready["destinations"]

    def control(self, method, path, body=None):
        r = requests.request(method, self.base_url + path, json=body, timeout=30)
        r.raise_for_status()
        return r.json() if r.content else None

    def raw(self, method, path, **kw):
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {API_KEY}")
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def emulator(receiver, tmp_path_factory):
    emu = Emulator(receiver, str(tmp_path_factory.mktemp("emulator")))
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def client(emulator):
    return Client(API_KEY, api_uri=emulator.base_url, timeout=30)


@pytest.fixture(scope="session")
def spec():
    return load_spec()


@pytest.fixture(scope="session")
def known():
    return known_differences()


# ---------------------------------------------------------------- raw answers behind the SDK

class Tap:
    """Keeps the raw `requests.Response` of every call the SDK makes."""

    def __init__(self):
        self.responses = []

    def last(self):
        return self.responses[-1]

    def last_json(self):
        return self.last().json()


_TAP = Tap()
_real_request = sdk_http.requests.request


def _tapped_request(*args, **kwargs):
    resp = _real_request(*args, **kwargs)
    _TAP.responses.append(resp)
    return resp


class _RequestsProxy:
    """The SDK's module-level `requests`, with `request` recorded."""

    def __getattr__(self, name):
        if name == "request":
            return _tapped_request
        return getattr(requests, name)


sdk_http.requests = _RequestsProxy()


@pytest.fixture
def tap():
    _TAP.responses.clear()
    return _TAP


# ---------------------------------------------------------------- verdicts

class _Scope(contextlib.AbstractContextManager):
    def __init__(self, scope, known):
        assert scope in SCOPES, f"undeclared scope {scope}"
        self.cf = Conformance(scope, known)

    def __enter__(self):
        return self.cf

    def __exit__(self, exc_type, exc, tb):
        cf = self.cf
        if exc is not None:
            if isinstance(exc, (pytest.fail.Exception, pytest.xfail.Exception, pytest.skip.Exception)):
                return False
            cf.aborted = True
            cf.check(cf.current, False, f"{type(exc).__name__}: {exc}"[:400])
        status, text = cf.verdict()
        if status == "fail":
            pytest.fail(text, pytrace=False)
        if status == "xfail":
            pytest.xfail("known difference: " + text)
        return True


@pytest.fixture
def conformance(known):
    return lambda scope: _Scope(scope, known)
