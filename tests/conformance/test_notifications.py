"""Notifications the emulator sends for deterministic changes, captured by the suite's receiver
(the emulator's --webhook-url destination, subscribed to every trigger), signature-checked and
checked against the notification shapes of the spec subset."""
import time

import pytest

from conftest import signature_ok

DAY = 86_400
TRACKING = ["message.opened", "message.link_clicked", "message.bounce_detected", "thread.replied"]


def _id(answer):
    return answer.get("id") if isinstance(answer, dict) else answer


class Produced:
    """trigger -> (notification or None, error text)."""

    def __init__(self, emulator, receiver):
        self.emulator, self.receiver, self.items = emulator, receiver, {}

    def expect(self, trigger, pred, timeout=15.0):
        n = self.receiver.wait_for(lambda e: e.get("type") == trigger and pred(e), timeout=timeout,
                                   path="/hook/main")
        self.items[trigger] = (n, None if n else f"no {trigger} notification arrived")

    def fail(self, trigger, err):
        self.items[trigger] = (None, err)

    def run(self, triggers, fn):
        try:
            fn()
        except Exception as e:  # a missing control endpoint, an error answer
            for t in triggers:
                if t not in self.items:
                    self.fail(t, f"producing it failed: {type(e).__name__}: {e}"[:300])


def obj_id(e):
    return e.get("data", {}).get("object", {}).get("id")


@pytest.fixture(scope="module")
def produced(emulator, receiver):
    p = Produced(emulator, receiver)
    emu = emulator
    g = emu.grant_ids[0]

    def messages():
        mid = _id(emu.control("POST", f"/_emulator/grants/{g}/messages", {"subject": "conformance"}))
        p.expect("message.created", lambda e: obj_id(e) == mid)
        emu.control("PATCH", f"/_emulator/grants/{g}/messages/{mid}", {"unread": False, "starred": True})
        p.expect("message.updated", lambda e: obj_id(e) == mid)
        emu.control("DELETE", f"/_emulator/grants/{g}/messages/{mid}")
        p.expect("message.deleted", lambda e: obj_id(e) == mid)

    def events():
        t = int(emu.control("GET", "/_emulator/now")["now"])
        cal = g_primary(emu, g)
        eid = _id(emu.control("POST", f"/_emulator/grants/{g}/events",
                              {"calendar_id": cal, "title": "conformance", "start_time": t + DAY,
                               "end_time": t + DAY + 3600}))
        p.expect("event.created", lambda e: obj_id(e) == eid)
        emu.control("PATCH", f"/_emulator/grants/{g}/events/{eid}", {"title": "conformance 2"})
        p.expect("event.updated", lambda e: obj_id(e) == eid)
        emu.control("DELETE", f"/_emulator/grants/{g}/events/{eid}")
        p.expect("event.deleted", lambda e: obj_id(e) == eid)

    def calendars():
        cid = _id(emu.control("POST", f"/_emulator/grants/{g}/calendars", {"name": "conformance"}))
        p.expect("calendar.created", lambda e: obj_id(e) == cid)
        emu.control("PATCH", f"/_emulator/grants/{g}/calendars/{cid}", {"name": "conformance 2"})
        p.expect("calendar.updated", lambda e: obj_id(e) == cid)
        emu.control("DELETE", f"/_emulator/grants/{g}/calendars/{cid}")
        p.expect("calendar.deleted", lambda e: obj_id(e) == cid)

    def grants():
        answer = emu.control("POST", "/_emulator/grants", {})
        gid = answer.get("grant_id") or answer.get("id")
        of = lambda e: e.get("data", {}).get("object", {}).get("grant_id") == gid  # noqa: E731
        p.expect("grant.created", of)
        try:  # an ordinary update (25014), where the emulator offers it
            emu.control("POST", f"/_emulator/grants/{gid}/update")
            n = receiver.wait_for(lambda e: e.get("type") == "grant.updated" and of(e), path="/hook/main")
            p.items["grant.updated/ordinary"] = (n, None if n else "no grant.updated after an ordinary update")
        except Exception as e:
            p.items["grant.updated/ordinary"] = (None, f"no ordinary grant update: {e}"[:300])
        emu.control("POST", f"/_emulator/grants/{gid}/expire")
        # Nylas may send grant.expired up to 10 minutes late; the suite starts the emulator with
        # a lag of at most 3 s, and re-authenticates only once it arrived.
        p.expect("grant.expired", of)
        emu.control("POST", f"/_emulator/grants/{gid}/reauthenticate")
        ordinary = (p.items.get("grant.updated/ordinary") or (None,))[0]
        oid = ordinary["envelope"].get("id") if ordinary else None
        p.expect("grant.updated", lambda e: of(e) and e.get("id") != oid)
        emu.control("POST", f"/_emulator/grants/{gid}/delete")
        p.expect("grant.deleted", of)

    def tracking():
        for trig in TRACKING:
            try:
                emu.control("POST", "/_emulator/notifications", {"type": trig, "grant_id": g})
            except Exception as e:
                p.fail(trig, f"no way to produce it over HTTP: {type(e).__name__}: {e}"[:300])
                continue
            p.expect(trig, lambda e: True, timeout=10)

    p.run(["message.created", "message.updated", "message.deleted"], messages)
    p.run(["event.created", "event.updated", "event.deleted"], events)
    p.run(["calendar.created", "calendar.updated", "calendar.deleted"], calendars)
    p.run(["grant.created", "grant.expired", "grant.updated", "grant.deleted"], grants)
    p.run(TRACKING, tracking)
    return p


def g_primary(emu, g):
    cals = emu.raw("GET", f"/v3/grants/{g}/calendars").json()["data"]
    return next((c["id"] for c in cals if c.get("is_primary")), cals[0]["id"])


TRIGGERS = ["message.created", "message.updated", "message.deleted", "event.created", "event.updated",
            "event.deleted", "calendar.created", "calendar.updated", "calendar.deleted", "grant.created",
            "grant.updated", "grant.deleted", "grant.expired"] + TRACKING


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_notification(trigger, produced, spec, emulator, conformance):
    shape = spec["notifications"][trigger]
    with conformance("notification." + trigger) as cf:
        n, err = produced.items.get(trigger, (None, "not produced"))
        cf.check("produced", n is not None, err or "")
        if n is None:
            return
        env = n["envelope"]
        secret = emulator.destinations[0]["webhook_secret"]
        cf.check("signature", signature_ok(n["raw"], n["headers"], secret), "bad x-nylas-signature")
        data = env.get("data") or {}
        for k, sub in (shape.get("data_properties") or {}).items():
            cf.check(f"data.{k}:present", k in data, f"data.{k} missing (this trigger carries it at data level)")
        cf.schema(data.get("object"), shape["schema"], prefix="object.")
        obj = data.get("object") or {}
        if "codes" in shape:
            cf.check("code", obj.get("code") in shape["codes"], f"code {obj.get('code')!r}, expected one of {shape['codes']}")
        if trigger == "grant.updated":
            o, oerr = produced.items.get("grant.updated/ordinary", (None, "not produced"))
            ocode = ((o or {}).get("envelope") or {}).get("data", {}).get("object", {}).get("code") if o else None
            cf.check("code-ordinary-update", ocode == 25014, oerr or f"an ordinary update carries code {ocode!r}, not 25014")
            cf.check("code-reauthentication", obj.get("code") == 25027 and obj.get("reauthentication_flag") is True,
                     f"a re-authentication must carry code 25027 and reauthentication_flag true, got "
                     f"{obj.get('code')!r}/{obj.get('reauthentication_flag')!r}")
        if trigger in ("message.deleted", "event.deleted"):
            allowed = {"id", "grant_id", "object", "calendar_id", "master_event_id", "metadata"}
            cf.check("ids-only", set(obj) <= allowed, f"a delete carries more than ids: {sorted(set(obj) - allowed)}")
        if trigger in TRACKING and trigger != "message.bounce_detected":
            cf.check("no-id", "id" not in obj, "tracking notifications carry message_id, not id")
