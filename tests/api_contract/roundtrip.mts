// Contract suite 2b: a round trip through the real binary using only a
// TypeScript client generated from openapi.yaml: openapi-typescript's
// types (./schema.js, generated next to this file) and openapi-fetch.
// Compiled with tsc --strict, so the generated types must fit every call.
// Each step is one Check; the last line is
//   NN%: Checks: N, Failures: F, Errors: E
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

declare const process: { argv: string[]; exit(code: number): never };

type Record_ = components["schemas"]["Record"];
const base = process.argv[2];
const token = process.argv[3]; // access control is on: every request carries it
const client = createClient<paths>({
  baseUrl: base,
  headers: { Authorization: `Bearer ${token}` },
});

let checks = 0;
let failures = 0;
let errors = 0;

class CheckFailed extends Error {}

function expect(cond: unknown, what: string): asserts cond {
  if (!cond) throw new CheckFailed(what);
}

async function step(name: string, fn: () => Promise<string | void>): Promise<void> {
  checks++;
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? ` (${detail})` : ""}`);
  } catch (e) {
    if (e instanceof CheckFailed) {
      failures++;
      console.log(`FAIL ${name}: ${e.message}`);
    } else {
      errors++;
      console.log(`ERROR ${name}: ${e instanceof Error ? e.stack : String(e)}`);
    }
  }
}

const identity = (b: unknown) => b as string;
// An error body is a Problem, or the HTTP library's text/html page (414).
const problemStatus = (e: unknown): number | undefined =>
  typeof e === "object" && e !== null && "status" in e ? Number((e as { status: unknown }).status) : undefined;
const state: { hamlet?: string; pearEtag?: string } = {};

await step("JSON save (dictionary)", async () => {
  const { data, response } = await client.POST("/dictionary/{id}/versions", {
    params: { path: { id: "apple" } },
    body: { content: { senses: ["a fruit"] }, word: "apple", provider: "wiktionary", tags: ["fruit"] },
  });
  expect(response.status === 201, `status ${response.status}`);
  expect(data && data.word === "apple" && data.version_info.version === "1.0.0", JSON.stringify(data));
  expect(response.headers.get("Location") === "/dictionary/apple/versions/1.0.0", "Location");
  for (const senses of [["a fruit", "a tree"], ["a fruit", "a tree", "a firm"]]) {
    const r = await client.POST("/dictionary/{id}/versions", {
      params: { path: { id: "apple" } },
      body: { content: { senses }, word: "apple", provider: "wiktionary" },
    });
    expect(r.response.status === 201, `status ${r.response.status}`);
  }
  const same = await client.POST("/dictionary/{id}/versions", {
    params: { path: { id: "apple" } },
    body: { content: { senses: ["a fruit", "a tree", "a firm"] }, word: "apple", provider: "wiktionary" },
  });
  expect(same.response.status === 200, `same content: status ${same.response.status}`);
  return "1.0.0, 1.0.1, 1.0.2; same content 200";
});

await step("octet-stream save (type's fields as query parameters)", async () => {
  const { data, response } = await client.POST("/dictionary/{id}/versions", {
    params: { path: { id: "pear" }, query: { word: "pear", provider: "wiktionary", tags: "fruit,sweet" } },
    body: "pear: a sweet fruit\n",
    bodySerializer: identity,
    headers: { "Content-Type": "application/octet-stream" },
  });
  expect(response.status === 201, `status ${response.status}`);
  expect(data && data.word === "pear" && data.content_location.content_type === "application/octet-stream",
    JSON.stringify(data));
  expect(JSON.stringify(data.tags) === '["fruit","sweet"]', JSON.stringify(data.tags));
  state.pearEtag = response.headers.get("ETag") ?? undefined;
  return `${data.content_location.size_bytes} bytes`;
});

await step("text/plain corpus saves (fields as query parameters)", async () => {
  const lists: Array<[string, string]> = [
    ["american", "color\nhonor\ncenter\n"],
    ["british", "colour\nhonour\ncentre\n"],
    ["scots", "ken\nbairn\nloch\n"],
  ];
  for (const [id, words] of lists) {
    const { data, response } = await client.POST("/corpus/{id}/versions", {
      params: { path: { id }, query: { corpus_type: "language", language: "en" } },
      body: words,
      bodySerializer: identity,
      headers: { "Content-Type": "text/plain" },
    });
    expect(response.status === 201, `${id}: status ${response.status}`);
    expect(data && data.vocabulary_size === 3, JSON.stringify(data));
  }
  return "american, british, scots";
});

await step("large literature text, stored compressed", async () => {
  const text = "To be, or not to be, that is the question:\n".repeat(3000);
  const { data, response } = await client.POST("/literature/{id}/versions", {
    params: { path: { id: "hamlet" }, query: { title: "Hamlet", authors: "William Shakespeare", source: "gutenberg" } },
    body: text,
    bodySerializer: identity,
    headers: { "Content-Type": "application/octet-stream" },
  });
  expect(response.status === 201, `status ${response.status}`);
  expect(data && data.content_location.compression === "zstd", JSON.stringify(data?.content_location));
  state.hamlet = text;
  return `${text.length} bytes, a zstd blob`;
});

await step("semantic index and trie with dependencies", async () => {
  const s = await client.POST("/semantic/{id}/versions", {
    params: { path: { id: "en-embeddings" } },
    body: {
      content: { vectors: [[0.1, 0.2]] }, corpus_id: "american", corpus_version: "1.0.0",
      model_name: "minilm", embedding_dimension: 2,
      dependencies: [{ type: "corpus", id: "american", version: "1.0.0" }],
    },
  });
  expect(s.response.status === 201, `semantic: ${s.response.status}`);
  const t = await client.POST("/trie/{id}/versions", {
    params: { path: { id: "en-trie" } },
    body: { content: { root: {} }, corpus_ids: ["american"], node_count: 1, max_depth: 0,
            dependencies: [{ type: "corpus", id: "american" }] },
  });
  expect(t.response.status === 201, `trie: ${t.response.status}`);
});

await step("latest record", async () => {
  const { data, response } = await client.GET("/{type}/{id}", { params: { path: { type: "dictionary", id: "apple" } } });
  expect(response.status === 200 && data, `status ${response.status}`);
  expect(data.version_info.version === "1.0.2" && data.version_info.is_latest, JSON.stringify(data.version_info));
  expect(response.headers.get("ETag") === `"${data.version_info.data_hash}"`, "ETag");
  return data.version_info.version;
});

await step("list versions with a cursor", async () => {
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 5; i++) {
    const { data, response } = await client.GET("/dictionary/{id}/versions", {
      params: { path: { id: "apple" }, query: { limit: 1, ...(cursor ? { cursor } : {}) } },
    });
    expect(response.status === 200 && data, `status ${response.status}`);
    seen.push(...data.items.map((r: Record_) => r.version_info.version));
    if (!data.next) break;
    cursor = data.next;
  }
  expect(seen.join(",") === "1.0.2,1.0.1,1.0.0", seen.join(","));
  return seen.join(", ");
});

await step("content, then 304 with If-None-Match", async () => {
  const r = await client.GET("/{type}/{id}/versions/{version}/content", {
    params: { path: { type: "dictionary", id: "pear", version: "latest" } },
    parseAs: "text",
  });
  expect(r.response.status === 200 && r.data === "pear: a sweet fruit\n", `status ${r.response.status}: ${r.data}`);
  const etag = r.response.headers.get("ETag") ?? "";
  expect(etag === state.pearEtag, `ETag ${etag} vs ${state.pearEtag}`);
  const again = await client.GET("/{type}/{id}/versions/{version}/content", {
    params: { path: { type: "dictionary", id: "pear", version: "latest" }, header: { "If-None-Match": etag } },
    parseAs: "text",
  });
  expect(again.response.status === 304, `status ${again.response.status}`);
  return "200 then 304";
});

await step("content with Accept-Encoding: zstd", async () => {
  const r = await client.GET("/{type}/{id}/versions/{version}/content", {
    params: { path: { type: "literature", id: "hamlet", version: "1.0.0" }, header: { "Accept-Encoding": "zstd" } },
    parseAs: "arrayBuffer",
  });
  expect(r.response.status === 200, `status ${r.response.status}`);
  expect(r.response.headers.get("Content-Encoding") === "zstd", `Content-Encoding ${r.response.headers.get("Content-Encoding")}`);
  const bytes = new Uint8Array(r.data as ArrayBuffer);
  // fetch does not undo zstd: the stored frame arrives as it is
  const magic = bytes.length >= 4 && bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd;
  const decoded = bytes.length === state.hamlet?.length;
  expect(magic || decoded, `neither a zstd frame nor the text (${bytes.length} bytes)`);
  return magic ? `a zstd frame of ${bytes.length} bytes` : "decoded by fetch";
});

await step("cache put, get (and 304)", async () => {
  const put = await client.PUT("/cache/{ns}/{key}", {
    params: { path: { ns: "dictionary", key: "apple" }, query: { ttl: 60 } },
    body: { senses: 3 },
  });
  expect(put.response.status === 201 && put.data?.ttl_seconds === 60, `status ${put.response.status}`);
  const arr = await client.PUT("/cache/{ns}/{key}", { params: { path: { ns: "sessions", key: "list" } }, body: [1, 2, 3] });
  expect(arr.response.status === 201, `array: ${arr.response.status}`);
  const bytes = await client.PUT("/cache/{ns}/{key}", {
    params: { path: { ns: "sessions", key: "s/1" } },
    body: "raw bytes",
    bodySerializer: identity,
    headers: { "Content-Type": "application/octet-stream" },
  });
  expect(bytes.response.status === 201, `bytes: ${bytes.response.status}`);
  const get = await client.GET("/cache/{ns}/{key}", { params: { path: { ns: "dictionary", key: "apple" } }, parseAs: "json" });
  expect(get.response.status === 200, `get: ${get.response.status}`);
  expect(JSON.stringify(get.data) === '{"senses":3}', JSON.stringify(get.data));
  const tier = get.response.headers.get("X-Cache");
  expect(tier === "L1" || tier === "L2", `X-Cache ${tier}`);
  const nm = await client.GET("/cache/{ns}/{key}", {
    params: { path: { ns: "dictionary", key: "apple" }, header: { "If-None-Match": get.response.headers.get("ETag") ?? "" } },
    parseAs: "text",
  });
  expect(nm.response.status === 304, `304: ${nm.response.status}`);
  const raw = await client.GET("/cache/{ns}/{key}", { params: { path: { ns: "sessions", key: "s/1" } }, parseAs: "text" });
  expect(raw.data === "raw bytes" && raw.response.headers.get("Content-Type") === "application/octet-stream", `${raw.data}`);
  return `object, array and bytes; X-Cache ${tier}`;
});

await step("cache delete and delete by pattern", async () => {
  const del = await client.DELETE("/cache/{ns}/{key}", { params: { path: { ns: "dictionary", key: "apple" } } });
  expect(del.response.status === 200 && del.data?.deleted === 1, `delete: ${del.response.status}`);
  const pat = await client.DELETE("/cache/{ns}", { params: { path: { ns: "sessions" }, query: { pattern: "*" } } });
  expect(pat.response.status === 200 && pat.data?.deleted === 2, `pattern: ${JSON.stringify(pat.data)}`);
  const miss = await client.GET("/cache/{ns}", { params: { path: { ns: "nope" } } });
  expect(miss.response.status === 404 && problemStatus(miss.error) === 404, `unknown namespace: ${miss.response.status}`);
  return "1, then 2 under *";
});

await step("tree create", async () => {
  const { data, response } = await client.POST("/trees", {
    body: { master: "english", language: "en", children: ["american", { id: "british" }, { id: "irish", words: ["craic", "slainte"] }] },
  });
  expect(response.status === 201 && data, `status ${response.status}`);
  expect(data.is_master && (data.children ?? []).length === 3, JSON.stringify(data));
  return `${data.id} ${data.version}`;
});

await step("tree attach and detach", async () => {
  const a = await client.POST("/trees/{master}/children", { params: { path: { master: "english" } }, body: "scots" });
  expect(a.response.status === 201, `attach: ${a.response.status}`);
  const d = await client.DELETE("/trees/{master}/children/{child}", { params: { path: { master: "english", child: "irish" } } });
  expect(d.response.status === 200 && d.data, `detach: ${d.response.status}`);
  const ids = (d.data.children ?? []).map((c) => c.id).sort().join(",");
  expect(ids === "american,british,scots", ids);
  return ids;
});

await step("tree vocabulary (JSON pages and text)", async () => {
  const words: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 10; i++) {
    const { data, response } = await client.GET("/trees/{master}/vocabulary", {
      params: { path: { master: "english" }, query: { limit: 4, ...(cursor ? { cursor } : {}) } },
    });
    expect(response.status === 200 && data && typeof data !== "string", `status ${response.status}`);
    words.push(...data.items.map((w) => w.word));
    if (!data.next) break;
    cursor = data.next;
  }
  const text = await client.GET("/trees/{master}/vocabulary", {
    params: { path: { master: "english" } }, headers: { Accept: "text/plain" }, parseAs: "text",
  });
  expect(text.response.status === 200, `text: ${text.response.status}`);
  expect(text.data === words.join("\n") + "\n", `text form differs: ${text.data}`);
  return `${words.length} words`;
});

await step("dependents and rebuild", async () => {
  const dep = await client.GET("/{type}/{id}/dependents", { params: { path: { type: "corpus", id: "american" } } });
  expect(dep.response.status === 200 && dep.data, `dependents: ${dep.response.status}`);
  const got = dep.data.items.map((r) => `${r.resource_type}/${r.resource_id}`).sort().join(",");
  expect(got === "corpus/english,semantic/en-embeddings,trie/en-trie", got);
  const rb = await client.POST("/{type}/{id}/rebuild", { params: { path: { type: "corpus", id: "american" } } });
  expect(rb.response.status === 200 && rb.data, `rebuild: ${rb.response.status}`);
  const order = rb.data.order.map((s) => `${s.action} ${s.id}`).join(", ");
  expect(rb.data.reaggregated.length === 1 && rb.data.marked_stale.length === 2, order);
  return order;
});

await step("batch", async () => {
  const { data, response } = await client.POST("/batch", {
    body: { operations: [
      { op: "save", type: "dictionary", id: "fig", content: { senses: ["a fruit"] }, word: "fig", provider: "wiktionary" },
      { op: "delete", type: "dictionary", id: "apple", version: "1.0.0" },
    ] },
  });
  expect(response.status === 200 && data, `status ${response.status}`);
  expect(data.results.map((r) => r.status).join(",") === "201,204", JSON.stringify(data));
  const gone = await client.GET("/{type}/{id}/versions/{version}", { params: { path: { type: "dictionary", id: "apple", version: "1.0.0" } } });
  expect(gone.response.status === 410 && problemStatus(gone.error) === 410, `after delete: ${gone.response.status}`);
  return "201, 204, then 410";
});

await step("cleanup and gc dry runs", async () => {
  const c = await client.POST("/{type}/{id}/cleanup", {
    params: { path: { type: "dictionary", id: "apple" }, query: { keep: 1, dry_run: true } },
  });
  expect(c.response.status === 200 && c.data?.dry_run === true, `cleanup: ${c.response.status}`);
  expect(c.data.removed.map((v) => v.version).join(",") === "1.0.1", JSON.stringify(c.data.removed));
  const all = await client.POST("/admin/cleanup", { params: { query: { dry_run: true } } });
  expect(all.response.status === 200 && all.data?.dry_run === true, `admin cleanup: ${all.response.status}`);
  const gc = await client.POST("/admin/gc", { params: { query: { dry_run: true } } });
  expect(gc.response.status === 200 && gc.data?.dry_run === true && gc.data.blobs_removed === 0, `gc: ${gc.response.status}`);
  return `would remove 1.0.1; ${gc.data.blobs_scanned} blobs scanned`;
});

await step("health and the served openapi.yaml", async () => {
  const h = await client.GET("/health");
  expect(h.response.status === 200 && h.data?.status === "ok", `health: ${h.response.status}`);
  const o = await client.GET("/openapi.yaml", { parseAs: "text" });
  expect(o.response.status === 200 && String(o.data).startsWith("openapi: 3.1"), `openapi: ${o.response.status}`);
  expect(o.response.headers.get("Content-Type") === "application/yaml", "Content-Type");
});

const ok = checks - failures - errors;
console.log(`${checks ? Math.floor((100 * ok) / checks) : 0}%: Checks: ${checks}, Failures: ${failures}, Errors: ${errors}`);
process.exit(failures || errors ? 1 : 0);
