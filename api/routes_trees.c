/* /trees: corpus trees whose masters aggregate their children. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/codec/json_parse.h"
#include "../src/service/trees.h"
#include "../src/service/vocabulary.h"
#include "app.h"
#include "negotiate.h"
#include "request.h"
#include "routes.h"

#define VOCAB_LIMIT_DEFAULT 1000
#define VOCAB_LIMIT_MAX     10000

static json_t *body_json(request *req, reply *rep)
{
    strata_error err;
    json_t *j = req_body_json(req, &err);
    if (j == NULL)
        reply_error(rep, &err);
    return j;
}

static void post_tree(request *req, reply *rep)
{
    json_t *body = body_json(req, rep);
    if (body == NULL)
        return;
    json_t *tree = NULL;
    strata_error err;
    if (trees_create(req->app->trees, body, &tree, &err) != 0)
        reply_error(rep, &err);
    else {
        char enc[3 * STORE_ID_MAX + 1];
        if (url_encode_segment(json_string_value(json_object_get(body, "master")), enc,
                               sizeof enc) == 0)
            reply_header_set(rep, "Location", "/trees/%s", enc);
        reply_json(rep, 201, tree);
    }
    json_decref(body);
}

static void get_tree(request *req, reply *rep)
{
    uint64_t depth = 8;
    strata_error err;
    if (req_query_uint(req, "depth", 0, TREE_DEPTH_MAX, NULL, &depth, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    json_t *tree = trees_get(req->app->trees, req_param(req, "master"), (int)depth, &err);
    if (tree == NULL)
        reply_error(rep, &err);
    else
        reply_json(rep, 200, tree);
}

static void get_children(request *req, reply *rep)
{
    strata_error err;
    json_t *kids = trees_children(req->app->trees, req_param(req, "master"), &err);
    if (kids == NULL)
        reply_error(rep, &err);
    else
        reply_json(rep, 200, kids);
}

static void post_child(request *req, reply *rep)
{
    json_t *body = body_json(req, rep);
    if (body == NULL)
        return;
    json_t *tree = NULL;
    strata_error err;
    if (trees_attach(req->app->trees, req_param(req, "master"), body, &tree, &err) != 0)
        reply_error(rep, &err);
    else
        reply_json(rep, 201, tree);
    json_decref(body);
}

static void delete_child(request *req, reply *rep)
{
    json_t *tree = NULL;
    strata_error err;
    if (trees_detach(req->app->trees, req_param(req, "master"), req_param(req, "child"), &tree,
                     &err) != 0)
        reply_error(rep, &err);
    else
        reply_json(rep, 200, tree);
}

/* text/plain: the whole vocabulary, one word per line, streamed a page at
 * a time from the store. */
typedef struct vocab_stream {
    trees_svc *trees;
    char master[STORE_ID_MAX + 1];
    char after[VOCAB_WORD_MAX + 1];
    strata_buf buf;
    size_t pos;
    bool done;
} vocab_stream;

static ssize_t vocab_read(void *cls, uint64_t offset, char *out, size_t max)
{
    (void)offset;
    vocab_stream *s = cls;
    while (s->pos == s->buf.len) {
        if (s->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        vocab_item *items = NULL;
        size_t n = 0;
        strata_error err;
        if (trees_vocabulary(s->trees, s->master, s->after, VOCAB_LIMIT_MAX, &items, &n, &err) != 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        sbuf_reset(&s->buf);
        s->pos = 0;
        for (size_t i = 0; i < n; i++) {
            if (sbuf_append(&s->buf, items[i].word, strlen(items[i].word), &err) != 0 ||
                sbuf_append(&s->buf, "\n", 1, &err) != 0) {
                vocab_items_free(items, n);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        if (n > 0)
            snprintf(s->after, sizeof s->after, "%s", items[n - 1].word);
        s->done = n < VOCAB_LIMIT_MAX;
        vocab_items_free(items, n);
    }
    size_t k = s->buf.len - s->pos < max ? s->buf.len - s->pos : max;
    memcpy(out, s->buf.data + s->pos, k);
    s->pos += k;
    return (ssize_t)k;
}

static void vocab_stream_free(void *cls)
{
    vocab_stream *s = cls;
    sbuf_free(&s->buf);
    free(s);
}

static void get_vocabulary(request *req, reply *rep)
{
    const char *master = req_param(req, "master");
    strata_error err;
    /* checked for either form, though the text form streams everything */
    uint64_t limit = VOCAB_LIMIT_DEFAULT;
    const char *cursor;
    if (req_query_uint(req, "limit", 1, VOCAB_LIMIT_MAX, NULL, &limit, &err) != 0 ||
        req_query_str(req, "cursor", &cursor, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    char after[VOCAB_WORD_MAX + 1] = "";
    if (cursor != NULL && cursor[0] == '\0')
        cursor = NULL; /* an empty cursor is the first page */
    if (cursor != NULL && store_cursor_decode_str(cursor, 'w', after, sizeof after) != 0) {
        reply_problem(rep, 400, "invalid-input", "cursor is not valid for this list");
        return;
    }
    char accept[64];
    media_base(req_header(req, "Accept"), accept, sizeof accept);
    if (strcmp(accept, "text/plain") == 0) {
        /* check first, so that a missing master is a 404, not a broken stream */
        vocab_item *items = NULL;
        size_t n = 0;
        if (trees_vocabulary(req->app->trees, master, "", 1, &items, &n, &err) != 0) {
            reply_error(rep, &err);
            return;
        }
        vocab_items_free(items, n);
        vocab_stream *s = calloc(1, sizeof *s);
        if (s == NULL) {
            reply_problem(rep, 503, "out-of-memory", "out of memory");
            return;
        }
        s->trees = req->app->trees;
        snprintf(s->master, sizeof s->master, "%s", master);
        sbuf_init(&s->buf, 0);
        rep->response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, vocab_read,
                                                          s, vocab_stream_free);
        if (rep->response == NULL) {
            vocab_stream_free(s);
            reply_problem(rep, 503, "out-of-memory", "out of memory");
            return;
        }
        rep->status = 200;
        rep->set = true;
        rep->content_type = "text/plain; charset=utf-8";
        return;
    }
    vocab_item *items = NULL;
    size_t n = 0;
    if (trees_vocabulary(req->app->trees, master, after, limit + 1, &items, &n, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "word", items[i].word, "frequency",
                                             (json_int_t)items[i].frequency, "children",
                                             (json_int_t)items[i].children));
    char *next = n > limit ? store_cursor_encode_str('w', items[limit - 1].word) : NULL;
    reply_json(rep, 200,
               json_pack("{s:s, s:o, s:o}", "master", master, "items", arr, "next",
                         next ? json_string(next) : json_null()));
    free(next);
    vocab_items_free(items, n);
}

int routes_trees_register(router *r)
{
    int rc = 0;
    rc |= router_add(r, HTTP_POST, "/trees", post_tree);
    rc |= router_add(r, HTTP_GET, "/trees/{master}", get_tree);
    rc |= router_add(r, HTTP_GET, "/trees/{master}/children", get_children);
    rc |= router_add(r, HTTP_POST, "/trees/{master}/children", post_child);
    rc |= router_add(r, HTTP_DELETE, "/trees/{master}/children/{child}", delete_child);
    rc |= router_add(r, HTTP_GET, "/trees/{master}/vocabulary", get_vocabulary);
    return rc ? -1 : 0;
}
