"""Seeds a fresh strata server with data of every kind, so that contract
tests reach the operations' real work and not only their 404s: several
resources of every type with the type's required fields, several
versions, blob-sized contents (stored compressed), a deleted version, a
corpus tree with nested masters, dependencies and stale dependents, and
cache entries in configured and client-created namespaces.

The ids used here are the ones the examples in openapi.yaml name."""
import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request


class SeedError(RuntimeError):
    pass


def request(base, method, path, body=None, ctype=None, headers=None, expect=(200, 201, 204)):
    data = None
    hdrs = dict(headers or {})
    token = os.environ.get("STRATA_CONTRACT_TOKEN")
    if token:
        hdrs.setdefault("Authorization", f"Bearer {token}")
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        if ctype:
            hdrs["Content-Type"] = ctype
    req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status not in expect:
        raise SeedError(f"{method} {path}: {status} {raw[:300]!r}")
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def words(n, seed, prefix=""):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = set()
    while len(out) < n:
        out.add(prefix + "".join(rng.choice(letters) for _ in range(rng.randint(3, 12))))
    return sorted(out)


def save(base, type_, id_, envelope, expect=(200, 201)):
    return request(base, "POST", f"/{type_}/{urllib.parse.quote(id_, safe='')}/versions",
                   envelope, expect=expect)[1]


def save_bytes(base, type_, id_, data, ctype, fields, expect=(200, 201)):
    q = urllib.parse.urlencode(fields)
    return request(base, "POST", f"/{type_}/{urllib.parse.quote(id_, safe='')}/versions?{q}",
                   data, ctype=ctype, expect=expect)[1]


def seed(base):
    """Returns a summary of what was created (counts per kind)."""
    made = {}

    def count(kind):
        made[kind] = made.get(kind, 0) + 1

    # ---- dictionary: versions, bumps, a byte save, a blob, a deleted version
    dict_fields = {"word": "apple", "provider": "wiktionary", "language": "en"}
    for senses, bump in ((["a fruit"], None), (["a fruit", "a tree"], None),
                         (["a fruit", "a tree", "a company"], "minor")):
        env = {"content": {"senses": senses}, "tags": ["fruit", "common"], **dict_fields}
        if bump:
            env["bump"] = bump
        save(base, "dictionary", "apple", env)
        count("dictionary versions")
    save_bytes(base, "dictionary", "pear", b"pear: a sweet fruit\n", "application/octet-stream",
               {"word": "pear", "provider": "wiktionary", "tags": "fruit"})
    save(base, "dictionary", "pear", {"content": {"senses": ["a fruit"]}, "word": "pear",
                                      "provider": "wiktionary", "tags": ["fruit"]})
    count("dictionary versions")
    count("dictionary versions")
    big = {"entries": [{"w": w, "senses": [w * 3] * 4} for w in words(2500, 1)]}
    save(base, "dictionary", "lexicon", {"content": big, "word": "lexicon", "provider": "bulk",
                                         "metadata": {"source": "generated"}})
    count("dictionary versions (blob)")
    for n in range(3):
        save(base, "dictionary", "quince", {"content": {"senses": ["fruit"] * (n + 1)},
                                            "word": "quince", "provider": "wiktionary"})
    request(base, "DELETE", "/dictionary/quince/versions/1.0.0", expect=(204,))
    count("deleted versions")
    for w in ("banana", "cherry", "damson"):
        save(base, "dictionary", w, {"content": {"senses": [w]}, "word": w,
                                     "provider": "wiktionary", "namespace": "fruit"})
        count("dictionary versions")

    # ---- corpora: word lists as text, a blob-sized compressed one, a tree
    corpus_q = {"corpus_type": "language", "language": "en"}
    for i, name in enumerate(("american", "british", "canadian")):
        text = "\n".join(words(300, 10 + i) + ["colour" if name != "american" else "color"])
        save_bytes(base, "corpus", name, text.encode(), "text/plain", corpus_q)
        count("corpora")
    save_bytes(base, "corpus", "american", ("\n".join(words(320, 10) + ["color"])).encode(),
               "text/plain", corpus_q)
    count("corpus versions")
    save(base, "corpus", "wordlist-large", {"content": {"words": words(12000, 99)},
                                            "corpus_type": "base", "language": "en"})
    count("corpora (blob, zstd)")
    request(base, "POST", "/trees", {
        "master": "english", "language": "en",
        "children": ["american", {"id": "british"},
                     {"id": "scots", "words": ["ken", "bairn", "loch"],
                      "frequencies": {"ken": 3}}]})
    count("tree masters")
    request(base, "POST", "/trees/english/children", json.dumps("canadian"), ctype="application/json")
    request(base, "POST", "/trees", {"master": "anglosphere", "language": "en",
                                     "children": ["english"]})
    count("tree masters")
    save_bytes(base, "corpus", "irish", b"craic\nsl\xc3\xa1inte\n", "text/plain", corpus_q)
    count("corpora")

    # ---- semantic (always a blob), literature (compressed), trie, search
    save(base, "semantic", "en-embeddings", {
        "content": {"vectors": [[0.1, 0.2, 0.3]] * 8, "ids": list(range(8))},
        "corpus_id": "american", "corpus_version": "1.0.0", "model_name": "minilm",
        "embedding_dimension": 3, "index_type": "flat", "num_vectors": 8,
        "dependencies": [{"type": "corpus", "id": "american", "version": "1.0.0"}]})
    count("semantic indexes")
    hamlet = ("To be, or not to be, that is the question:\n" * 3000).encode()
    save_bytes(base, "literature", "hamlet", hamlet, "text/plain",
               {"title": "Hamlet", "authors": "William Shakespeare", "source": "gutenberg",
                "publication_year": "1603", "language": "en"})
    count("literature (blob, zstd)")
    save(base, "literature", "sonnets", {"content": {"lines": ["Shall I compare thee"]},
                                         "title": "Sonnets", "authors": ["William Shakespeare"],
                                         "source": "gutenberg"})
    count("literature")
    save(base, "trie", "en-trie", {
        "content": {"root": {"a": {"p": {}}}}, "corpus_ids": ["american", "british"],
        "node_count": 1234, "max_depth": 12, "supports_fuzzy": True,
        "dependencies": [{"type": "corpus", "id": "american"}]})
    count("tries")
    save(base, "search", "en-search", {
        "content": {"weights": {"trie": 0.6, "semantic": 0.4}}, "corpus_id": "english",
        "trie_index_id": "en-trie", "semantic_index_id": "en-embeddings",
        "dependencies": [{"type": "trie", "id": "en-trie"},
                         {"type": "semantic", "id": "en-embeddings"}]})
    count("search indexes")
    # a new corpus version marks the trie, the index and the search stale
    save_bytes(base, "corpus", "american", ("\n".join(words(330, 10) + ["color"])).encode(),
               "text/plain", corpus_q)
    count("corpus versions")

    # ---- cache: configured and client-created namespaces, TTLs, types
    request(base, "PUT", "/cache/dictionary/apple?ttl=3600", {"senses": 3})
    request(base, "PUT", "/cache/dictionary/pear", b"\x00\x01binary", "application/octet-stream")
    request(base, "PUT", "/cache/search/q%3Dapple", "apple\npear\n", "text/plain")
    for i in range(3):
        request(base, "PUT", f"/cache/sessions/s{i}", {"user": i},
                headers={"Cache-Control": "max-age=600"})
        count("cache entries")
    count("cache entries")
    count("cache entries")
    count("cache entries")
    return made


if __name__ == "__main__":
    import sys
    print(json.dumps(seed(sys.argv[1]), indent=1))
