"""Schemathesis hooks for the contract suite: the two rules openapi.yaml
states in prose because OpenAPI and JSON Schema cannot state them.

1. Byte saves and JSON saves.

A save (POST /{type}/{id}/versions) takes two kinds of body on one path:
a JSON envelope that carries the type's fields itself, or bytes, whose
type fields are then query parameters. OpenAPI ties parameters to the
operation, not to a media type, so the spec marks those query parameters
optional and says that a byte save needs the type's required ones and
that a JSON save ignores the query. These hooks keep generated cases to
what the schema classifies correctly:

- a byte save is given the type's required fields in its query when it
  lacks them (a plain valid value of the field's type), so that a case
  meant to be valid is valid;
- a JSON save whose invalid part is only its query is dropped: the server
  ignores that query by design, so it cannot be "rejected".

2. Integer literals. The server reads JSON integers as signed 64-bit
numbers and refuses a literal past that with 400 ("too big integer"),
while a number written with a fraction or exponent may be any double.
JSON Schema compares numbers by value (1e20 equals 100000000000000000000),
so no schema can allow one and not the other. A case generated as valid
whose JSON (body, or a JSON query parameter) holds such a literal is
dropped.

3. Dependencies. A dependency must name a resource (and version) that
exists: the server answers 400 naming `dependencies[i]` otherwise, as the
spec says. A schema cannot know which resources exist, so in a case
generated as valid (a save, a batch's saves, a tree's inline children, a
byte save's `dependencies` query) the dependencies are pointed at one
resource, dictionary/contract-dependency, unpinned, which the hook saves
again (an idempotent save: 200 when it is there) before such a case is
sent, since the fuzzer may delete anything it finds; the case stays valid
by the schema.

4. Byte lengths. Ids are bounded at 200 bytes of UTF-8 and namespaces at
64, as the spec says; JSON Schema's maxLength counts characters, so the
spec's maxLength is the same number and a string of fewer characters can
still be too long. A case generated as valid whose body or path holds an
id or a namespace past its byte bound is dropped.

Nothing else is filtered or changed. The required fields are read from
the spec (the JSON envelope's `required`, less `content`), so the hooks
follow openapi.yaml as it changes."""
import json
import os
import re
import urllib.request

import schemathesis
import yaml
from schemathesis.core.parameters import ParameterLocation


def _describe_lambdas_safely():
    """CPython 3.11.7 (this machine's) can raise SystemError("AST
    constructor recursion depth mismatch") from ast.parse in a worker
    thread. Hypothesis parses source only to describe a lambda in a
    strategy's repr, and that error ended one CI run in Schemathesis's
    coverage phase with no case failed. A lambda it cannot describe is
    named "lambda: <unknown>", as Hypothesis names one whose source it
    cannot find; nothing the tests check depends on the name."""
    from hypothesis.internal import lambda_sources

    describe = lambda_sources.lambda_description

    def described(f):
        try:
            return describe(f)
        except SystemError:
            return "lambda: <unknown>"

    lambda_sources.lambda_description = described


_describe_lambdas_safely()


SAVE_PATH = re.compile(r"^/([a-z]+)/\{id\}/versions$")
FILL = {"string": "x", "integer": "1", "number": "1", "boolean": "true"}


def _load_required():
    spec_path = os.environ.get("STRATA_CONTRACT_SPEC")
    if not spec_path:
        raise RuntimeError("STRATA_CONTRACT_SPEC is not set")
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]
    out = {}
    for path, item in spec["paths"].items():
        m = SAVE_PATH.match(path)
        if not m or "post" not in item:
            continue
        op = item["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        env = schemas[ref.rsplit("/", 1)[1]]
        params = {p["name"]: p for p in op.get("parameters", []) if "name" in p}
        fill = {}
        for name in env.get("required", []):
            if name == "content":
                continue
            p = params.get(name)
            if p is None:
                raise RuntimeError(f"{path}: required field {name} has no query parameter")
            kind = p.get("schema", {}).get("type", "string")
            fill[name] = FILL.get(kind, "x")
        out[path] = fill
    return out


REQUIRED = _load_required()


def _is_json(media_type):
    return bool(media_type) and (media_type.split(";")[0].strip() == "application/json")


def _is_save(case):
    return case.method.upper() == "POST" and case.path in REQUIRED


INT64 = (-(2**63), 2**63 - 1)


def _has_big_int(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64[0] <= value <= INT64[1]
    if isinstance(value, dict):
        return any(_has_big_int(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_big_int(v) for v in value)
    return False


BYTE_BOUNDS = {"namespace": 64, "id": 200}
PATH_ID_PARAMS = ("id", "master", "child")


def _utf8_len(s):
    return len(s.encode("utf-8", "surrogatepass"))


def _past_byte_bound(value):
    """Whether a JSON value holds an id or a namespace past its byte bound."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str) and k in BYTE_BOUNDS and _utf8_len(v) > BYTE_BOUNDS[k]:
                return True
            if _past_byte_bound(v):
                return True
    elif isinstance(value, (list, tuple)):
        return any(_past_byte_bound(v) for v in value)
    return False


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None:
        return True
    if not meta.generation.mode.is_negative:
        body = case.body if _is_json(case.media_type) else None
        if _has_big_int(body) or _has_big_int(list((case.query or {}).values())):
            return False
        if _past_byte_bound(body):
            return False
        path = case.path_parameters or {}
        if any(isinstance(path.get(p), str) and _utf8_len(path[p]) > BYTE_BOUNDS["id"]
               for p in PATH_ID_PARAMS):
            return False
    if not _is_save(case) or not _is_json(case.media_type):
        return True
    if meta.is_negative_at(ParameterLocation.QUERY) and not any(
        meta.is_negative_at(loc)
        for loc in (ParameterLocation.BODY, ParameterLocation.PATH, ParameterLocation.HEADER)
    ):
        return False
    return True


SEEDED_DEPENDENCY = {"type": "dictionary", "id": "contract-dependency"}


def _ensure_dependency():
    """Saves the dependency target (again): 201 once, then 200, never a new version."""
    url = os.environ["STRATA_CONTRACT_URL"] + "/dictionary/contract-dependency/versions"
    body = json.dumps({"content": {"for": "contract tests"}, "word": "dependency",
                       "provider": "contract"}).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer "
                                          + os.environ["STRATA_CONTRACT_TOKEN"]})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def _point_dependencies(envelope):
    """Points a valid envelope's dependencies at the kept-alive resource."""
    deps = envelope.get("dependencies") if isinstance(envelope, dict) else None
    if not isinstance(deps, list) or not deps:
        return False
    envelope["dependencies"] = [dict(SEEDED_DEPENDENCY)]  # a resource twice is refused
    return True


def _valid(case):
    return case.meta is not None and not case.meta.generation.mode.is_negative


@schemathesis.hook
def map_case(context, case):
    if _valid(case) and _is_json(case.media_type) and case.method.upper() == "POST":
        body = case.body
        changed = False
        if _is_save(case):
            changed = _point_dependencies(body)
        elif case.path == "/batch" and isinstance(body, dict):
            for op in body.get("operations") or []:
                changed |= _point_dependencies(op)
        elif case.path == "/trees" and isinstance(body, dict):
            for child in body.get("children") or []:
                changed |= _point_dependencies(child)
        elif case.path == "/trees/{master}/children":
            changed = _point_dependencies(body)
        if changed:
            _ensure_dependency()
            case.meta.mark_dirty(ParameterLocation.BODY)
        return case
    if _valid(case) and _is_save(case) and (case.query or {}).get("dependencies"):
        query = dict(case.query)
        query["dependencies"] = "dictionary:contract-dependency"
        case.query = query
        _ensure_dependency()
        case.meta.mark_dirty(ParameterLocation.QUERY)
    if not _is_save(case) or case.media_type is None or _is_json(case.media_type):
        return case
    query = dict(case.query or {})
    changed = False
    for name, value in REQUIRED[case.path].items():
        if name not in query:
            query[name] = value
            changed = True
    if changed:
        case.query = query
        if case.meta is not None:
            case.meta.mark_dirty(ParameterLocation.QUERY)
    return case


@schemathesis.hook
def after_call(context, case, response):
    """A 206 carries a slice of the representation with the media type of
    the whole (RFC 9110 section 15.3.7): the first 100 bytes of a JSON
    document are not JSON, and openapi.yaml describes the 206 body as
    bytes. Schemathesis would parse it by its Content-Type, so the slice
    is handed to the checks as the bytes it is."""
    if response.status_code == 206:
        response.headers["content-type"] = ["application/octet-stream"]
