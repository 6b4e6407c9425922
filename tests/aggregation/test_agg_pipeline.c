/*
 * test_agg_pipeline.c: data-driven tests of pipelines and stages (aggregation/agg_pipeline.c
 * and agg_stage_*.c), run in-process over an in-memory source, no server.
 *
 * Reads every .json file in tests/aggregation/stages (next to this file). A file is a
 * sequence of Extended JSON documents, one case each:
 *   {"name": "...",                 what the case shows (printed on failure)
 *    "docs": [...],                 the collection aggregated ("coll"); omitted: no
 *                                   collection, the pipeline runs as aggregate: 1
 *    "collections": {"name": [...]} other collections ($lookup, $unionWith, ...)
 *    "indexes": {"name": [spec]}    with serverOnly: indexes created on them first
 *    "pipeline": [...],
 *    "let": {...},                  the command's let (optional)
 *    "collation": {...},            the command's collation (optional; a bad one fails
 *                                   the case with its code, like "error")
 *    "result": [...]                the documents expected, in order
 *    "unordered": true              compare as a multiset instead (optional)
 *    "error": <code>                instead of result: parsing or running fails with code
 *    "serverOnly": true,            only tests/integration/test_aggregate.js runs it
 *                                   ($out/$merge, which the server writes)
 *    "expectCollections": {...}     with serverOnly: those collections' contents after
 *    "inProcessOnly": "why"}        only this runner runs it (the live server cannot
 *                                   reproduce the setup: $$NOW, documents as given)
 * The same files run against a live nedbd through tests/integration/test_aggregate.js.
 * Comparison is strict (agg_case_util.h). $$NOW is 2020-01-01T00:00:00Z.
 *
 * The in-memory source answers a filter document the way a server's index would: when the
 * filter is one top-level field compared with a value ({f: v}, {f: {$eq: v}}, {f: {$in:
 * [...]}}), only the documents that match it bytewise are candidates, so a stage that hands
 * over a filter document under a collation (agg_pipeline.h says it must not) loses the
 * documents the collation alone would match.
 */
#include <criterion/criterion.h>

#include "agg.h"
#include "agg_case_util.h"
#include "agg_hooks.h"
#include "agg_pipeline.h"

#define NOW_MS 1577836800000LL

/* ------------------------------------------------------------ the in-memory source */

typedef struct mem_coll {
    char name[128];
    bson_t **docs;
    size_t n;
} mem_coll_t;

typedef struct mem_source {
    mem_coll_t colls[16];
    int ncolls;
} mem_source_t;

static void mem_add(mem_source_t *ms, const char *name, const bson_iter_t *arr)
{
    mem_coll_t *c = &ms->colls[ms->ncolls++];
    snprintf(c->name, sizeof c->name, "%s", name);
    bson_iter_t it;
    bson_iter_recurse(arr, &it);
    size_t cap = 8;
    c->docs = calloc(cap, sizeof *c->docs);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            continue;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (c->n == cap)
            c->docs = realloc(c->docs, (cap *= 2) * sizeof *c->docs);
        c->docs[c->n++] = bson_new_from_data(data, len);
    }
}

static void mem_free(mem_source_t *ms)
{
    for (int i = 0; i < ms->ncolls; i++) {
        for (size_t j = 0; j < ms->colls[i].n; j++)
            bson_destroy(ms->colls[i].docs[j]);
        free(ms->colls[i].docs);
    }
}

/* The binary "index" a filter document selects (see the header), or NULL when the filter
 * is not one a server would answer from an index. */
static bq_match_t *mem_index_filter(const bson_t *filter_doc)
{
    bson_iter_t it, sub;
    if (!filter_doc || bson_count_keys(filter_doc) != 1 || !bson_iter_init(&it, filter_doc) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] == '$' || BSON_ITER_HOLDS_REGEX(&it))
        return NULL;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_recurse(&it, &sub);
        if (bson_iter_next(&sub) && bson_iter_key(&sub)[0] == '$' &&
            (strcmp(bson_iter_key(&sub), "$eq") != 0 && strcmp(bson_iter_key(&sub), "$in") != 0))
            return NULL;
    }
    bq_error_t err;
    return bq_match_compile(filter_doc, &err);
}

static agg_iter_t *mem_scan(void *ctx, agg_run_t *run, const char *db, const char *coll,
                            const bson_t *filter_doc, const bq_match_t *filter,
                            bq_error_t *err)
{
    (void)db;
    mem_source_t *ms = ctx;
    for (int i = 0; i < ms->ncolls; i++) {
        mem_coll_t *c = &ms->colls[i];
        if (strcmp(c->name, coll) != 0)
            continue;
        bson_t **hits = calloc(c->n ? c->n : 1, sizeof *hits);
        size_t n = 0;
        bq_match_t *index = mem_index_filter(filter_doc);
        for (size_t j = 0; j < c->n; j++) {
            if (index && !bq_match_eval(index, c->docs[j]))
                continue;
            int r = filter ? bq_match_eval_env(filter, c->docs[j], &run->env, err) : 1;
            if (r < 0) {
                bq_match_destroy(index);
                free(hits);
                return NULL;
            }
            if (r)
                hits[n++] = c->docs[j];
        }
        bq_match_destroy(index);
        agg_iter_t *it = agg_iter_from_docs(run, hits, n);
        free(hits);
        return it;
    }
    return agg_iter_empty(run);
}

static bool mem_count(void *ctx, const char *db, const char *coll, int64_t *n,
                      bq_error_t *err)
{
    mem_source_t *ms = ctx;
    *n = 0;
    for (int i = 0; i < ms->ncolls; i++) {
        if (!strcmp(ms->colls[i].name, coll)) {
            *n = (int64_t)ms->colls[i].n;
            return true;
        }
    }
    bq_error_set(err, BQ_ERR_NamespaceNotFound, "Collection [%s.%s] not found.", db, coll);
    return false;
}

/* The in-memory collections have the _id index only. */
static bool mem_indexes(void *ctx, const char *db, const char *coll, bson_t ***specs,
                        size_t *n, bq_error_t *err)
{
    (void)db;
    (void)err;
    mem_source_t *ms = ctx;
    *specs = calloc(1, sizeof **specs);
    *n = 0;
    for (int i = 0; i < ms->ncolls; i++)
        if (!strcmp(ms->colls[i].name, coll))
            (*specs)[(*n)++] = BCON_NEW("v", BCON_INT32(2), "key", "{", "_id", BCON_INT32(1),
                                        "}", "name", BCON_UTF8("_id_"));
    return true;
}

/* storageStats as the collStats command gives them for a collection of these documents
 * with the _id index only, sizes the BSON sizes as a server's uncompressed data size
 * (storage and indexes take no space here); numbers as int32 when they fit (mongod's
 * appendNumber). A collection that is not there: 26. */
static void mem_num(bson_t *out, const char *key, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX)
        BSON_APPEND_INT32(out, key, (int32_t)v);
    else
        BSON_APPEND_INT64(out, key, v);
}

static bool mem_storage_stats(void *ctx, const char *db, const char *coll, int32_t scale,
                              bson_t *out, bq_error_t *err)
{
    mem_source_t *ms = ctx;
    bson_t sub;
    for (int i = 0; i < ms->ncolls; i++) {
        mem_coll_t *c = &ms->colls[i];
        if (strcmp(c->name, coll) != 0)
            continue;
        int64_t bytes = 0, n = (int64_t)c->n;
        for (size_t j = 0; j < c->n; j++)
            bytes += c->docs[j]->len;
        mem_num(out, "size", bytes / scale);
        mem_num(out, "count", n);
        if (n)
            mem_num(out, "avgObjSize", bytes / n);
        mem_num(out, "numOrphanDocs", 0);
        mem_num(out, "storageSize", bytes / scale);
        mem_num(out, "freeStorageSize", 0);
        BSON_APPEND_BOOL(out, "capped", false);
        BSON_APPEND_INT32(out, "nindexes", 1);
        BSON_APPEND_ARRAY_BEGIN(out, "indexBuilds", &sub);
        bson_append_array_end(out, &sub);
        mem_num(out, "totalIndexSize", 0);
        mem_num(out, "totalSize", bytes / scale);
        BSON_APPEND_DOCUMENT_BEGIN(out, "indexSizes", &sub);
        mem_num(&sub, "_id_", 0);
        bson_append_document_end(out, &sub);
        BSON_APPEND_INT32(out, "scaleFactor", scale);
        return true;
    }
    bq_error_set(err, BQ_ERR_NamespaceNotFound, "Collection [%s.%s] not found.", db, coll);
    return false;
}

/* ------------------------------------------------------------ running one case */


/* Runs the pipeline (with the command's let and collation, each may be NULL); fills
 * results (owned) or err. */
static bool run_pipeline(const bson_t *pipeline, const bson_t *let, const bson_t *collation,
                         bool has_coll, mem_source_t *ms, bson_t ***out, size_t *nout,
                         bq_error_t *err)
{
    *out = NULL;
    *nout = 0;
    bq_collation_t *co = NULL;
    if (collation && !bq_collation_new(collation, &co, err))
        return false;
    agg_pipeline_opts_t opts = {.db = "test", .coll = has_coll ? "coll" : NULL, .let = let,
                                .collation = co};
    agg_pipeline_t *p = agg_pipeline_parse(pipeline, &opts, err);
    bq_collation_destroy(co); /* the pipeline holds its own reference */
    if (!p)
        return false;
    agg_source_t src = {.ctx = ms, .scan = mem_scan, .count = mem_count,
                        .indexes = mem_indexes, .storage_stats = mem_storage_stats};
    agg_run_t run;
    bool ok = agg_run_init(&run, p, &src, "test", NOW_MS, 1577836800u, 1, false, err);
    agg_iter_t *it = ok ? agg_pipeline_open(p, NULL, &run, err) : NULL;
    ok = it != NULL;
    size_t cap = 16;
    *out = calloc(cap, sizeof **out);
    *nout = 0;
    while (ok) {
        bson_t *d;
        int r = agg_iter_next(it, &d, err);
        if (r < 0)
            ok = false;
        if (r <= 0)
            break;
        if (*nout == cap)
            *out = realloc(*out, (cap *= 2) * sizeof **out);
        (*out)[(*nout)++] = d;
    }
    agg_iter_close(it);
    agg_run_cleanup(&run);
    agg_pipeline_destroy(p);
    return ok;
}

static bool doc_in_list(const bson_t *d, bson_t **list, bool *used, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!used[i] && strict_doc_equal(d, list[i])) {
            used[i] = true;
            return true;
        }
    return false;
}

static void run_case(const char *file, int idx, const bson_t *c, case_stats_t *st)
{
    bson_iter_t it;
    bson_t pipeline = BSON_INITIALIZER, let, collation, expected;
    bool has_let = false, has_collation = false, has_result = false, has_coll = false;
    bool unordered = false;
    bool server_only = false;
    int32_t want_error = 0;
    const char *name = "";
    mem_source_t ms = {.ncolls = 0};
    bson_iter_init(&it, c);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        uint32_t len;
        const uint8_t *data;
        if (!strcmp(k, "name") && BSON_ITER_HOLDS_UTF8(&it)) {
            name = bson_iter_utf8(&it, NULL);
        } else if (!strcmp(k, "docs") && BSON_ITER_HOLDS_ARRAY(&it)) {
            mem_add(&ms, "coll", &it);
            has_coll = true;
        } else if (!strcmp(k, "collections") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_t cit;
            bson_iter_recurse(&it, &cit);
            while (bson_iter_next(&cit) && ms.ncolls < 15)
                if (BSON_ITER_HOLDS_ARRAY(&cit))
                    mem_add(&ms, bson_iter_key(&cit), &cit);
        } else if (!strcmp(k, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_array(&it, &len, &data);
            bson_init_static(&pipeline, data, len);
        } else if (!strcmp(k, "let") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &len, &data);
            bson_init_static(&let, data, len);
            has_let = true;
        } else if (!strcmp(k, "collation") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &len, &data);
            bson_init_static(&collation, data, len);
            has_collation = true;
        } else if (!strcmp(k, "result") && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_array(&it, &len, &data);
            bson_init_static(&expected, data, len);
            has_result = true;
        } else if (!strcmp(k, "unordered")) {
            unordered = bson_iter_as_bool(&it);
        } else if (!strcmp(k, "serverOnly")) {
            server_only = bson_iter_as_bool(&it);
        } else if (!strcmp(k, "error")) {
            want_error = (int32_t)bson_iter_as_int64(&it);
        }
    }
    if (server_only) {
        st->skipped++;
        mem_free(&ms);
        return;
    }
    st->run++;
    char *cj = bson_as_relaxed_extended_json(c, NULL);
    if (!has_result && !want_error) {
        fprintf(stderr, "%s case %d (%s): malformed case %s\n", file, idx, name, cj);
        st->failed++;
        bson_free(cj);
        mem_free(&ms);
        return;
    }
    bq_error_t err;
    bq_error_clear(&err);
    bson_t **got = NULL;
    size_t ngot = 0;
    bool ok = run_pipeline(&pipeline, has_let ? &let : NULL, has_collation ? &collation : NULL,
                           has_coll, &ms, &got, &ngot, &err);
    bool pass;
    if (want_error) {
        pass = !ok && err.code == want_error;
    } else if (!ok) {
        pass = false;
    } else {
        size_t nexp = bson_count_keys(&expected);
        bson_t **exp = calloc(nexp ? nexp : 1, sizeof *exp);
        bool *used = calloc(nexp ? nexp : 1, sizeof *used);
        size_t i = 0;
        bson_iter_t eit;
        bson_iter_init(&eit, &expected);
        while (bson_iter_next(&eit)) {
            uint32_t len;
            const uint8_t *data;
            if (BSON_ITER_HOLDS_DOCUMENT(&eit)) {
                bson_iter_document(&eit, &len, &data);
                exp[i++] = bson_new_from_data(data, len);
            }
        }
        pass = i == ngot;
        for (size_t j = 0; pass && j < ngot; j++)
            pass = unordered ? doc_in_list(got[j], exp, used, i)
                             : strict_doc_equal(got[j], exp[j]);
        for (size_t j = 0; j < i; j++)
            bson_destroy(exp[j]);
        free(exp);
        free(used);
    }
    if (!pass) {
        st->failed++;
        fprintf(stderr, "FAIL %s case %d (%s): %s\n", file, idx, name, cj);
        if (!ok) {
            fprintf(stderr, "    got error %d: %s\n", err.code, err.message);
        } else {
            fprintf(stderr, "    got %zu document(s):\n", ngot);
            for (size_t j = 0; j < ngot && j < 20; j++) {
                char *s = bson_as_canonical_extended_json(got[j], NULL);
                fprintf(stderr, "      %s\n", s);
                bson_free(s);
            }
        }
    }
    for (size_t j = 0; j < ngot; j++)
        bson_destroy(got[j]);
    free(got);
    bson_free(cj);
    mem_free(&ms);
}

Test(agg_pipeline, cases_from_stages_dir)
{
    agg_install_bq_hooks();
    case_stats_t total = run_case_folder(__FILE__, "stages", run_case);
    printf("agg_pipeline: %d cases run, %d failed, %d skipped (server only)\n", total.run,
           total.failed, total.skipped);
    cr_expect(total.run > 0, "no pipeline cases found");
    cr_expect(total.failed == 0, "%d pipeline case(s) failed (see above)", total.failed);
}

Test(agg_pipeline, parse_errors)
{
    agg_install_bq_hooks();
    struct {
        const char *json;
        int code;
    } cases[] = {
        {"{\"p\": [1]}", 14},
        {"{\"p\": [{}]}", 40323},
        {"{\"p\": [{\"$match\": {}, \"$limit\": 1}]}", 40323},
        {"{\"p\": [{\"$nosuchstage\": {}}]}", 40324},
        {"{\"p\": [{\"$match\": 1}]}", 15959},
        {"{\"p\": [{\"$match\": {\"$bad\": 1}}]}", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bson_error_t jerr;
        bson_t *doc = bson_new_from_json((const uint8_t *)cases[i].json, -1, &jerr);
        cr_assert(doc, "bad test JSON %s", cases[i].json);
        bson_iter_t it;
        cr_assert(bson_iter_init_find(&it, doc, "p"));
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        bson_t p;
        bson_init_static(&p, data, len);
        bq_error_t err;
        bq_error_clear(&err);
        agg_pipeline_opts_t opts = {.db = "test", .coll = "c"};
        agg_pipeline_t *pl = agg_pipeline_parse(&p, &opts, &err);
        cr_expect(pl == NULL && err.code == cases[i].code, "%s: expected code %d, got %d (%s)",
                  cases[i].json, cases[i].code, err.code, err.message);
        agg_pipeline_destroy(pl);
        bson_destroy(doc);
    }
}
