"""Runs last (file order): every notification the receiver captured during the session has a
CloudEvents envelope as Nylas documents it and a valid signature; and every known-difference tag
in the emulator README names a check this suite has."""
from checks import known_differences
from conftest import SCOPES, signature_ok


def test_every_envelope(receiver, spec, conformance):
    shape = spec["notifications"]["envelope"]
    bounds = shape["webhook_delivery_attempt"]
    with conformance("notification.envelope") as cf:
        seen = [n for n in receiver.notifications() if n["path"] != "/hook/test-event"]
        cf.check("some", len(seen) > 0, "no notification captured in this session")
        for n in seen:
            env = n["envelope"]
            if env is None:
                cf.check("json", False, f"a POST to {n['path']} is not JSON")
                continue
            cf.schema(env, shape["schema"])
            att = env.get("webhook_delivery_attempt")
            if isinstance(att, int):
                cf.check("webhook_delivery_attempt:range", bounds["minimum"] <= att <= bounds["maximum"],
                         f"webhook_delivery_attempt {att}")
            cf.check("specversion", env.get("specversion") == "1.0", f"specversion {env.get('specversion')!r}")


def test_every_signature(receiver, emulator, conformance):
    """The main destination's notifications are signed with its secret (HMAC-SHA256, raw bytes)."""
    with conformance("notification.signature") as cf:
        secret = emulator.destinations[0]["webhook_secret"]
        main = receiver.notifications("/hook/main")
        bad = [n["envelope"].get("id") for n in main if not signature_ok(n["raw"], n["headers"], secret)]
        cf.check("hmac-sha256", not bad, f"{len(bad)} of {len(main)} notifications with a bad signature: {bad[:5]}")


def test_known_difference_tags_name_known_checks():
    unknown = [cid for cid in known_differences()
               if not any(cid == s or cid.startswith(s + ":") for s in SCOPES)]
    assert not unknown, f"conformance tags in tests/nylas-emulator/README.md that name no check: {unknown}"
