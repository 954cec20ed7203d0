"""Schema checks against spec_subset.json, and the known-differences bookkeeping.

A check id names one thing that can differ from Nylas: `<scope>:<field path>:<kind>` for schema
checks (kind: type, required, enum, anyOf), `<scope>:<behaviour>` for behaviours. A difference
is tolerated only when tests/nylas-emulator/README.md, section "## Where it knowingly differs
from Nylas", has a bullet tagged `conformance:<check-id>`.
"""
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPEC_PATH = os.path.join(HERE, "spec_subset.json")
README = os.path.join(ROOT, "tests", "nylas-emulator", "README.md")
SECTION = "## Where it knowingly differs from Nylas"
TAG = re.compile(r"`?conformance:([A-Za-z0-9_.\[\]:/-]+)`?")


def load_spec():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return json.load(f)


def known_differences(path=README):
    """{check_id: reason} from the README section's bullets tagged conformance:<id>."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find(SECTION)
    if start < 0:
        return {}
    body = text[start + len(SECTION):]
    nxt = re.search(r"^## ", body, re.M)
    if nxt:
        body = body[:nxt.start()]
    known = {}
    bullets = re.split(r"^\s*- ", body, flags=re.M)[1:]  # nested bullets are bullets of their own
    for bullet in bullets:
        flat = " ".join(bullet.split())
        reason = TAG.sub("", flat).strip(" ()[];,")
        for cid in TAG.findall(flat):
            known[cid.rstrip(".,;")] = reason
    return known


JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def type_name(v):
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if JSON_TYPES[name](v):
            return name
    return type(v).__name__


def validate(value, schema, path=""):
    """Problems of `value` against a simplified schema: [(field_path, kind, message)].

    Field paths use `[]` for any array element, so one id covers every item of a list.
    Unknown extra fields are allowed (Nylas adds fields; clients must ignore them).
    """
    problems = []
    types = schema.get("type")
    if types and not any(JSON_TYPES.get(t, lambda v: True)(value) for t in types):
        problems.append((path, "type", f"{path or '<root>'}: {type_name(value)} {json.dumps(value)[:80]}, spec says {'|'.join(types)}"))
        return problems
    if value is None:
        return problems
    if "enum" in schema and isinstance(value, (str, int)) and not isinstance(value, bool):
        if value not in schema["enum"]:
            problems.append((path, "enum", f"{path}: {value!r} not in {schema['enum']}"))
    if isinstance(value, dict):
        for req in schema.get("required", []):
            if req not in value:
                sub = f"{path}.{req}" if path else req
                problems.append((sub, "required", f"{sub}: required by the spec, missing"))
        for key, sub_schema in (schema.get("properties") or {}).items():
            if key in value:
                sub = f"{path}.{key}" if path else key
                problems += validate(value[key], sub_schema, sub)
    if isinstance(value, list) and "items" in schema:
        for item in value:
            for p in validate(item, schema["items"], f"{path}[]"):
                if p not in problems:
                    problems.append(p)
    if "anyOf" in schema:
        branches = [validate(value, b, path) for b in schema["anyOf"]]
        if branches and all(branches):
            problems.append((path, "anyOf", f"{path}: matches none of the spec's {len(branches)} variants: "
                             + "; ".join(b[0][2] for b in branches)))
    return problems


class Outcome(Exception):
    """Raised inside a test to stop at a failed step (recorded as a problem)."""


class Conformance:
    """Collects the differences one test observes and decides pass / xfail / fail."""

    def __init__(self, scope, known):
        self.scope = scope
        self.known = known
        self.problems = {}  # check id -> message
        self.observed = set()  # check ids evaluated (pass or fail)
        self.current = "request"
        self.aborted = False

    def cid(self, name):
        return f"{self.scope}:{name}"

    def step(self, name):
        """Names what the test is doing, so an exception becomes problem `<scope>:<name>`."""
        self.current = name
        return self

    def check(self, name, ok, message=""):
        cid = self.cid(name)
        self.observed.add(cid)
        if not ok and cid not in self.problems:
            self.problems[cid] = message or name
        return ok

    def schema(self, value, schema, prefix=""):
        """Validate; each problem becomes `<scope>:<prefix><path>:<kind>`."""
        for path, kind, msg in validate(value, schema):
            name = f"{prefix}{path or '<root>'}:{kind}"
            self.check(name, False, msg)

    def owned(self):
        """Known differences that belong to this test's scope."""
        return {cid: r for cid, r in self.known.items()
                if cid == self.scope or cid.startswith(self.scope + ":")}

    def verdict(self):
        """(status, text): status is 'pass', 'xfail' or 'fail'."""
        owned = self.owned()
        untolerated = {c: m for c, m in self.problems.items() if c not in owned}
        tolerated = {c: m for c, m in self.problems.items() if c in owned}
        stale = [] if self.aborted else [c for c in owned if c not in self.problems and self._could_see(c)]
        if untolerated or stale:
            lines = [f"{c}: {m}" for c, m in sorted(untolerated.items())]
            lines += [f"{c}: listed as a known difference in tests/nylas-emulator/README.md but the check "
                      f"now passes: remove the stale entry" for c in sorted(stale)]
            if tolerated:
                lines.append(f"(also {len(tolerated)} tolerated: {', '.join(sorted(tolerated))})")
            return "fail", "\n".join(lines)
        if tolerated:
            return "xfail", "; ".join(f"{c} ({owned[c]})" for c in sorted(tolerated))
        return "pass", ""

    def _could_see(self, cid):
        # The test ran to its end and did not see the difference: the entry is stale.
        return True
