"""The REST endpoints the sync uses, called through the official Nylas Python SDK; every raw
answer is checked against the spec subset, and the behaviours NYLAS_API.md says the sync
depends on are asserted."""
import time

import requests
from nylas import Client
from nylas.models.errors import NylasApiError

from conftest import API_KEY

DAY = 86_400


def schema(spec, name):
    return spec["responses"][name]["schema"]


def now(emulator):
    return int(emulator.control("GET", "/_emulator/now")["now"])


def primary_calendar(client, grant):
    cals = client.calendars.list(grant).data
    return next((c.id for c in cals if c.is_primary), cals[0].id)


def list_all(fetch):
    """Every item of a paginated listing; fetch(page_token) -> (items, next_cursor)."""
    items, token, pages = [], None, 0
    while True:
        data, token = fetch(token)
        items += data
        pages += 1
        if not token or pages > 500:
            return items, pages


# ---------------------------------------------------------------- grants

def test_grants_list(client, tap, spec, emulator, conformance):
    with conformance("grants.list") as cf:
        resp = client.grants.list()
        body = tap.last_json()
        cf.schema(body, schema(spec, "grants.list"))
        cf.check("offset-envelope", "limit" in body and "offset" in body,
                 "GET /v3/grants answers {request_id, data, limit, offset}")
        ids = {g.id for g in resp.data}
        cf.check("lists-grants", set(emulator.grant_ids) <= ids, f"grants {emulator.grant_ids} not all in {ids}")


def test_grants_find(client, tap, spec, emulator, conformance):
    with conformance("grants.find") as cf:
        g = client.grants.find(emulator.grant_ids[0]).data
        cf.schema(tap.last_json(), schema(spec, "grants.find"))
        cf.check("id", g.id == emulator.grant_ids[0], f"asked {emulator.grant_ids[0]}, got {g.id}")


# ---------------------------------------------------------------- messages

def test_messages_list(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("messages.list") as cf:
        resp = client.messages.list(g, query_params={"limit": 50, "received_after": 0})
        body = tap.last_json()
        cf.schema(body, schema(spec, "messages.list"))
        cf.check("not-empty", len(resp.data) > 0, "no messages listed")
        cf.check("next-cursor-field", "next_cursor" in body, "list envelope without next_cursor")
        cf.check("no-updated-at", all("updated_at" not in m for m in body["data"]),
                 "messages have no updated_at in Nylas")
        dates = [m["date"] for m in body["data"]]
        cf.check("newest-first", dates == sorted(dates, reverse=True), "messages not newest first")
        cut = dates[len(dates) // 2] if dates else 0
        cf.step("received_after")
        later = client.messages.list(g, query_params={"received_after": cut, "limit": 200}).data
        cf.check("received-after", all(m.date >= cut for m in later), "received_after returned older mail")
        cf.step("select")
        client.messages.list(g, query_params={"limit": 5, "select": "id,grant_id,object,date,subject"})
        sel = tap.last_json()["data"]
        extra = {k for m in sel for k in m} - {"id", "grant_id", "object", "date", "subject"}
        cf.check("select", sel and not extra, f"select=id,grant_id,object,date,subject returned also {extra}")


def test_messages_find(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("messages.find") as cf:
        mid = client.messages.list(g, query_params={"limit": 1}).data[0].id
        m = client.messages.find(g, mid).data
        cf.schema(tap.last_json(), schema(spec, "messages.find"))
        cf.check("id", m.id == mid, "wrong message")


def test_messages_pagination(client, tap, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("messages.pagination") as cf:
        for _ in range(3):
            emulator.control("POST", f"/_emulator/grants/{g}/messages", {})
        whole = [m.id for m in client.messages.list(g, query_params={"limit": 200}).data]

        def page(token):
            q = {"limit": 2}
            if token:
                q["page_token"] = token
            r = client.messages.list(g, query_params=q)
            return [m.id for m in r.data], r.next_cursor

        paged, pages = list_all(page)
        cf.check("several-pages", pages > 1, f"{len(whole)} messages in {pages} page(s) of 2")
        cf.check("no-repeats", len(paged) == len(set(paged)), "an item appeared on two pages")
        cf.check("same-items", paged == whole, "pages joined differ from one listing")


# ---------------------------------------------------------------- calendars

def test_calendars_list(client, tap, spec, emulator, conformance):
    with conformance("calendars.list") as cf:
        cals = client.calendars.list(emulator.grant_ids[0]).data
        cf.schema(tap.last_json(), schema(spec, "calendars.list"))
        cf.check("primary", any(c.is_primary for c in cals), "no primary calendar")


def test_calendars_find(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("calendars.find") as cf:
        cid = primary_calendar(client, g)
        c = client.calendars.find(g, cid).data
        cf.schema(tap.last_json(), schema(spec, "calendars.find"))
        cf.check("id", c.id == cid, "wrong calendar")


# ---------------------------------------------------------------- events

def make_event(emulator, grant, calendar, start, length=3600, title="conformance", recurrence=None):
    body = {"calendar_id": calendar, "title": title, "start_time": start, "end_time": start + length}
    if recurrence:
        body["recurrence"] = recurrence
    ev = emulator.control("POST", f"/_emulator/grants/{grant}/events", body)
    return ev.get("id") if isinstance(ev, dict) else ev


def test_events_list(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("events.list") as cf:
        cal = primary_calendar(client, g)
        t = now(emulator)
        window = {"calendar_id": cal, "start": t - 400 * DAY, "end": t + 400 * DAY, "limit": 200}
        resp = client.events.list(g, query_params=window)
        cf.schema(tap.last_json(), schema(spec, "events.list"))
        cf.check("not-empty", len(resp.data) > 0, "no events in a +-400 day window")
        cf.check("calendar", all(e.calendar_id == cal for e in resp.data), "events of another calendar listed")

        cf.step("show_cancelled")
        eid = make_event(emulator, g, cal, t + 3 * DAY, title="to cancel")
        emulator.control("PATCH", f"/_emulator/grants/{g}/events/{eid}", {"status": "cancelled"})
        # The SDK sends a Python bool as `True` (str(True)); the sync sends `true`.
        try:
            client.events.list(g, query_params=dict(window, show_cancelled=True))
            cf.check("sdk-boolean", True)
        except NylasApiError as e:
            cf.check("sdk-boolean", False, f"show_cancelled=True as the SDK sends it: {e.status_code} {e}")
        shown = {e.id: e for e in client.events.list(g, query_params=dict(window, show_cancelled="true")).data}
        hidden = {e.id for e in client.events.list(g, query_params=window).data}
        cf.check("show-cancelled", eid in shown and shown[eid].status == "cancelled",
                 "show_cancelled=true does not list the cancelled event")
        cf.check("hide-cancelled", eid not in hidden, "a cancelled event is listed without show_cancelled")

        cf.step("updated_after")
        eid2 = make_event(emulator, g, cal, t + 4 * DAY, title="to update")
        time.sleep(1.1)
        mark = now(emulator)
        time.sleep(1.1)
        emulator.control("PATCH", f"/_emulator/grants/{g}/events/{eid2}", {"title": "updated"})
        upd = {e.id for e in client.events.list(g, query_params=dict(window, updated_after=mark)).data}
        cf.check("updated-after", eid2 in upd and eid not in upd,
                 f"updated_after={mark}: expected {eid2} only among these two, got {upd & {eid, eid2}}")


def test_events_find(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("events.find") as cf:
        cal = primary_calendar(client, g)
        t = now(emulator)
        eid = make_event(emulator, g, cal, t + 2 * DAY)
        e = client.events.find(g, eid, query_params={"calendar_id": cal}).data
        cf.schema(tap.last_json(), schema(spec, "events.find"))
        cf.check("id", e.id == eid, "wrong event")


def test_events_default_window(client, emulator, conformance):
    """NYLAS_API.md: without start/end, Nylas lists only events from now to a month ahead."""
    g = emulator.grant_ids[1]
    with conformance("events.default-window") as cf:
        cal = primary_calendar(client, g)
        t = now(emulator)
        past = make_event(emulator, g, cal, t - 60 * DAY, title="two months ago")
        soon = make_event(emulator, g, cal, t + 5 * DAY, title="in five days")
        far = make_event(emulator, g, cal, t + 60 * DAY, title="in two months")
        default = {e.id for e in client.events.list(g, query_params={"calendar_id": cal, "limit": 200}).data}
        cf.check("includes-next-month", soon in default, "an event in 5 days is not in the default listing")
        cf.check("excludes-past", past not in default, "an event 60 days ago is in the default listing")
        cf.check("excludes-after-a-month", far not in default, "an event in 60 days is in the default listing")
        wide = {e.id for e in client.events.list(g, query_params={
            "calendar_id": cal, "start": t - 90 * DAY, "end": t + 90 * DAY, "limit": 200}).data}
        cf.check("explicit-window", {past, soon, far} <= wide, "start/end over +-90 days miss an event")


def _recurring_fixture(client, emulator, g):
    cal = primary_calendar(client, g)
    t = now(emulator)
    start = (t // DAY + 1) * DAY + 9 * 3600  # 09:00 UTC tomorrow
    master = make_event(emulator, g, cal, start, title="daily standup",
                        recurrence=["RRULE:FREQ=DAILY;COUNT=10"])
    return cal, t, start, master


def test_events_recurring(client, tap, emulator, conformance):
    g = emulator.grant_ids[1]
    with conformance("events.recurring") as cf:
        cf.step("create-series")
        cal, t, start, master = _recurring_fixture(client, emulator, g)
        cf.step("request")
        q = {"calendar_id": cal, "start": t, "end": t + 30 * DAY, "limit": 200}
        flat = client.events.list(g, query_params=dict(q, expand_recurring="false")).data
        masters = [e for e in flat if e.id == master]
        cf.check("master-unexpanded", len(masters) == 1 and bool(masters[0].recurrence),
                 "expand_recurring=false does not list the master with its recurrence")
        cf.check("no-occurrences-unexpanded", not any(e.master_event_id == master for e in flat),
                 "expand_recurring=false lists occurrences")
        expanded = client.events.list(g, query_params=dict(q, expand_recurring="true")).data
        occ = [e for e in expanded if e.master_event_id == master]
        cf.check("occurrences-expanded", len(occ) == 10,
                 f"expand_recurring=true: {len(occ)} occurrences with master_event_id, expected 10")
        default = client.events.list(g, query_params=q).data
        cf.check("expand-by-default", len([e for e in default if e.master_event_id == master]) == 10,
                 "expand_recurring defaults to true in the spec; occurrences are not listed by default")


def test_events_import(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[1]
    with conformance("events.import") as cf:
        cf.step("create-series")
        cal, t, start, master = _recurring_fixture(client, emulator, g)
        single = make_event(emulator, g, cal, t + 7 * DAY + 1800, title="single")
        cf.step("move-occurrence")
        moved = emulator.control("POST", f"/_emulator/grants/{g}/events/{master}/move-occurrence",
                                 {"original_start": start + 2 * DAY, "start_time": start + 2 * DAY + 3600,
                                  "end_time": start + 2 * DAY + 7200})
        cf.step("request")
        resp = client.events.list_import_events(g, query_params={"calendar_id": cal, "start": t,
                                                                 "end": t + 30 * DAY})
        body = tap.last_json()
        cf.schema(body, schema(spec, "events.import"))
        items = list(resp.data)
        token = resp.next_cursor
        while token:
            r = client.events.list_import_events(g, query_params={"calendar_id": cal, "start": t,
                                                                  "end": t + 30 * DAY, "page_token": token})
            items += r.data
            token = r.next_cursor
        ids = {e.id for e in items}
        cf.check("master", any(e.id == master and e.recurrence for e in items), "the master is not imported")
        cf.check("single", single in ids, "a single event is not imported")
        exc = [e for e in items if e.master_event_id == master]
        moved_id = moved.get("id") if isinstance(moved, dict) else None
        cf.check("exception", len(exc) == 1 and (moved_id is None or exc[0].id == moved_id),
                 f"expected the one moved occurrence as an exception, got {len(exc)} events with master_event_id")


def test_events_pagination(client, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("events.pagination") as cf:
        cal = primary_calendar(client, g)
        t = now(emulator)
        q = {"calendar_id": cal, "start": t - 400 * DAY, "end": t + 400 * DAY}
        whole = [e.id for e in client.events.list(g, query_params=dict(q, limit=200)).data]

        def page(token):
            qq = dict(q, limit=1)
            if token:
                qq["page_token"] = token
            r = client.events.list(g, query_params=qq)
            return [e.id for e in r.data], r.next_cursor

        paged, pages = list_all(page)
        cf.check("several-pages", pages > 1, f"{len(whole)} events in {pages} page(s) of 1")
        cf.check("no-repeats", len(paged) == len(set(paged)), "an event appeared on two pages")
        cf.check("same-items", sorted(paged) == sorted(whole), "pages joined differ from one listing")


# ---------------------------------------------------------------- errors

def test_error_404(client, tap, spec, emulator, conformance):
    g = emulator.grant_ids[0]
    with conformance("error.404") as cf:
        m = emulator.control("POST", f"/_emulator/grants/{g}/messages", {})
        mid = m.get("id") if isinstance(m, dict) else m
        emulator.control("DELETE", f"/_emulator/grants/{g}/messages/{mid}")
        try:
            client.messages.find(g, mid)
            cf.check("raises", False, "a deleted message was returned")
        except NylasApiError as e:
            cf.check("status", e.status_code == 404, f"status {e.status_code}")
            cf.check("type", e.type == "not_found_error", f"type {e.type}")
            cf.schema(tap.last_json(), schema(spec, "error.404"))


def test_error_400(client, tap, spec, emulator, conformance):
    with conformance("error.400") as cf:
        try:
            client.events.list(emulator.grant_ids[0], query_params={})
            cf.check("raises", False, "events listed without calendar_id")
        except NylasApiError as e:
            cf.check("status", e.status_code == 400, f"status {e.status_code}")
            cf.check("type", e.type == "invalid_request_error", f"type {e.type}")
            cf.schema(tap.last_json(), schema(spec, "error.400"))


def test_error_401(tap, spec, emulator, conformance):
    with conformance("error.401") as cf:
        bad = Client("not-" + API_KEY, api_uri=emulator.base_url, timeout=30)
        try:
            bad.messages.list(emulator.grant_ids[0])
            cf.check("raises", False, "a wrong API key was accepted")
        except NylasApiError as e:
            cf.check("status", e.status_code == 401, f"status {e.status_code}")
            cf.schema(tap.last_json(), schema(spec, "error.401"))


def test_error_429(client, tap, spec, emulator, conformance):
    """NYLAS_API.md: Nylas's own limiter answers nylas_rate_limit_exceeded without provider_error;
    a provider's 429 is rate_limit_error with provider_error."""
    with conformance("error.429") as cf:
        saved = emulator.control("GET", "/_emulator/faults")
        emulator.control("POST", "/_emulator/faults", dict(saved, api_429_probability=1.0, retry_after_secs=2))
        try:
            client.messages.list(emulator.grant_ids[0])
            cf.check("raises", False, "no 429 with api_429_probability=1")
        except NylasApiError as e:
            body = tap.last_json()
            cf.check("status", e.status_code == 429, f"status {e.status_code}")
            cf.schema(body, schema(spec, "error.429"))
            pe = body.get("error", {}).get("provider_error")
            cf.check("type", (e.type == "nylas_rate_limit_exceeded" and pe is None)
                     or (e.type == "rate_limit_error" and isinstance(pe, dict)),
                     f"type {e.type!r} with provider_error {pe!r}")
            cf.check("retry-after", e.headers.get("Retry-After") == "2", "Retry-After not sent")
        finally:
            emulator.control("POST", "/_emulator/faults", saved)


def test_gzip(emulator, conformance):
    """Responses are gzip-compressed when the request sends Accept-Encoding: gzip."""
    with conformance("gzip") as cf:
        r = emulator.raw("GET", f"/v3/grants/{emulator.grant_ids[0]}/messages?limit=20",
                         headers={"Accept-Encoding": "gzip"}, stream=True)
        cf.check("content-encoding", r.headers.get("Content-Encoding") == "gzip",
                 f"Content-Encoding {r.headers.get('Content-Encoding')!r} for a {r.headers.get('Content-Length')}-byte answer")
        cf.check("decodes", isinstance(r.json().get("data"), list), "the body does not decode")
        plain = emulator.raw("GET", f"/v3/grants/{emulator.grant_ids[0]}/messages?limit=20",
                             headers={"Accept-Encoding": "identity"})
        cf.check("identity", plain.headers.get("Content-Encoding") in (None, "identity"),
                 "compressed although the client did not accept gzip")
