"""Webhook destinations through the SDK, send-test-event, and secret rotation."""
import pytest
from nylas.models.errors import NylasApiError

from conftest import signature_ok

TRIGGERS = ["message.created", "message.updated", "message.deleted", "event.created", "event.updated",
            "event.deleted", "calendar.created", "calendar.updated", "calendar.deleted", "grant.created",
            "grant.updated", "grant.deleted", "grant.expired"]
STATUSES = {"active", "pause", "failing", "failed"}


def schema(spec, name):
    return spec["responses"][name]["schema"]


def create(client, receiver, path, triggers=None):
    return client.webhooks.create(request_body={
        "trigger_types": triggers or ["message.created"], "webhook_url": receiver.url(path),
        "description": "conformance " + path, "notification_email_addresses": ["ops@example.com"]})


@pytest.fixture(scope="module")
def created(client, receiver):
    """A destination made through the SDK, and the raw create answer."""
    return create(client, receiver, "/hook/created", TRIGGERS).data,


def test_webhooks_create(client, tap, spec, receiver, conformance):
    with conformance("webhooks.create") as cf:
        wh = create(client, receiver, "/hook/created2", TRIGGERS).data
        body = tap.last_json()
        cf.schema(body, schema(spec, "webhooks.create"))
        cf.check("secret", bool(body["data"].get("webhook_secret")), "no webhook_secret in the create answer")
        cf.check("active", wh.status == "active", f"status {wh.status}")


def test_webhooks_list(client, tap, spec, created, conformance):
    wh = created[0]
    with conformance("webhooks.list") as cf:
        try:
            client.webhooks.list()
            cf.check("sdk-parses", True)
        except ValueError as e:  # the SDK refuses a value outside its enums
            cf.check("sdk-parses", False, f"the SDK cannot parse the listing: {e}")
        body = tap.last_json()
        cf.schema(body, schema(spec, "webhooks.list"))
        cf.check("listed", any(w.get("id") == wh.id for w in body["data"]), "the new destination is not listed")
        cf.check("no-secret", all("webhook_secret" not in w for w in body["data"]),
                 "GET /v3/webhooks shows a secret")
        cf.check("status", all(w.get("status") in STATUSES for w in body["data"]), "a status outside the enum")


def test_webhooks_find(client, tap, spec, created, conformance):
    wh = created[0]
    with conformance("webhooks.find") as cf:
        found = client.webhooks.find(wh.id).data
        cf.schema(tap.last_json(), schema(spec, "webhooks.find"))
        cf.check("id", found.id == wh.id and found.status in STATUSES, "wrong destination or status")


def test_webhooks_update(client, tap, spec, receiver, conformance):
    with conformance("webhooks.update") as cf:
        wh = create(client, receiver, "/hook/update").data
        cf.step("pause")
        paused = client.webhooks.update(wh.id, request_body={"status": "pause"}).data
        cf.schema(tap.last_json(), schema(spec, "webhooks.update"))
        cf.check("pause", paused.status == "pause", f"status after pause: {paused.status}")
        cf.check("find-pause", client.webhooks.find(wh.id).data.status == "pause", "find does not show pause")
        cf.step("reactivate")
        active = client.webhooks.update(wh.id, request_body={"status": "active"}).data
        cf.check("reactivate", active.status == "active", f"status after reactivation: {active.status}")
        cf.step("description")
        desc = client.webhooks.update(wh.id, request_body={"description": "renamed"}).data
        cf.check("description", desc.description == "renamed", "description not updated")


def test_webhooks_rotate_secret(client, tap, spec, receiver, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("webhooks.rotate_secret") as cf:
        wh = create(client, receiver, "/hook/rotate").data
        old = wh.webhook_secret
        # SDK 6.18.0 calls PUT /v3/webhooks/{id}/rotate-secret; the spec has
        # POST /v3/webhooks/rotate-secret/{id}. Both are tried: the SDK's, then the spec's.
        try:
            client.webhooks.rotate_secret(wh.id)
            cf.check("sdk-route", True)
        except NylasApiError as e:
            cf.check("sdk-route", False, f"PUT /v3/webhooks/{{id}}/rotate-secret (the SDK's route): "
                                         f"{e.status_code} {e}")
        answer, _ = client.http_client._execute("POST", f"/v3/webhooks/rotate-secret/{wh.id}")
        cf.schema(answer, schema(spec, "webhooks.rotate_secret"))
        new = answer["data"].get("webhook_secret")
        cf.check("new-secret", bool(new) and new != old, "the secret did not change")
        m = emulator.control("POST", f"/_emulator/grants/{g}/messages", {"subject": "after rotation"})
        mid = m.get("id") if isinstance(m, dict) else m
        n = receiver.wait_for(lambda e: e.get("data", {}).get("object", {}).get("id") == mid, path="/hook/rotate")
        cf.check("delivered", n is not None, "no notification after rotation")
        if n:
            cf.check("signed-with-new", signature_ok(n["raw"], n["headers"], new),
                     "the notification is not signed with the rotated secret")


def test_webhooks_destroy(client, tap, spec, receiver, conformance):
    with conformance("webhooks.destroy") as cf:
        wh = create(client, receiver, "/hook/destroy").data
        client.webhooks.destroy(wh.id)
        body = tap.last_json()
        cf.schema(body, schema(spec, "webhooks.destroy"))
        listing = client.http_client._execute("GET", "/v3/webhooks")[0]["data"]
        cf.check("gone", all(w.get("id") != wh.id for w in listing), "still listed after delete")
        try:
            client.webhooks.find(wh.id)
            cf.check("find-404", False, "found after delete")
        except NylasApiError as e:
            cf.check("find-404", e.status_code == 404, f"status {e.status_code}")


def test_webhooks_send_test_event(client, tap, spec, receiver, conformance):
    """The SDK (6.18.0) has no send-test-event method: the call goes through the SDK's own HTTP
    client (auth, error parsing) with the spec's request body."""
    with conformance("webhooks.send_test_event") as cf:
        cf.check("sdk-has-no-method", not hasattr(client.webhooks, "send_test_event"),
                 "the SDK now has send_test_event: call it instead of the HTTP client")
        body_in = {"trigger_type": "message.created", "webhook_url": receiver.url("/hook/test-event")}
        cf.schema(body_in, spec["schemas"]["send_test_event_input"], prefix="request.")
        answer, _headers = client.http_client._execute("POST", "/v3/webhooks/send-test-event",
                                                        request_body=body_in)
        cf.schema(answer, schema(spec, "webhooks.send_test_event"))
        cf.check("success", answer.get("data") == "success", f"data is {answer.get('data')!r}, not \"success\"")
        n = receiver.wait_for(lambda e: True, path="/hook/test-event", timeout=10)
        cf.check("delivered", n is not None, "no test notification arrived")
        if n:
            cf.check("signed-with-mock-secret", signature_ok(n["raw"], n["headers"], "mock-webhook-secret"),
                     "the test notification is not signed with mock-webhook-secret")
            cf.check("type", n["envelope"].get("type") == "message.created", f"type {n['envelope'].get('type')}")
