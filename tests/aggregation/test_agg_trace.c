/*
 * test_agg_trace.c: NEDB's $trace stage (aggregation/agg_stage_misc.c, DESIGN.md section 7)
 * over a fake provenance source: a small op log whose ops name earlier ops as causes,
 * with a diamond (an op reached along two paths) and an artificial cycle, so both
 * directions, maxDepth, and "each op once" can be checked without a server.
 */
#include <criterion/criterion.h>

#include "agg.h"
#include "agg_case_util.h"
#include "agg_hooks.h"
#include "agg_pipeline.h"

/* The fake log. causes[i] lists the seqs op i names (-1 ends the list). */
typedef struct fop {
    const char *ns;
    const char *json;
    int64_t causes[4];
} fop_t;

static const fop_t OPS[] = {
    /* 0 */ {"test.notes", "{\"_id\": \"n1\", \"text\": \"user said\"}", {-1}},
    /* 1 */ {"test.notes", "{\"_id\": \"n2\", \"text\": \"inferred\"}", {0, -1}},
    /* 2 */ {"test.facts", "{\"_id\": \"f1\", \"v\": 1}", {0, 1, -1}},
    /* 3 */ {"test.coll", "{\"_id\": 1, \"v\": 2}", {2, -1}},
    /* 4 */ {"test.loop", "{\"_id\": \"a\"}", {5, -1}}, /* 4 and 5 name each other */
    /* 5 */ {"test.loop", "{\"_id\": \"b\"}", {4, -1}},
    /* 6 */ {"test.notes", "{\"_id\": \"n1\", \"text\": \"user said again\"}", {-1}},
    /* 7 */ {"test.facts", "{\"_id\": \"f2\"}", {6, -1}},
};
#define NOPS ((int64_t)(sizeof OPS / sizeof *OPS))

static void push(int64_t **out, size_t *n, int64_t v)
{
    *out = realloc(*out, (*n + 1) * sizeof **out);
    (*out)[(*n)++] = v;
}

static bool f_links(void *ctx, int64_t seq, bool forward, int64_t **out, size_t *n,
                    bq_error_t *err)
{
    (void)ctx;
    (void)err;
    if (!forward) {
        for (int j = 0; seq >= 0 && seq < NOPS && OPS[seq].causes[j] >= 0; j++)
            push(out, n, OPS[seq].causes[j]);
        return true;
    }
    for (int64_t i = 0; i < NOPS; i++)
        for (int j = 0; OPS[i].causes[j] >= 0; j++)
            if (OPS[i].causes[j] == seq)
                push(out, n, i);
    return true;
}

static bool f_op_doc(void *ctx, int64_t seq, char *ns, size_t ns_size, bson_t **doc,
                     bq_error_t *err)
{
    (void)ctx;
    if (seq < 0 || seq >= NOPS) {
        bq_error_set(err, BQ_ERR_BadValue, "no op %lld", (long long)seq);
        return false;
    }
    snprintf(ns, ns_size, "%s", OPS[seq].ns);
    *doc = bson_new_from_json((const uint8_t *)OPS[seq].json, -1, NULL);
    return true;
}

static bool f_versions(void *ctx, const char *db, const char *coll, const bson_value_t *id,
                       int64_t **out, size_t *n, bq_error_t *err)
{
    (void)ctx;
    (void)err;
    char ns[256];
    snprintf(ns, sizeof ns, "%s.%s", db, coll);
    for (int64_t i = 0; i < NOPS; i++) {
        if (strcmp(OPS[i].ns, ns) != 0)
            continue;
        bson_t *d = bson_new_from_json((const uint8_t *)OPS[i].json, -1, NULL);
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "_id") && bq_value_equal(bson_iter_value(&it), id))
            push(out, n, i);
        bson_destroy(d);
    }
    return true;
}

/* Runs pipeline (JSON array) over `docs` (JSON array) as collection coll and returns the
 * results as one array document for comparison. */
static bson_t *run(const char *coll, const char *docs_json, const char *pipeline_json,
                   bq_error_t *err)
{
    bson_t *docs = bson_new_from_json((const uint8_t *)docs_json, -1, NULL);
    bson_t *pipe = bson_new_from_json((const uint8_t *)pipeline_json, -1, NULL);
    cr_assert(docs && pipe, "bad test JSON");
    agg_pipeline_opts_t opts = {.db = "test", .coll = NULL};
    agg_pipeline_t *p = agg_pipeline_parse(pipe, &opts, err);
    cr_assert(p, "parse failed: %s", err->message);
    agg_source_t src = {.prov_links = f_links, .op_doc = f_op_doc, .doc_versions = f_versions};
    agg_run_t r;
    cr_assert(agg_run_init(&r, p, &src, "test", 0, 0, 0, false, err));
    /* the input: the documents given, as if scanned from `coll` */
    bson_t *list[16];
    size_t n = 0;
    bson_iter_t it;
    bson_iter_init(&it, docs);
    while (bson_iter_next(&it) && n < 16) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        list[n++] = bson_new_from_data(data, len);
    }
    (void)coll;
    agg_iter_t *in = agg_iter_from_docs(&r, list, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(list[i]);
    agg_iter_t *chain = agg_pipeline_open(p, in, &r, err);
    bson_t *res = NULL;
    if (chain) {
        res = bson_new();
        uint32_t idx = 0;
        for (;;) {
            bson_t *d;
            int rc = agg_iter_next(chain, &d, err);
            if (rc < 0) {
                bson_destroy(res);
                res = NULL;
            }
            if (rc <= 0)
                break;
            char key[16];
            const char *k;
            bson_uint32_to_string(idx++, &k, key, sizeof key);
            bson_append_document(res, k, -1, d);
            bson_destroy(d);
        }
    }
    agg_iter_close(chain);
    agg_run_cleanup(&r);
    agg_pipeline_destroy(p);
    bson_destroy(docs);
    bson_destroy(pipe);
    return res;
}

static void expect(bson_t *got, const char *want_json)
{
    bson_t *want = bson_new_from_json((const uint8_t *)want_json, -1, NULL);
    cr_assert(want, "bad expected JSON");
    cr_assert(got, "pipeline failed");
    char *g = bson_as_relaxed_extended_json(got, NULL);
    cr_expect(strict_doc_equal(got, want), "got %s\nwant %s", g, want_json);
    bson_free(g);
    bson_destroy(want);
    bson_destroy(got);
}

/* $trace needs the collection name for forward: the pipelines here are parsed without one
 * (coll NULL), so forward tests parse through a $facet-free helper with coll set. */
static bson_t *run_coll(const char *coll, const char *docs_json, const char *pipeline_json,
                        bq_error_t *err)
{
    bson_t *docs = bson_new_from_json((const uint8_t *)docs_json, -1, NULL);
    bson_t *pipe = bson_new_from_json((const uint8_t *)pipeline_json, -1, NULL);
    cr_assert(docs && pipe, "bad test JSON");
    agg_pipeline_opts_t opts = {.db = "test", .coll = coll};
    agg_pipeline_t *p = agg_pipeline_parse(pipe, &opts, err);
    cr_assert(p, "parse failed: %s", err->message);
    agg_source_t src = {.prov_links = f_links, .op_doc = f_op_doc, .doc_versions = f_versions};
    agg_run_t r;
    cr_assert(agg_run_init(&r, p, &src, "test", 0, 0, 0, false, err));
    bson_t *list[16];
    size_t n = 0;
    bson_iter_t it;
    bson_iter_init(&it, docs);
    while (bson_iter_next(&it) && n < 16) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        list[n++] = bson_new_from_data(data, len);
    }
    agg_iter_t *in = agg_iter_from_docs(&r, list, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(list[i]);
    agg_iter_t *chain = agg_pipeline_open(p, in, &r, err);
    cr_assert(chain, "open failed: %s", err->message);
    bson_t *res = bson_new();
    uint32_t idx = 0;
    for (;;) {
        bson_t *d;
        int rc = agg_iter_next(chain, &d, err);
        cr_assert(rc >= 0, "run failed: %s", err->message);
        if (rc == 0)
            break;
        char key[16];
        const char *k;
        bson_uint32_to_string(idx++, &k, key, sizeof key);
        bson_append_document(res, k, -1, d);
        bson_destroy(d);
    }
    agg_iter_close(chain);
    agg_run_cleanup(&r);
    agg_pipeline_destroy(p);
    bson_destroy(docs);
    bson_destroy(pipe);
    return res;
}

Test(agg_trace, backward_follows_caused_by_breadth_first_each_op_once)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    bson_t *got = run("coll", "[{\"_id\": 1, \"_caused_by\": [{\"$numberLong\": \"2\"}]}]",
                      "[{\"$trace\": {\"direction\": \"backward\", \"as\": \"why\"}}]", &err);
    expect(got,
           "{\"0\": {\"_id\": 1, \"_caused_by\": [{\"$numberLong\": \"2\"}], \"why\": ["
           "{\"seq\": {\"$numberLong\": \"2\"}, \"ns\": \"test.facts\", \"depth\": 1, "
           "\"doc\": {\"_id\": \"f1\", \"v\": 1}},"
           "{\"seq\": {\"$numberLong\": \"0\"}, \"ns\": \"test.notes\", \"depth\": 2, "
           "\"doc\": {\"_id\": \"n1\", \"text\": \"user said\"}},"
           "{\"seq\": {\"$numberLong\": \"1\"}, \"ns\": \"test.notes\", \"depth\": 2, "
           "\"doc\": {\"_id\": \"n2\", \"text\": \"inferred\"}}]}}");
}

Test(agg_trace, backward_max_depth_stops_expanding)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    bson_t *got = run("coll", "[{\"_id\": 1, \"_caused_by\": [2]}]",
                      "[{\"$trace\": {\"direction\": \"backward\", \"as\": \"why\", "
                      "\"maxDepth\": 1}}, {\"$project\": {\"_id\": 0, \"s\": \"$why.seq\"}}]",
                      &err);
    expect(got, "{\"0\": {\"s\": [{\"$numberLong\": \"2\"}]}}");
}

Test(agg_trace, backward_without_caused_by_is_empty)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    bson_t *got = run("coll", "[{\"_id\": 1}]",
                      "[{\"$trace\": {\"direction\": \"backward\", \"as\": \"a.why\"}}]", &err);
    expect(got, "{\"0\": {\"_id\": 1, \"a\": {\"why\": []}}}");
}

Test(agg_trace, cycles_are_visited_once)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    bson_t *got = run("coll", "[{\"_id\": 9, \"_caused_by\": [4]}]",
                      "[{\"$trace\": {\"direction\": \"backward\", \"as\": \"w\"}}, "
                      "{\"$project\": {\"_id\": 0, \"s\": \"$w.seq\", \"d\": \"$w.depth\"}}]",
                      &err);
    expect(got, "{\"0\": {\"s\": [{\"$numberLong\": \"4\"}, {\"$numberLong\": \"5\"}], "
                "\"d\": [1, 2]}}");
}

Test(agg_trace, forward_starts_from_every_version_of_the_document)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    /* n1 was written by ops 0 and 6: 0 caused 1 and 2, 6 caused 7; then 2 caused 3 */
    bson_t *got = run_coll("notes", "[{\"_id\": \"n1\"}]",
                           "[{\"$trace\": {\"direction\": \"forward\", \"as\": \"fx\"}}, "
                           "{\"$project\": {\"_id\": 0, \"s\": \"$fx.seq\", \"d\": "
                           "\"$fx.depth\", \"ns\": \"$fx.ns\"}}]",
                           &err);
    expect(got, "{\"0\": {\"s\": [{\"$numberLong\": \"1\"}, {\"$numberLong\": \"2\"}, "
                "{\"$numberLong\": \"7\"}, {\"$numberLong\": \"3\"}], \"d\": [1, 1, 1, 2], "
                "\"ns\": [\"test.notes\", \"test.facts\", \"test.facts\", \"test.coll\"]}}");
}

Test(agg_trace, forward_max_depth)
{
    agg_install_bq_hooks();
    bq_error_t err;
    bq_error_clear(&err);
    bson_t *got = run_coll("notes", "[{\"_id\": \"n1\"}]",
                           "[{\"$trace\": {\"direction\": \"forward\", \"as\": \"fx\", "
                           "\"maxDepth\": 1}}, {\"$project\": {\"_id\": 0, \"n\": "
                           "{\"$size\": \"$fx\"}}}]",
                           &err);
    expect(got, "{\"0\": {\"n\": 3}}");
}
