#!/usr/bin/env python3
"""Regenerates the sample events in this folder, one or more per function:

- ingest: API Gateway (HTTP API, payload 2.0) events; the signed ones use the local development
  secret `local-dev-secret` (NYLAS_WEBHOOK_SECRETS in the README);
- consumer: the SQS batch it receives, one record holding a `message.created` notification as the
  ingest queued it (body byte for byte, routing attributes);
- reconciler: the SQS batch it receives, one reconcile job;
- scheduler: the EventBridge scheduled event.

tests/integration/tests/sample_events.rs reads every file here with its handler's input type (and
runs the ingest's and the consumer's against moto), so a sample that stops matching the handler's
contract fails the tests.
"""
import base64, gzip, hashlib, hmac, json, pathlib

SECRET = b"local-dev-secret"
HERE = pathlib.Path(__file__).parent


def notification():
    return {
        "specversion": "1.0", "type": "message.created", "source": "/google/emails/realtime",
        "id": "sample-notification-1", "time": 1767225600, "webhook_delivery_attempt": 1,
        "data": {"application_id": "sample-app", "object": {
            "id": "sample-message-1", "grant_id": "sample-grant-1", "object": "message",
            "thread_id": "sample-thread-1", "subject": "Hello from the sample event",
            "from": [{"name": "Ada", "email": "ada@example.com"}], "to": [{"email": "you@example.com"}],
            "date": 1767225590, "folders": ["INBOX"], "unread": True, "starred": False,
            "snippet": "Hello", "body": "<p>Hello</p>", "attachments": []}}}


def event(method, raw_query="", headers=None, body=None, is_base64=False):
    headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    return {
        "version": "2.0", "routeKey": f"{method} /webhooks/nylas", "rawPath": "/webhooks/nylas",
        "rawQueryString": raw_query, "headers": headers,
        "queryStringParameters": dict(p.split("=", 1) for p in raw_query.split("&")) if raw_query else None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": method, "path": "/webhooks/nylas", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "Nylas/3.0"},
            "requestId": "sample-request", "routeKey": f"{method} /webhooks/nylas", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000},
        "body": body, "isBase64Encoded": is_base64,
    }


def sign(data: bytes) -> str:
    return hmac.new(SECRET, data, hashlib.sha256).hexdigest()


def write(name, ev):
    (HERE / name).write_text(json.dumps(ev, indent=2) + "\n")


body = json.dumps(notification(), separators=(",", ":")).encode()
write("apigw-v2-challenge.json", event("GET", "challenge=sample-challenge-7f3a"))
write("apigw-v2-message-created.json", event("POST", headers={
    "content-type": "application/json", "x-nylas-signature": sign(body)}, body=body.decode()))
write("apigw-v2-bad-signature.json", event("POST", headers={
    "content-type": "application/json", "x-nylas-signature": "0" * 64}, body=body.decode()))
compressed = gzip.compress(body, mtime=0)
write("apigw-v2-message-created-gzip.json", event("POST", headers={
    "content-type": "application/json", "content-encoding": "gzip", "x-nylas-signature": sign(compressed)},
    body=base64.b64encode(compressed).decode(), is_base64=True))


def sqs_record(message_id, body, attributes, queue, sender):
    return {
        "messageId": message_id, "receiptHandle": f"sample-receipt-{message_id}", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000",
                       "SenderId": f"AROAEXAMPLE:{sender}", "ApproximateFirstReceiveTimestamp": "1767225600100"},
        "messageAttributes": {k: {"stringValue": v, "stringListValues": [], "binaryListValues": [],
                                  "dataType": "String"} for k, v in attributes.items()},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}", "awsRegion": "us-east-1",
    }


write("sqs-consumer-message-created.json", {"Records": [sqs_record(
    "sample-sqs-message-1", body.decode(),
    {"nylas_type": "message.created", "notification_id": "sample-notification-1",
     "grant_id": "sample-grant-1", "object_id": "sample-message-1", "payload": "inline"},
    "nylas-sync-notifications", "ingest")]})
write("sqs-reconciler-job.json", {"Records": [sqs_record(
    "sample-sqs-job-1", json.dumps({"grant_id": "sample-grant-1", "kind": "incremental"}, separators=(",", ":")),
    {}, "nylas-sync-reconcile", "scheduler")]})
write("eventbridge-scheduler.json", {
    "version": "0", "id": "sample-schedule-1", "detail-type": "Scheduled Event", "source": "aws.events",
    "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/nylas-sync-reconcile-schedule"], "detail": {}})
# The destination's own schedule: EventBridge delivers the rule's Input instead of the event.
write("eventbridge-destination-watch.json", {"watch_only": True})
