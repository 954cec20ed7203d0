#!/usr/bin/env python3
"""Extract the part of Nylas's published OpenAPI spec that the conformance suite checks.

    python3 tests/conformance/extract_spec.py PATH/TO/nylas-api-v3.openapi.yaml [OUT.json]

Writes tests/conformance/spec_subset.json (or OUT.json): for every REST answer the sync uses,
the response schema with $ref and allOf resolved, reduced to what the suite checks: JSON types
(with null where the spec allows it), properties, required fields, array items, enums and
anyOf/oneOf branches. Descriptions and examples are dropped. The suite reads only that file, so
it runs from a clone without the spec; re-run this when the spec is updated and commit both.

The OpenAPI spec has no schemas for webhook notifications: Nylas publishes them on its
notification reference pages (https://developer.nylas.com/docs/reference/notifications/). The
NOTIFICATIONS table below transcribes, for each trigger the sync receives, the `data.object`
fields, types and required fields given there. Where a notification carries a full REST object
(message.created/updated, event.created/updated, calendar.created/updated) its properties come
from the spec's REST schema, with the notification page's required fields (and nullability)
laid over it.
"""
import json
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("extract_spec.py needs PyYAML: python3 -m pip install pyyaml")

# name -> (path, method, status): the REST answers the sync relies on.
RESPONSES = {
    "grants.list": ("/v3/grants", "get", "200"),
    "grants.find": ("/v3/grants/{grantId}", "get", "200"),
    "messages.list": ("/v3/grants/{grant_id}/messages", "get", "200"),
    "messages.find": ("/v3/grants/{grant_id}/messages/{message_id}", "get", "200"),
    "calendars.list": ("/v3/grants/{grant_id}/calendars", "get", "200"),
    "calendars.find": ("/v3/grants/{grant_id}/calendars/{calendar_id}", "get", "200"),
    "events.list": ("/v3/grants/{grant_id}/events", "get", "200"),
    "events.import": ("/v3/grants/{grant_id}/events/import", "get", "200"),
    "events.find": ("/v3/grants/{grant_id}/events/{event_id}", "get", "200"),
    "webhooks.list": ("/v3/webhooks", "get", "200"),
    "webhooks.create": ("/v3/webhooks", "post", "200"),
    "webhooks.find": ("/v3/webhooks/{id}", "get", "200"),
    "webhooks.update": ("/v3/webhooks/{id}", "put", "200"),
    "webhooks.destroy": ("/v3/webhooks/{id}", "delete", "200"),
    "webhooks.rotate_secret": ("/v3/webhooks/rotate-secret/{id}", "post", "200"),
    "webhooks.send_test_event": ("/v3/webhooks/send-test-event", "post", "200"),
    "error.400": ("/v3/grants/{grant_id}/events", "get", "400"),
    "error.401": ("/v3/grants/{grant_id}/messages", "get", "401"),
    "error.404": ("/v3/grants/{grant_id}/messages/{message_id}", "get", "404"),
    "error.429": ("/v3/grants/{grant_id}/messages", "get", "429"),
    "error.504": ("/v3/grants/{grant_id}/messages", "get", "504"),
}

# name -> components/schemas entry: request bodies and objects checked on their own.
SCHEMAS = {
    "message": "message",
    "event": "event",
    "calendar": "calendar",
    "grant": "GrantObject",
    "send_test_event_input": "send_test_event_input",
    "destination_input_payload": "destination_input_payload",
    "destination_update_payload": "destination_update_payload",
}

# name -> (path, method, [parameter names]): query parameters the sync sends, with their
# documented types and defaults (the suite checks the behaviours the defaults imply).
PARAMETERS = {
    "events.list": ("/v3/grants/{grant_id}/events", "get",
                    ["calendar_id", "start", "end", "expand_recurring", "show_cancelled",
                     "updated_after", "updated_before", "limit", "page_token", "select"]),
    "events.import": ("/v3/grants/{grant_id}/events/import", "get",
                      ["calendar_id", "start", "end", "limit", "page_token", "select"]),
    "messages.list": ("/v3/grants/{grant_id}/messages", "get",
                      ["received_after", "received_before", "limit", "page_token", "select"]),
}

S, N, I, B, A, O = "string", "null", "integer", "boolean", "array", "object"
PARTICIPANT = {"type": [O], "properties": {"name": {"type": [S]}, "email": {"type": [S]}}}
PROVIDERS = ["google", "microsoft", "imap", "yahoo", "icloud", "ews", "eas"]


def obj(props, required=()):
    return {"type": [O], "properties": props, "required": list(required)}


def arr(items):
    return {"type": [A], "items": items}


def t(*types, enum=None):
    node = {"type": list(types)}
    if enum:
        node["enum"] = enum
    return node


GRANT_COMMON = {"code": t(I), "grant_id": t(S), "integration_id": t(S),
                "provider": t(S, enum=PROVIDERS), "email": t(S)}
REF = "https://developer.nylas.com/docs/reference/notifications/"

# trigger -> how its data.object looks, from Nylas's notification reference (see module doc).
#   base: a spec schema the object's properties come from (SCHEMAS key), or absent
#   properties: fields given (or overridden) by the notification page
#   required: the page's required fields
NOTIFICATIONS = {
    "envelope": {
        "source": REF,
        "schema": obj({
            "specversion": t(S), "type": t(S), "source": t(S), "id": t(S), "time": t(I),
            "webhook_delivery_attempt": t(I),
            "data": obj({"application_id": t(S), "object": t(O)}),
        }, ["specversion", "type", "source", "id", "time", "data"]),
        "webhook_delivery_attempt": {"minimum": 1, "maximum": 3},
    },
    "message.created": {"source": REF + "messages/message-created/", "base": "message",
                        "properties": {"object": t(S, enum=["message"])},
                        "required": ["id", "grant_id", "object"]},
    "message.updated": {"source": REF + "messages/message-updated/", "base": "message",
                        "properties": {"object": t(S, enum=["message"])},
                        "required": ["id", "grant_id", "object"]},
    "message.deleted": {"source": REF + "messages/message-deleted/",
                        "properties": {"id": t(S), "grant_id": t(S), "object": t(S, enum=["message"]),
                                       "metadata": t(O)},
                        "required": ["id", "grant_id", "object"]},
    "event.created": {"source": REF + "events/event-created/", "base": "event",
                      "properties": {"object": t(S, enum=["event"]), "calendar_id": t(S, N),
                                     "status": t(S, enum=["confirmed", "tentative", "cancelled"])},
                      "required": ["calendar_id", "id", "object", "when"]},
    "event.updated": {"source": REF + "events/event-updated/", "base": "event",
                      "properties": {"object": t(S, enum=["event"]), "calendar_id": t(S, N),
                                     "status": t(S, enum=["confirmed", "tentative", "cancelled"]),
                                     "cancelled_occurrences": arr(t(S)), "occurrences": arr(t(S))},
                      "required": ["calendar_id", "id", "object", "when"]},
    "event.deleted": {"source": REF + "events/event-deleted/",
                      "properties": {"grant_id": t(S), "calendar_id": t(S, N), "id": t(S),
                                     "master_event_id": t(S), "object": t(S, enum=["event"]),
                                     "metadata": t(O)},
                      "required": ["calendar_id", "id", "object"]},
    "calendar.created": {"source": REF + "calendar/calendar-created/", "base": "calendar",
                         "properties": {"object": t(S, enum=["calendar"])},
                         "required": ["id", "object"]},
    "calendar.updated": {"source": REF + "calendar/calendar-updated/", "base": "calendar",
                         "properties": {"object": t(S, enum=["calendar"])},
                         "required": ["id", "object"]},
    "calendar.deleted": {"source": REF + "calendar/calendar-deleted/",
                         "properties": {"grant_id": t(S), "id": t(S), "object": t(S, enum=["calendar"]),
                                        "is_primary": t(B), "name": t(S), "read_only": t(B),
                                        "timezone": t(S), "is_owned_by_user": t(B)},
                         "required": ["id", "object"]},
    "grant.created": {"source": REF + "grants/grant-created/",
                      "properties": dict(GRANT_COMMON, login_id=t(S), name=t(S), scope=arr(t(S))),
                      "required": [], "codes": [25012]},
    "grant.updated": {"source": REF + "grants/grant-updated/",
                      "properties": dict(GRANT_COMMON, reauthentication_flag=t(B), scope=arr(t(S))),
                      "required": [], "codes": [25014, 25027]},
    "grant.deleted": {"source": REF + "grants/grant-deleted/",
                      "properties": dict(GRANT_COMMON), "required": [], "codes": [25013]},
    "grant.expired": {"source": REF + "grants/grant-expired/",
                      "properties": dict(GRANT_COMMON, grant_updated_at=t(I)),
                      "required": [], "codes": [25009]},
    "message.opened": {"source": REF + "message-tracking/message-opened/",
                       "properties": {"object": t(S, enum=["message"]), "grant_id": t(S),
                                      "message_id": t(S), "label": t(S),
                                      "message_data": obj({"count": t(I), "timestamp": t(I)}),
                                      "recents": arr(obj({"ip": t(S), "opened_id": t(I),
                                                          "timestamp": t(I), "user_agent": t(S)})),
                                      "sender_app_id": t(S), "timestamp": t(I)},
                       "required": ["message_id"]},
    "message.link_clicked": {"source": REF + "message-tracking/message-link_clicked/",
                             "properties": {"object": t(S, enum=["message"]), "grant_id": t(S),
                                            "message_id": t(S), "label": t(S),
                                            "link_data": arr(obj({"count": t(I), "url": t(S)})),
                                            "recents": arr(obj({"click_id": t(I), "ip": t(S),
                                                                "link_index": t(S), "timestamp": t(I),
                                                                "user_agent": t(S)})),
                                            "sender_app_id": t(S), "timestamp": t(I)},
                             "required": ["message_id"]},
    "thread.replied": {"source": REF + "message-tracking/thread-replied/",
                       "properties": {"object": t(S, enum=["thread"]), "grant_id": t(S),
                                      "message_id": t(S), "root_message_id": t(S), "label": t(S),
                                      "reply_data": obj({"count": t(I)}), "sender_app_id": t(S),
                                      "thread_id": t(S), "timestamp": t(I),
                                      "reply_to_message_id": t(S), "from_self": t(B)},
                       "required": ["message_id", "root_message_id"]},
    # grant_id sits at data.grant_id; data.object holds the bounce details.
    "message.bounce_detected": {"source": REF + "messages/message-bounce_detected/",
                                "data_properties": {"grant_id": t(S)},
                                "properties": {"bounce_reason": t(S), "bounce_date": t(S),
                                               "bounced_addresses": t(S), "type": t(S), "code": t(S),
                                               "grant_id": t(S), "message_id": t(S),
                                               "origin": obj({"to": arr(t(S)), "from": t(S),
                                                              "cc": arr(t(S)), "bcc": arr(t(S)),
                                                              "subject": t(S), "mime_id": t(S),
                                                              "id": t(S), "original_send_at": t(S)})},
                                "required": []},
    "message.opened.legacy": {"source": REF + "message-tracking/message-opened-legacy/",
                              "properties": {"grant_id": t(S), "object": t(S, enum=["message"]),
                                             "deltas": t(A, N)},
                              "required": ["grant_id", "object", "deltas"]},
}


class Spec:
    def __init__(self, doc):
        self.doc = doc

    def ref(self, ref):
        node = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def simplify(self, node, stack=()):
        """A spec schema as {type, properties, required, items, enum, anyOf} with refs resolved."""
        if not isinstance(node, dict):
            return {}
        if "$ref" in node:
            r = node["$ref"]
            if r in stack or len(stack) > 12:
                return {}
            return self.simplify(self.ref(r), stack + (r,))
        out = {}
        if "allOf" in node:
            for part in node["allOf"]:
                merge(out, self.simplify(part, stack))
        types = node.get("type")
        if types is not None:
            types = [types] if isinstance(types, str) else list(types)
            if node.get("nullable") and N not in types:
                types.append(N)
            out["type"] = types
        if "enum" in node:
            out["enum"] = [e for e in node["enum"] if e is not None]
            if None in node["enum"] and "type" in out and N not in out["type"]:
                out["type"].append(N)
        if "properties" in node:
            props = out.setdefault("properties", {})
            for k, v in node["properties"].items():
                props[k] = merge(props.get(k, {}), self.simplify(v, stack))
        if "required" in node and isinstance(node["required"], list):
            out["required"] = sorted(set(out.get("required", [])) | set(node["required"]))
        if "items" in node:
            out["items"] = self.simplify(node["items"], stack)
        for key in ("anyOf", "oneOf"):
            if key in node:
                out["anyOf"] = [self.simplify(b, stack) for b in node[key]]
        return out

    def response(self, path, method, status):
        resp = self.doc["paths"][path][method]["responses"][status]
        while "$ref" in resp:
            resp = self.ref(resp["$ref"])
        schema = resp["content"]["application/json"]["schema"]
        return self.simplify(schema)

    def parameters(self, path, method, names):
        params = {}
        item = self.doc["paths"][path]
        for p in (item.get("parameters") or []) + (item[method].get("parameters") or []):
            if "$ref" in p:
                p = self.ref(p["$ref"])
            if p.get("in") == "query" and p["name"] in names:
                schema = p.get("schema", {})
                entry = {"type": schema.get("type")}
                for k in ("default", "maximum", "enum"):
                    if k in schema:
                        entry[k] = schema[k]
                if p.get("required"):
                    entry["required"] = True
                if p.get("deprecated"):
                    entry["deprecated"] = True
                params[p["name"]] = entry
        return params


def merge(a, b):
    """allOf: union of properties and required; the later part's scalars win."""
    for k, v in b.items():
        if k == "properties":
            props = a.setdefault("properties", {})
            for pk, pv in v.items():
                props[pk] = merge(props.get(pk, {}), pv)
        elif k == "required":
            a["required"] = sorted(set(a.get("required", [])) | set(v))
        elif k == "type" and "type" in a:
            a["type"] = [x for x in a["type"] if x in v] or v
        else:
            a[k] = v
    return a


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "spec_subset.json")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(src, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=loader)
    spec = Spec(doc)
    subset = {
        "_about": ("Generated by tests/conformance/extract_spec.py from Nylas's OpenAPI spec "
                   "(responses, schemas, parameters) and Nylas's notification reference "
                   "(notifications). Do not edit by hand: re-run the extractor."),
        "_spec": {"title": doc["info"].get("title"), "version": doc["info"].get("version"),
                  "source": (doc["info"].get("x-provenance") or {}).get("source"),
                  "sha256": (doc["info"].get("x-provenance") or {}).get("sha256")},
        "responses": {}, "schemas": {}, "parameters": {}, "notifications": {},
    }
    for name, (path, method, status) in RESPONSES.items():
        subset["responses"][name] = {"path": path, "method": method.upper(), "status": int(status),
                                     "schema": spec.response(path, method, status)}
    for name, comp in SCHEMAS.items():
        subset["schemas"][name] = spec.simplify({"$ref": "#/components/schemas/" + comp})
    for name, (path, method, names) in PARAMETERS.items():
        subset["parameters"][name] = spec.parameters(path, method, names)
    for trigger, n in NOTIFICATIONS.items():
        if trigger == "envelope":
            subset["notifications"][trigger] = n
            continue
        schema = {}
        if "base" in n:
            schema = json.loads(json.dumps(subset["schemas"][n["base"]]))
        schema.setdefault("type", [O])
        props = schema.setdefault("properties", {})
        for k, v in n.get("properties", {}).items():
            props[k] = v  # the notification page's definition wins
        schema["required"] = sorted(n.get("required", []))
        entry = {"source": n["source"], "schema": schema}
        if "base" in n:
            entry["base"] = "spec components/schemas/" + SCHEMAS[n["base"]]
        if "codes" in n:
            entry["codes"] = n["codes"]
        if "data_properties" in n:
            entry["data_properties"] = n["data_properties"]
        subset["notifications"][trigger] = entry
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(subset, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {out_path}: {len(subset['responses'])} responses, {len(subset['schemas'])} schemas, "
          f"{len(subset['notifications'])} notification shapes")


if __name__ == "__main__":
    main()
