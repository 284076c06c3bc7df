#!/usr/bin/env python3
"""Contract suite 2a: a Python client generated from openapi.yaml by
openapi-python-client, and a round trip through the real binary that uses
only the generated code (its functions, models and File type).

Generation is a Check: any generator warning fails it, but one. The
generator cannot send text/plain request bodies (upstream issue 542), so
it leaves the corpus save's text/plain variant out of the client, says so,
and the client saves corpora as JSON; that warning, for that operation
only, is expected. Generation also goes through one template fix: in an
operation with several body media types the generated code picks the body
with isinstance() against the union's type hint, which raises TypeError
when the union holds list[...] (a JSON body that may be an array); the fix
makes it check the runtime types instead.

Every step of the round trip is one Check; the last line is

    NN%: Checks: N, Failures: F, Errors: E

Usage: run_python_client.py BINARY"""
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from strata_server import ServerError, StrataServer  # noqa: E402

SPEC = os.path.join(ROOT, "openapi.yaml")
GEN_DIR = os.path.join(ROOT, ".cache", "contract-gen", "python")
PACKAGE = "strata_client"
ALLOWED_WARNINGS = {("POST /corpus/{id}/versions", "Unsupported content type text/plain")}
TEMPLATE_LINE = ("    if isinstance(body, {{body.prop.get_type_string(no_optional=True) "
                 "| as_unembedded_code }}):")
TEMPLATE_FIX = """{% macro body_runtime_types(prop) -%}
{%- if prop.inner_properties is defined -%}
({%- for inner in prop.inner_properties -%}
{%- set t = inner.get_instance_type_string() | as_unembedded_code -%}
{{ "type(None)" if t == "None" else t }}, {% endfor -%})
{%- else -%}
{{ prop.get_instance_type_string() | as_unembedded_code }}
{%- endif -%}
{%- endmacro %}
"""


class Steps:
    def __init__(self):
        self.n = self.failed = self.errors = 0

    def check(self, name, fn):
        self.n += 1
        try:
            detail = fn()
        except AssertionError as e:
            self.failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            return None
        except Exception:
            self.errors += 1
            print(f"ERROR {name}:\n{traceback.format_exc()}", flush=True)
            return None
        print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)
        return True

    def line(self):
        ok = self.n - self.failed - self.errors
        pct = int(100 * ok / self.n) if self.n else 0
        return f"{pct}%: Checks: {self.n}, Failures: {self.failed}, Errors: {self.errors}"


def patched_templates(dest):
    import openapi_python_client
    src = os.path.join(os.path.dirname(openapi_python_client.__file__), "templates",
                       "endpoint_module.py.jinja")
    text = open(src).read()
    assert text.count(TEMPLATE_LINE) == 1, "openapi-python-client's endpoint template changed"
    text = TEMPLATE_FIX + text.replace(
        TEMPLATE_LINE, "    if isinstance(body, {{ body_runtime_types(body.prop) }}):")
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "endpoint_module.py.jinja"), "w") as f:
        f.write(text)


def unexpected_warnings(output):
    """Generator warnings other than the allowed ones, as text blocks."""
    if "Warning(s) encountered" not in output and "WARNING" not in output:
        return []
    start = output.find("Warning(s) encountered")
    end = output.find("If you believe this was a mistake")
    section = output[start:end if end > start else len(output)]
    section = section.split("\n", 1)[1] if "\n" in section else ""
    blocks = re.split(r"\n(?=WARNING |Unable to |Cannot |Failure |Could not )", "\n" + section)
    bad = []
    for block in blocks:
        lines = [ln for ln in block.strip().splitlines() if ln.strip()]
        if not lines:
            continue
        m = re.match(r"WARNING parsing (\S+ \S+) within", lines[0])
        message = lines[1].strip() if len(lines) > 1 else ""
        if m and (m.group(1), message) in ALLOWED_WARNINGS:
            print(f"expected generator warning: {m.group(1)}: {message}")
            continue
        bad.append("\n".join(lines[:12]))
    return bad


def generate():
    venv_bin = os.path.dirname(sys.executable)
    tool = shutil.which("openapi-python-client", path=venv_bin)
    assert tool, f"no openapi-python-client beside {sys.executable} (run scripts/contract)"
    tmpl = tempfile.mkdtemp(prefix="strata-opc-templates-")
    patched_templates(tmpl)
    out_dir = os.path.join(GEN_DIR, PACKAGE)
    os.makedirs(GEN_DIR, exist_ok=True)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(
        [tool, "generate", "--path", SPEC, "--meta", "none", "--output-path", out_dir,
         "--overwrite", "--config", os.path.join(HERE, "openapi-python-client.yaml"),
         "--custom-template-path", tmpl],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    shutil.rmtree(tmpl, ignore_errors=True)
    assert proc.returncode == 0, f"generator exited {proc.returncode}:\n{proc.stdout[-3000:]}"
    bad = unexpected_warnings(proc.stdout)
    assert not bad, "generator warnings:\n" + "\n---\n".join(bad)
    models = len([f for f in os.listdir(os.path.join(out_dir, "models")) if f.endswith(".py")])
    apis = sum(len([f for f in fs if f.endswith(".py") and f != "__init__.py"])
               for _, _, fs in os.walk(os.path.join(out_dir, "api")))
    return f"{apis} operations, {models - 1} models"


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    s = Steps()
    if not s.check("generate the Python client (no unexpected warnings)", generate):
        print(s.line())
        return 1
    sys.path.insert(0, GEN_DIR)
    try:
        with StrataServer(binary) as srv:
            roundtrip(s, srv.url, srv.token)
            alive = srv.alive()
    except ServerError as e:
        print(f"ERROR server: {e}")
        s.n += 1
        s.errors += 1
        print(s.line())
        return 1
    s.check("the server ran throughout and exited cleanly",
            lambda: None if alive and srv.exit_code == 0 else (_ for _ in ()).throw(
                AssertionError(f"alive={alive}, exit code {srv.exit_code}: {srv.log_tail()}")))
    print(s.line())
    return 0 if s.failed == 0 and s.errors == 0 else 1


def roundtrip(s, base_url, token):
    c = importlib.import_module(PACKAGE)

    class api:  # the generated modules of one tag, imported on first use
        def __init__(self, tag):
            self.tag = tag

        def __getattr__(self, name):
            return importlib.import_module(f"{PACKAGE}.api.{self.tag}.{name}")

    M = importlib.import_module(f"{PACKAGE}.models")
    T = importlib.import_module(f"{PACKAGE}.types")
    versions, cache, trees, maint, system = (api("versions"), api("cache"), api("trees"),
                                             api("maintenance"), api("system"))
    client = c.AuthenticatedClient(base_url=base_url, token=token,
                                   raise_on_unexpected_status=True, timeout=60)
    st = {}

    def status(resp, *want):
        assert int(resp.status_code) in want, f"status {int(resp.status_code)}, not {want}: {resp.content[:300]!r}"

    # ---- saves -------------------------------------------------------------
    def json_save():
        from importlib import import_module
        save = import_module(f"{PACKAGE}.api.versions.save_dictionary_version")
        body = M.DictionarySave(content=M.JsonObject.from_dict({"senses": ["a fruit"]}),
                                word="apple", provider="wiktionary", language="en",
                                tags=["fruit"])
        r = save.sync_detailed(id="apple", client=client, body=body)
        status(r, 201)
        rec = r.parsed
        assert isinstance(rec, M.Record), type(rec)
        assert rec.word == "apple" and rec.provider == "wiktionary", rec.to_dict()
        assert rec.version_info.version == "1.0.0", rec.version_info.version
        assert r.headers["Location"] == "/dictionary/apple/versions/1.0.0", r.headers
        assert r.headers["ETag"] == f'"{rec.version_info.data_hash}"'
        st["apple_hash"] = rec.version_info.data_hash
        return f"{rec.resource_type.value}/{rec.resource_id} {rec.version_info.version}"

    def json_save_again_and_bump():
        save = importlib.import_module(f"{PACKAGE}.api.versions.save_dictionary_version")
        same = M.DictionarySave(content=M.JsonObject.from_dict({"senses": ["a fruit"]}),
                                word="apple", provider="wiktionary", language="en",
                                tags=["fruit"])
        r = save.sync_detailed(id="apple", client=client, body=same)
        status(r, 200)
        assert r.parsed.version_info.version == "1.0.0"
        for senses, bump in ((["a fruit", "a tree"], None), (["a fruit", "a tree", "a firm"], M.Bump.MINOR)):
            kw = {"bump": bump} if bump else {}
            body = M.DictionarySave(content=M.JsonObject.from_dict({"senses": senses}),
                                    word="apple", provider="wiktionary", **kw)
            r = save.sync_detailed(id="apple", client=client, body=body)
            status(r, 201)
        assert r.parsed.version_info.version == "1.1.0", r.parsed.version_info.version
        return "same content 200, then 1.0.1 and 1.1.0"

    def octet_save():
        save = importlib.import_module(f"{PACKAGE}.api.versions.save_dictionary_version")
        data = b"pear: a sweet fruit\n\x00\x01"
        r = save.sync_detailed(id="pear", client=client,
                               body=T.File(payload=io.BytesIO(data), mime_type="application/octet-stream"),
                               word="pear", provider="wiktionary", language="en", tags="fruit,sweet")
        status(r, 201)
        rec = r.parsed
        assert rec.word == "pear" and rec.tags == ["fruit", "sweet"], rec.to_dict()
        assert rec.content_location.content_type == "application/octet-stream"
        assert rec.content_location.size_bytes == len(data)
        st["pear_bytes"] = data
        return f"{len(data)} bytes, fields as query parameters"

    def octet_save_large():
        save = importlib.import_module(f"{PACKAGE}.api.versions.save_literature_version")
        text = b"To be, or not to be, that is the question:\n" * 3000
        r = save.sync_detailed(id="hamlet", client=client,
                               body=T.File(payload=io.BytesIO(text)), title="Hamlet",
                               authors="William Shakespeare", source="gutenberg")
        status(r, 201)
        loc = r.parsed.content_location
        assert loc.storage_type.value == "blob" and loc.compression.value == "zstd", loc.to_dict()
        st["hamlet"] = text
        return f"{len(text)} bytes stored as a {loc.compression.value} blob of {loc.size_compressed}"

    def corpus_save():
        save = importlib.import_module(f"{PACKAGE}.api.versions.save_corpus_version")
        for name, words in (("american", ["color", "honor", "center"]),
                            ("british", ["colour", "honour", "centre"]),
                            ("scots", ["ken", "bairn", "loch"])):
            body = M.CorpusSave(content=M.CorpusContent(words=words), corpus_type="language",
                                language="en")
            r = save.sync_detailed(id=name, client=client, body=body)
            status(r, 201)
            assert r.parsed.vocabulary_size == 3
        return "3 corpora"

    def semantic_trie_search():
        sem = importlib.import_module(f"{PACKAGE}.api.versions.save_semantic_version")
        trie = importlib.import_module(f"{PACKAGE}.api.versions.save_trie_version")
        Dep = M.Dependency
        r = sem.sync_detailed(id="en-embeddings", client=client, body=M.SemanticSave(
            content=M.JsonObject.from_dict({"vectors": [[0.1, 0.2]]}), corpus_id="american",
            corpus_version="1.0.0", model_name="minilm", embedding_dimension=2,
            dependencies=[Dep(type_=M.ResourceType.CORPUS, id="american", version="1.0.0")]))
        status(r, 201)
        r = trie.sync_detailed(id="en-trie", client=client, body=M.TrieSave(
            content=M.JsonObject.from_dict({"root": {}}), corpus_ids=["american"],
            node_count=1, max_depth=0,
            dependencies=[Dep(type_=M.ResourceType.CORPUS, id="american")]))
        status(r, 201)
        return "with dependencies on corpus/american"

    s.check("JSON save (dictionary, the type's fields in the envelope)", json_save)
    s.check("JSON save: same content answers 200; bump minor", json_save_again_and_bump)
    s.check("octet-stream save (type's fields as query parameters)", octet_save)
    s.check("octet-stream save of a large literature text", octet_save_large)
    s.check("JSON saves of corpora", corpus_save)
    s.check("JSON saves of a semantic index and a trie with dependencies", semantic_trie_search)

    # ---- reads -------------------------------------------------------------
    def latest():
        r = versions.get_latest.sync_detailed(type_=M.ResourceType.DICTIONARY, id="apple", client=client)
        status(r, 200)
        assert r.parsed.version_info.version == "1.1.0" and r.parsed.version_info.is_latest
        assert r.headers["ETag"] == f'"{r.parsed.version_info.data_hash}"'
        return r.parsed.version_info.version

    def list_with_cursor():
        lv = importlib.import_module(f"{PACKAGE}.api.versions.list_dictionary_versions")
        seen, cursor = [], T.UNSET
        for _ in range(5):
            r = lv.sync_detailed(id="apple", client=client, limit=1, cursor=cursor)
            status(r, 200)
            seen += [rec.version_info.version for rec in r.parsed.items]
            if not r.parsed.next_:
                break
            cursor = r.parsed.next_
        assert seen == ["1.1.0", "1.0.1", "1.0.0"], seen
        lr = versions.list_resources.sync_detailed(type_=M.ResourceType.DICTIONARY, client=client, limit=1)
        status(lr, 200)
        assert lr.parsed.next_ and lr.parsed.items[0].resource_id == "apple"
        r2 = versions.list_resources.sync_detailed(type_=M.ResourceType.DICTIONARY, client=client,
                                                   limit=1, cursor=lr.parsed.next_)
        assert [x.resource_id for x in r2.parsed.items] == ["pear"]
        return "versions " + ", ".join(seen) + "; resources apple, pear"

    def content_and_304():
        r = versions.get_content.sync_detailed(type_=M.ResourceType.DICTIONARY, id="pear",
                                               version="latest", client=client)
        status(r, 200)
        assert r.content == st["pear_bytes"], r.content
        etag = r.headers["ETag"]
        r2 = versions.get_content.sync_detailed(type_=M.ResourceType.DICTIONARY, id="pear",
                                                version="latest", client=client, if_none_match=etag)
        status(r2, 304)
        assert r2.content == b""
        return f"ETag {etag[:12]}...\""

    def content_zstd():
        r = versions.get_content.sync_detailed(type_=M.ResourceType.LITERATURE, id="hamlet",
                                               version="1.0.0", client=client, accept_encoding="zstd")
        status(r, 200)
        assert r.headers.get("Content-Encoding") == "zstd", r.headers
        assert r.headers.get("Vary") == "Accept-Encoding"
        # httpx undoes the coding (zstandard is installed): the bytes are the text
        assert r.content == st["hamlet"], len(r.content)
        head = versions.head_content.sync_detailed(type_=M.ResourceType.LITERATURE, id="hamlet",
                                                   version="1.0.0", client=client, accept_encoding="zstd")
        status(head, 200)
        return f"passed through as zstd, {r.headers.get('Content-Length')} bytes on the wire"

    s.check("latest record with its ETag", latest)
    s.check("list versions and resources page by page (cursor)", list_with_cursor)
    s.check("content, then 304 with If-None-Match", content_and_304)
    s.check("content with Accept-Encoding: zstd (and HEAD)", content_zstd)

    # ---- cache -------------------------------------------------------------
    def cache_put_get():
        r = cache.put_cache_entry.sync_detailed(ns="dictionary", key="apple", client=client,
                                                body=M.JsonObject.from_dict({"senses": 3}), ttl=60)
        status(r, 201)
        assert r.parsed.ttl_seconds == 60 and r.parsed.bytes_ > 0, r.parsed.to_dict()
        r = cache.put_cache_entry.sync_detailed(ns="sessions", key="s/1", client=client,
                                                body=T.File(payload=io.BytesIO(b"\x00bytes")))
        status(r, 201)
        r = cache.put_cache_entry.sync_detailed(ns="sessions", key="list", client=client, body=[1, 2, 3])
        status(r, 201)
        g = cache.get_cache_entry.sync_detailed(ns="dictionary", key="apple", client=client)
        status(g, 200)
        assert g.headers["X-Cache"] in ("L1", "L2") and g.headers["Content-Type"] == "application/json"
        assert g.content == b'{"senses": 3}' or g.content.replace(b" ", b"") == b'{"senses":3}', g.content
        g2 = cache.get_cache_entry.sync_detailed(ns="sessions", key="s/1", client=client)
        assert g2.content == b"\x00bytes" and g2.headers["Content-Type"] == "application/octet-stream"
        g3 = cache.get_cache_entry.sync_detailed(ns="dictionary", key="apple", client=client,
                                                 if_none_match=g.headers["ETag"])
        status(g3, 304)
        stats = cache.get_cache_namespace_stats.sync_detailed(ns="sessions", client=client)
        status(stats, 200)
        assert stats.parsed.l1.items >= 2
        return f"JSON object, array and bytes; X-Cache {g.headers['X-Cache']}; 304"

    def cache_delete():
        r = cache.delete_cache_entry.sync_detailed(ns="dictionary", key="apple", client=client)
        status(r, 200)
        assert r.parsed.deleted.value == 1 if hasattr(r.parsed.deleted, "value") else r.parsed.deleted == 1
        g = cache.get_cache_entry.sync_detailed(ns="dictionary", key="apple", client=client)
        status(g, 404)
        return "deleted 1, then 404"

    def cache_pattern():
        r = cache.invalidate_cache_pattern.sync_detailed(ns="sessions", client=client, pattern="*")
        status(r, 200)
        assert r.parsed.deleted == 2, r.parsed.to_dict()
        unknown = cache.get_cache_namespace_stats.sync_detailed(ns="nope", client=client)
        status(unknown, 404)
        assert isinstance(unknown.parsed, M.Problem) and unknown.parsed.status == 404
        return "2 keys under *; an unknown namespace is a 404 Problem"

    s.check("cache put (JSON, array, bytes) and get (with 304)", cache_put_get)
    s.check("cache delete", cache_delete)
    s.check("cache delete by pattern", cache_pattern)

    # ---- trees -------------------------------------------------------------
    def tree_create():
        body = M.TreeCreate(master="english", language="en", children=[
            "american", M.TreeChildById(id="british"),
            M.TreeChildWithWords(id="irish", words=["craic", "slainte"])])
        r = trees.create_tree.sync_detailed(client=client, body=body)
        status(r, 201)
        node = r.parsed
        assert node.is_master and {ch.id for ch in node.children} == {"american", "british", "irish"}
        assert r.headers["Location"] == "/trees/english"
        return f"{node.id} {node.version}, vocabulary {node.vocabulary_size}"

    def tree_attach_detach():
        r = trees.attach_tree_child.sync_detailed(master="english", client=client, body="scots")
        status(r, 201)
        assert "scots" in {ch.id for ch in r.parsed.children}
        r = trees.detach_tree_child.sync_detailed(master="english", child="irish", client=client)
        status(r, 200)
        assert {ch.id for ch in r.parsed.children} == {"american", "british", "scots"}
        kids = trees.list_tree_children.sync_detailed(master="english", client=client)
        status(kids, 200)
        assert len(kids.parsed.items) == 3
        return "attached scots, detached irish"

    def tree_vocabulary():
        words, cursor = [], T.UNSET
        for _ in range(20):
            r = trees.get_tree_vocabulary.sync_detailed(master="english", client=client, limit=4, cursor=cursor)
            status(r, 200)
            words += [it.word for it in r.parsed.items]
            if not r.parsed.next_:
                break
            cursor = r.parsed.next_
        assert words == sorted(set(["color", "honor", "center", "colour", "honour", "centre",
                                    "ken", "bairn", "loch"])), words
        g = trees.get_tree.sync_detailed(master="english", client=client, depth=0)
        status(g, 200)
        assert g.parsed.children_truncated is True
        return f"{len(words)} words over pages of 4"

    s.check("tree create", tree_create)
    s.check("tree attach and detach a child", tree_attach_detach)
    s.check("tree vocabulary, page by page", tree_vocabulary)

    # ---- dependents, rebuild -----------------------------------------------
    def dependents():
        r = versions.list_dependents.sync_detailed(type_=M.ResourceType.CORPUS, id="american", client=client)
        status(r, 200)
        got = {(x.resource_type.value, x.resource_id) for x in r.parsed.items}
        assert {("semantic", "en-embeddings"), ("trie", "en-trie"), ("corpus", "english")} <= got, got
        return ", ".join(sorted("/".join(g) for g in got))

    def rebuild():
        r = versions.rebuild_dependents.sync_detailed(type_=M.ResourceType.CORPUS, id="american", client=client)
        status(r, 200)
        rep = r.parsed
        assert {x.id for x in rep.reaggregated} == {"english"}, rep.to_dict()
        assert {x.id for x in rep.marked_stale} == {"en-embeddings", "en-trie"}, rep.to_dict()
        t = versions.get_latest.sync_detailed(type_=M.ResourceType.TRIE, id="en-trie", client=client)
        assert t.parsed.stale is True and t.parsed.stale_reason.rebuild_of.id == "american"
        return " then ".join(f"{x.action.value} {x.id}" for x in rep.order)

    s.check("dependents", dependents)
    s.check("rebuild", rebuild)

    # ---- batch, maintenance --------------------------------------------------
    def batch():
        ops = [M.BatchDictionarySave(op="save", type_="dictionary", id="fig",
                                     content=M.JsonObject.from_dict({"senses": ["a fruit"]}),
                                     word="fig", provider="wiktionary"),
               M.BatchDelete(op="delete", type_=M.ResourceType.DICTIONARY, id="apple", version="1.0.0")]
        r = maint.run_batch.sync_detailed(client=client, body=M.BatchRequest(operations=ops))
        status(r, 200)
        res = r.parsed.results
        assert [(x.op.value, x.status.value) for x in res] == [("save", 201), ("delete", 204)], r.content
        gone = versions.get_version.sync_detailed(type_=M.ResourceType.DICTIONARY, id="apple",
                                                  version="1.0.0", client=client)
        status(gone, 410)
        return "save fig 201, delete apple 1.0.0 204 (then 410)"

    def cleanup_dry():
        r = maint.cleanup_resource.sync_detailed(type_=M.ResourceType.DICTIONARY, id="apple",
                                                 client=client, keep=1, dry_run=True)
        status(r, 200)
        assert r.parsed.dry_run and [v.version for v in r.parsed.removed] == ["1.0.1"], r.parsed.to_dict()
        still = versions.get_version.sync_detailed(type_=M.ResourceType.DICTIONARY, id="apple",
                                                   version="1.0.1", client=client)
        status(still, 200)
        a = maint.cleanup_all.sync_detailed(client=client, dry_run=True)
        status(a, 200)
        assert a.parsed.dry_run and "dictionary" in a.parsed.types.additional_properties
        return "would remove apple 1.0.1; nothing removed"

    def gc_dry():
        r = maint.collect_blobs.sync_detailed(client=client, dry_run=True)
        status(r, 200)
        assert r.parsed.dry_run and r.parsed.blobs_scanned >= 2 and r.parsed.blobs_removed == 0
        return f"{r.parsed.blobs_scanned} blobs scanned"

    s.check("batch (save and delete)", batch)
    s.check("cleanup dry runs (one resource, all)", cleanup_dry)
    s.check("gc dry run", gc_dry)

    # ---- system ----------------------------------------------------------------
    def system_ops():
        h = system.get_health.sync_detailed(client=client)
        status(h, 200)
        assert h.parsed.status == "ok" and h.headers["X-Request-Id"]
        o = system.get_openapi.sync_detailed(client=client)
        status(o, 200)
        assert o.headers["Content-Type"] == "application/yaml"
        assert isinstance(o.parsed, str) and o.parsed.startswith("openapi: 3.1")
        with open(SPEC, "rb") as f:
            assert o.content == f.read(), "the served openapi.yaml is not this tree's (rebuild the binary)"
        m = system.get_metrics.sync_detailed(client=client)
        status(m, 200)
        assert "strata_http_requests_total" in m.parsed
        return "health, openapi.yaml (the same bytes as this tree's), metrics"

    s.check("system: health, the served openapi.yaml, metrics", system_ops)


if __name__ == "__main__":
    sys.exit(main())
