/*
 * agg_stage_misc.c: the basic-family stages that generate documents or look past the
 * stream: $documents, $redact, $facet, $collStats, $indexStats and NEDB's own $trace
 * (DESIGN.md section 7). The family table is in agg_stage_basic.c.
 *
 * $facet buffers its input (memory-limited like $sort) and runs each branch over a copy,
 * each in a sub-run (agg_run_init_sub) so branches see the pipeline's variables.
 * $collStats, $indexStats and $trace read through the run's agg_source_t; a source that
 * lacks what they need fails with 238 NotImplemented. $collStats's storageStats are the
 * source's storage_stats (the server's are the collStats command's, one function);
 * latencyStats and queryExecStats are zeros, NEDB keeping no per-collection figures.
 *
 * $trace {direction: "backward" | "forward", as: <field>, maxDepth: <n>} adds to every
 * document an array of {seq, ns, depth, doc}: the ops reached by following provenance
 * links from the document, breadth first, each op once (cycles and diamonds), ordered by
 * depth then seq. Backward starts from the seqs the document names in its `_caused_by`
 * field (the stored form of provenance, DESIGN.md section 7); forward starts from the ops
 * that name any version of the document, found through the source's doc_versions. The
 * direct links have depth 1; maxDepth (default: unlimited) bounds the depth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg_expr_int.h"
#include "agg_stage_basic_int.h"

/* ================================================================ $documents */

bool agg__documents_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                          bq_error_t *err)
{
    agg_expr_t *e = agg_expr_compile(spec, pc->scope, err);
    if (!e)
        return false;
    *state = e;
    return true;
}

void agg__documents_free(void *state)
{
    agg_expr_destroy(state);
}

typedef struct docs_gen {
    agg_iter_t base;
    bson_value_t arr;
    bson_iter_t it;
} docs_gen_t;

static int docs_gen_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    docs_gen_t *g = (docs_gen_t *)it;
    if (!bson_iter_next(&g->it))
        return 0;
    if (!BSON_ITER_HOLDS_DOCUMENT(&g->it)) {
        bq_error_set(err, 40228,
                     "'replacement document' must evaluate to an object, but resulting value "
                     "was of type %s: $documents must evaluate to an array of objects",
                     bq_type_name(bson_iter_type(&g->it)));
        return -1;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&g->it, &len, &data);
    *out = bson_new_from_data(data, len);
    return 1;
}

static void docs_gen_close(agg_iter_t *it)
{
    docs_gen_t *g = (docs_gen_t *)it;
    agg_value_cleanup(&g->arr);
    agg_iter_close(it->input);
    bson_free(g);
}

agg_iter_t *agg__documents_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                bq_error_t *err)
{
    bson_t empty = BSON_INITIALIZER;
    agg_env_set_root(&run->env, &empty);
    bson_value_t v;
    bool ok = agg_expr_eval(state, &run->env, &v, err);
    if (ok && v.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 5858203, "error: $documents must evaluate to an array of objects, "
                                   "got %s",
                     agg__type_name(&v));
        ok = false;
    }
    if (!ok) {
        agg_value_cleanup(&v);
        agg_iter_close(input);
        return NULL;
    }
    docs_gen_t *g = BSON_ALIGNED_ALLOC0(docs_gen_t); /* bson_iter_t is over-aligned */
    g->base.next = docs_gen_next;
    g->base.close = docs_gen_close;
    g->base.input = input;
    g->base.run = run;
    g->arr = v;
    agg__iter_init(&g->it, &g->arr);
    return &g->base;
}

/* ================================================================ $redact */

typedef struct redact_state {
    agg_expr_t *e;
    int slot_descend, slot_prune, slot_keep;
} redact_state_t;

bool agg__redact_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                       bq_error_t *err)
{
    /* $$DESCEND, $$PRUNE and $$KEEP exist only inside $redact: a child scope */
    agg_scope_t *scope = agg_scope_new(pc->scope);
    redact_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->slot_descend = agg_scope_define(scope, "DESCEND");
    s->slot_prune = agg_scope_define(scope, "PRUNE");
    s->slot_keep = agg_scope_define(scope, "KEEP");
    s->e = agg_expr_compile(spec, scope, err);
    agg_scope_destroy(scope);
    if (!s->e) {
        free(s);
        return false;
    }
    *state = s;
    return true;
}

void agg__redact_free(void *state)
{
    redact_state_t *s = state;
    if (s) {
        agg_expr_destroy(s->e);
        free(s);
    }
}

enum { REDACT_PRUNE, REDACT_KEEP, REDACT_DESCEND };

static bool redact_doc(const redact_state_t *s, agg_env_t *env, const bson_value_t *doc,
                       bson_t *out, bool *kept, bq_error_t *err);

static bool redact_array(const redact_state_t *s, agg_env_t *env, const bson_value_t *arr,
                         bson_t *out, bq_error_t *err)
{
    bson_iter_t it;
    agg__iter_init(&it, arr);
    uint32_t idx = 0;
    while (bson_iter_next(&it)) {
        bson_value_t el = *bson_iter_value(&it);
        char key[16];
        const char *k;
        if (el.value_type == BSON_TYPE_DOCUMENT) {
            bson_t sub = BSON_INITIALIZER;
            bool kept;
            if (!redact_doc(s, env, &el, &sub, &kept, err)) {
                bson_destroy(&sub);
                return false;
            }
            if (kept) {
                bson_uint32_to_string(idx++, &k, key, sizeof key);
                bson_append_document(out, k, -1, &sub);
            }
            bson_destroy(&sub);
        } else if (el.value_type == BSON_TYPE_ARRAY) {
            bson_t sub = BSON_INITIALIZER;
            if (!redact_array(s, env, &el, &sub, err)) {
                bson_destroy(&sub);
                return false;
            }
            bson_uint32_to_string(idx++, &k, key, sizeof key);
            bson_append_array(out, k, -1, &sub);
            bson_destroy(&sub);
        } else {
            bson_uint32_to_string(idx++, &k, key, sizeof key);
            bson_append_value(out, k, -1, &el);
        }
    }
    return true;
}

/* Redacts one document (doc is a DOCUMENT value): *kept false when pruned. */
static bool redact_doc(const redact_state_t *s, agg_env_t *env, const bson_value_t *doc,
                       bson_t *out, bool *kept, bq_error_t *err)
{
    *kept = false;
    agg_env_set_var_borrowed(env, AGG_VAR_CURRENT, doc);
    bson_value_t v;
    if (!agg_expr_eval(s->e, env, &v, err))
        return false;
    int what = -1;
    if (v.value_type == BSON_TYPE_UTF8) {
        if (!strcmp(v.value.v_utf8.str, "descend"))
            what = REDACT_DESCEND;
        else if (!strcmp(v.value.v_utf8.str, "prune"))
            what = REDACT_PRUNE;
        else if (!strcmp(v.value.v_utf8.str, "keep"))
            what = REDACT_KEEP;
    }
    if (what < 0) {
        bq_error_set(err, 17053,
                     "$redact's expression should not return anything aside from the "
                     "variables $$KEEP, $$DESCEND, and $$PRUNE, but returned %s",
                     v.value_type == BSON_TYPE_EOD ? "MISSING" : agg__type_name(&v));
        agg_value_cleanup(&v);
        return false;
    }
    agg_value_cleanup(&v);
    if (what == REDACT_PRUNE)
        return true;
    *kept = true;
    bson_iter_t it;
    agg__iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        bson_value_t f = *bson_iter_value(&it);
        const char *k = bson_iter_key(&it);
        if (what == REDACT_KEEP || (f.value_type != BSON_TYPE_DOCUMENT &&
                                    f.value_type != BSON_TYPE_ARRAY)) {
            bson_append_iter(out, k, -1, &it);
        } else if (f.value_type == BSON_TYPE_DOCUMENT) {
            bson_t sub = BSON_INITIALIZER;
            bool sub_kept;
            if (!redact_doc(s, env, &f, &sub, &sub_kept, err)) {
                bson_destroy(&sub);
                return false;
            }
            if (sub_kept)
                bson_append_document(out, k, -1, &sub);
            bson_destroy(&sub);
        } else {
            bson_t sub = BSON_INITIALIZER;
            if (!redact_array(s, env, &f, &sub, err)) {
                bson_destroy(&sub);
                return false;
            }
            bson_append_array(out, k, -1, &sub);
            bson_destroy(&sub);
        }
    }
    return true;
}

typedef struct redact_iter {
    agg_iter_t base;
    const redact_state_t *s;
} redact_iter_t;

static int redact_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    const redact_state_t *s = ((redact_iter_t *)it)->s;
    for (;;) {
        bson_t *doc;
        int r = agg_iter_next(it->input, &doc, err);
        if (r <= 0)
            return r;
        agg_env_set_root(&it->run->env, doc);
        bson_value_t dv = {.value_type = BSON_TYPE_DOCUMENT};
        dv.value.v_doc.data = (uint8_t *)bson_get_data(doc);
        dv.value.v_doc.data_len = doc->len;
        bson_t *res = bson_new();
        bool kept;
        bool ok = redact_doc(s, &it->run->env, &dv, res, &kept, err);
        bson_destroy(doc);
        if (!ok || !kept) {
            bson_destroy(res);
            if (!ok)
                return -1;
            continue;
        }
        *out = res;
        return 1;
    }
}

agg_iter_t *agg__redact_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    (void)err;
    const redact_state_t *s = state;
    bson_value_t v;
    agg__set_string(&v, "descend", 7);
    agg_env_set_var(&run->env, s->slot_descend, &v);
    agg_value_cleanup(&v);
    agg__set_string(&v, "prune", 5);
    agg_env_set_var(&run->env, s->slot_prune, &v);
    agg_value_cleanup(&v);
    agg__set_string(&v, "keep", 4);
    agg_env_set_var(&run->env, s->slot_keep, &v);
    agg_value_cleanup(&v);
    redact_iter_t *ri = calloc(1, sizeof *ri);
    if (!ri)
        abort();
    ri->base.next = redact_next;
    ri->base.close = agg__simple_close;
    ri->base.input = input;
    ri->base.run = run;
    ri->s = s;
    return &ri->base;
}

/* ================================================================ $facet */

typedef struct facet_state {
    int n;
    char **names;
    agg_pipeline_t **pipes;
} facet_state_t;

void agg__facet_free(void *state)
{
    facet_state_t *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        bson_free(s->names[i]);
        agg_pipeline_destroy(s->pipes[i]);
    }
    free(s->names);
    free(s->pipes);
    free(s);
}

bool agg__facet_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                      bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 15947, "a facet's fields must be specified in an object");
        return false;
    }
    uint32_t n = agg__array_len(spec);
    if (n == 0) {
        bq_error_set(err, 40169, "the $facet specification must be a non-empty object");
        return false;
    }
    facet_state_t *s = calloc(1, sizeof *s);
    if (!s || !(s->names = calloc(n, sizeof *s->names)) ||
        !(s->pipes = calloc(n, sizeof *s->pipes)))
        abort();
    agg_parse_t sub = *pc;
    sub.in_facet = true;
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        bool bad = false;
        if (!name[0]) {
            bq_error_set(err, 40352, "FieldPath cannot be constructed with empty string");
            bad = true;
        } else if (name[0] == '$') {
            bq_error_set(err, 16410,
                         "FieldPath field names may not start with '$'. Consider using "
                         "$getField or $setField.");
            bad = true;
        } else if (strchr(name, '.')) {
            bq_error_set(err, 16412, "FieldPath field names may not contain '.'.");
            bad = true;
        } else if (!BSON_ITER_HOLDS_ARRAY(&it)) {
            bq_error_set(err, 40170, "arguments to $facet must be arrays, %s is type %s",
                         name, bq_type_name(bson_iter_type(&it)));
            bad = true;
        }
        if (bad) {
            agg__facet_free(s);
            return false;
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        bson_t arr;
        bson_init_static(&arr, data, len);
        agg_pipeline_t *p = agg_pipeline_parse_sub(&arr, &sub, pc->scope, NULL, err);
        if (!p) {
            agg__facet_free(s);
            return false;
        }
        s->names[s->n] = bson_strdup(name);
        s->pipes[s->n++] = p;
    }
    *state = s;
    return true;
}

typedef struct facet_iter {
    agg_iter_t base;
    const facet_state_t *s;
    bool done;
} facet_iter_t;

/* Runs one branch over copies of docs and appends its results as an array. */
static bool facet_branch(const agg_pipeline_t *p, agg_run_t *run, bson_t **docs, size_t n,
                         bson_t *out, const char *name, bq_error_t *err)
{
    agg_run_t sub;
    agg_run_init_sub(&sub, run);
    agg_iter_t *it = agg_pipeline_open(p, agg_iter_from_docs(&sub, docs, n), &sub, err);
    bool ok = it != NULL;
    bson_t arr;
    bson_append_array_begin(out, name, -1, &arr);
    uint32_t idx = 0;
    while (ok) {
        bson_t *d;
        int r = agg_iter_next(it, &d, err);
        if (r < 0)
            ok = false;
        if (r <= 0)
            break;
        char key[16];
        const char *k;
        bson_uint32_to_string(idx++, &k, key, sizeof key);
        bson_append_document(&arr, k, -1, d);
        bson_destroy(d);
    }
    bson_append_array_end(out, &arr);
    agg_iter_close(it);
    agg_run_cleanup(&sub);
    return ok;
}

static int facet_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    facet_iter_t *fi = (facet_iter_t *)it;
    if (fi->done)
        return 0;
    fi->done = true;
    bson_t **docs = NULL;
    size_t n = 0, cap = 0;
    int64_t used = 0;
    bool ok = true;
    for (;;) {
        bson_t *d;
        int r = agg_iter_next(it->input, &d, err);
        if (r < 0)
            ok = false;
        if (r <= 0)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            docs = realloc(docs, cap * sizeof *docs);
            if (!docs)
                abort();
        }
        docs[n++] = d;
        if (!agg_mem_charge(it->run, &used, d->len, "$facet", err)) {
            ok = false;
            break;
        }
    }
    bson_t *res = bson_new();
    for (int i = 0; ok && i < fi->s->n; i++)
        ok = facet_branch(fi->s->pipes[i], it->run, docs, n, res, fi->s->names[i], err);
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    if (ok && res->len > 16 * 1024 * 1024) {
        bq_error_set(err, 4031700,
                     "document constructed by $facet is %u bytes, which exceeds the limit of "
                     "16777216 bytes",
                     res->len);
        ok = false;
    }
    if (!ok) {
        bson_destroy(res);
        return -1;
    }
    *out = res;
    return 1;
}

agg_iter_t *agg__facet_open(const void *state, agg_iter_t *input, agg_run_t *run,
                            bq_error_t *err)
{
    (void)err;
    facet_iter_t *fi = calloc(1, sizeof *fi);
    if (!fi)
        abort();
    fi->base.next = facet_next;
    fi->base.close = agg__simple_close;
    fi->base.input = input;
    fi->base.run = run;
    fi->s = state;
    return &fi->base;
}

/* ================================================================ $collStats, $indexStats */

typedef struct ns_state {
    char *db, *coll;
    /* $collStats: the sections asked for, each added in mongod's order (latencyStats,
     * storageStats, count, queryExecStats) whatever the spec's order */
    bool latency, histograms; /* latencyStats {histograms} */
    bool storage;             /* storageStats {scale} */
    int32_t scale;
    bool count;               /* count {} */
    bool query_exec;          /* queryExecStats {} */
} ns_state_t;

static void ns_free(void *state)
{
    ns_state_t *s = state;
    if (s) {
        bson_free(s->db);
        bson_free(s->coll);
        free(s);
    }
}

static ns_state_t *ns_new(const agg_parse_t *pc)
{
    ns_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->db = bson_strdup(pc->db ? pc->db : "");
    s->coll = bson_strdup(pc->coll);
    return s;
}

void agg__coll_stats_free(void *state) { ns_free(state); }
void agg__index_stats_free(void *state) { ns_free(state); }

bool agg_storage_scale_parse(const bson_iter_t *it, const char *path, int32_t *scale,
                             bq_error_t *err)
{
    double d;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        d = (double)bson_iter_as_int64(it);
        break;
    case BSON_TYPE_DOUBLE:
        d = bson_iter_double(it);
        break;
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;
        char buf[BSON_DECIMAL128_STRING];
        bson_iter_decimal128(it, &dec);
        bson_decimal128_to_string(&dec, buf);
        d = strtod(buf, NULL); /* "NaN", "Infinity" and "-Infinity" parse too */
        break;
    }
    default:
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s' is the wrong type '%s', expected types '[long, int, "
                     "decimal, double]'",
                     path, bq_type_name(bson_iter_type(it)));
        return false;
    }
    /* mongod's safeNumberInt: toward zero, clamped to the int32 range, NaN is 0 */
    int32_t v = d != d ? 0 : d >= 2147483647.0 ? INT32_MAX : d <= -2147483648.0 ? INT32_MIN
                                                                                 : (int32_t)d;
    if (v < 1) {
        bq_error_set(err, 51024, "BSON field 'scale' value must be >= 1, actual value '%d'", v);
        return false;
    }
    *scale = v;
    return true;
}

/* An optionalBool field of a $collStats section (histograms, verbose, ...): a boolean or
 * 14, as mongod's IDL reads them. */
static bool coll_stats_bool(const bson_iter_t *it, bool *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_BOOL(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "Field '%s' should be a boolean value, but found: %s", bson_iter_key(it),
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
    *out = bson_iter_bool(it);
    return true;
}

/* latencyStats {histograms?} and storageStats {scale?, verbose?, waitForLock?,
 * numericOnly?}; other fields are ignored, as mongod's non-strict specs ignore them. */
static bool coll_stats_section(ns_state_t *s, const char *k, bson_iter_t *it, bq_error_t *err)
{
    bson_iter_t f;
    bool ignored;
    bson_iter_recurse(it, &f);
    if (!strcmp(k, "latencyStats")) {
        s->latency = true;
        while (bson_iter_next(&f))
            if (!strcmp(bson_iter_key(&f), "histograms") &&
                !coll_stats_bool(&f, &s->histograms, err))
                return false;
    } else if (!strcmp(k, "storageStats")) {
        s->storage = true;
        s->scale = 1;
        while (bson_iter_next(&f)) {
            const char *fk = bson_iter_key(&f);
            if (!strcmp(fk, "scale")) {
                if (!agg_storage_scale_parse(&f, "$collStats.storageStats.scale", &s->scale,
                                             err))
                    return false;
            } else if (!strcmp(fk, "verbose") || !strcmp(fk, "waitForLock") ||
                       !strcmp(fk, "numericOnly")) {
                if (!coll_stats_bool(&f, &ignored, err)) /* no storage engine details here */
                    return false;
            }
        }
    } else if (!strcmp(k, "count")) {
        s->count = true;
    } else {
        s->query_exec = true;
    }
    return true;
}

bool agg__coll_stats_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                           bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 5447000, "$collStats must take a nested object but found: %s",
                     agg__type_name(spec));
        return false;
    }
    ns_state_t *s = ns_new(pc);
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool known = !strcmp(k, "count") || !strcmp(k, "latencyStats") ||
                     !strcmp(k, "storageStats") || !strcmp(k, "queryExecStats");
        if (!known) {
            bq_error_set(err, 40415, "BSON field '$collStats.%s' is an unknown field.", k);
            goto fail;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '$collStats.%s' is the wrong type '%s', expected type "
                         "'object'",
                         k, bq_type_name(bson_iter_type(&it)));
            goto fail;
        }
        if (!coll_stats_section(s, k, &it, err))
            goto fail;
    }
    if (!pc->coll) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "{aggregate: 1} is not valid for '$collStats'; a collection is required.");
        goto fail;
    }
    *state = s;
    return true;
fail:
    ns_free(s);
    return false;
}

static void host_name(char *buf, size_t size)
{
    if (gethostname(buf, size - 1) != 0)
        snprintf(buf, size, "localhost");
    buf[size - 1] = '\0';
}

typedef struct once_iter {
    agg_iter_t base;
    bson_t *doc; /* yielded once */
} once_iter_t;

static int once_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    (void)err;
    once_iter_t *oi = (once_iter_t *)it;
    if (!oi->doc)
        return 0;
    *out = oi->doc;
    oi->doc = NULL;
    return 1;
}

static void once_close(agg_iter_t *it)
{
    once_iter_t *oi = (once_iter_t *)it;
    if (oi->doc)
        bson_destroy(oi->doc);
    agg_iter_close(it->input);
    free(oi);
}

static agg_iter_t *once_new(agg_iter_t *input, agg_run_t *run, bson_t *doc)
{
    once_iter_t *oi = calloc(1, sizeof *oi);
    if (!oi)
        abort();
    oi->base.next = once_next;
    oi->base.close = once_close;
    oi->base.input = input;
    oi->base.run = run;
    oi->doc = doc;
    return &oi->base;
}

static int64_t run_now(agg_run_t *run)
{
    const bson_value_t *now = agg_env_get_var(&run->env, AGG_VAR_NOW);
    return now->value_type == BSON_TYPE_DATE_TIME ? now->value.v_datetime : 0;
}

/* latencyStats: {reads, writes, commands, transactions}, each {histogram?, latency, ops}
 * as mongod's Top gives them. NEDB keeps no per-collection latencies (serverStatus's
 * counters in wire/cmd_diag.c are per command, not per namespace), so the figures are
 * zeros and the histograms (buckets with a zero count are left out) are empty. */
static void append_latency_stats(bson_t *doc, bool histograms)
{
    static const char *const kinds[] = {"reads", "writes", "commands", "transactions"};
    bson_t lat, kind, hist;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "latencyStats", &lat);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        BSON_APPEND_DOCUMENT_BEGIN(&lat, kinds[i], &kind);
        if (histograms) {
            BSON_APPEND_ARRAY_BEGIN(&kind, "histogram", &hist);
            bson_append_array_end(&kind, &hist);
        }
        BSON_APPEND_INT64(&kind, "latency", 0);
        BSON_APPEND_INT64(&kind, "ops", 0);
        bson_append_document_end(&lat, &kind);
    }
    bson_append_document_end(doc, &lat);
}

/* queryExecStats: {collectionScans: {total, nonTailable}}. NEDB does not count collection
 * scans per collection: zeros. */
static void append_query_exec_stats(bson_t *doc)
{
    bson_t q, scans;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "queryExecStats", &q);
    BSON_APPEND_DOCUMENT_BEGIN(&q, "collectionScans", &scans);
    BSON_APPEND_INT64(&scans, "total", 0);
    BSON_APPEND_INT64(&scans, "nonTailable", 0);
    bson_append_document_end(&q, &scans);
    bson_append_document_end(doc, &q);
}

/* Rewrites err as mongod's uassertStatusOKWithContext does: "<context> :: caused by ::
 * <message>", same code. */
static void caused_by(bq_error_t *err, const char *context)
{
    if (!err)
        return;
    char msg[BQ_ERROR_MSG_MAX];
    memcpy(msg, err->message, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    snprintf(err->message, sizeof err->message, "%s :: caused by :: ", context);
    size_t used = strlen(err->message), len = strlen(msg);
    if (len > sizeof err->message - 1 - used)
        len = sizeof err->message - 1 - used; /* cut, as any long message is */
    memcpy(err->message + used, msg, len);
    err->message[used + len] = '\0';
}

/* One document: {ns, host, localTime, latencyStats?, storageStats?, count?,
 * queryExecStats?}, the sections in that order (mongod's). */
agg_iter_t *agg__coll_stats_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                 bq_error_t *err)
{
    const ns_state_t *s = state;
    const agg_source_t *src = run->source;
    if ((s->count && (!src || !src->count)) || (s->storage && (!src || !src->storage_stats))) {
        bq_error_set(err, BQ_ERR_NotImplemented, "$collStats needs a collection source");
        agg_iter_close(input);
        return NULL;
    }
    char host[256];
    host_name(host, sizeof host);
    bson_t *doc = bson_new();
    char *ns = bson_strdup_printf("%s.%s", s->db, s->coll);
    BSON_APPEND_UTF8(doc, "ns", ns);
    bson_free(ns);
    BSON_APPEND_UTF8(doc, "host", host);
    BSON_APPEND_DATE_TIME(doc, "localTime", run_now(run));
    if (s->latency)
        append_latency_stats(doc, s->histograms);
    if (s->storage) {
        bson_t st;
        BSON_APPEND_DOCUMENT_BEGIN(doc, "storageStats", &st);
        bool ok = src->storage_stats(src->ctx, s->db, s->coll, s->scale, &st, err);
        bson_append_document_end(doc, &st);
        if (!ok) {
            if (err && err->code != BQ_ERR_CommandNotSupportedOnView) /* thrown, in mongod */
                caused_by(err, "Unable to retrieve storageStats in $collStats stage");
            bson_destroy(doc);
            agg_iter_close(input);
            return NULL;
        }
    }
    if (s->count) {
        int64_t n = 0;
        if (!src->count(src->ctx, s->db, s->coll, &n, err)) {
            if (err && err->code != BQ_ERR_CommandNotSupportedOnView) /* thrown, in mongod */
                caused_by(err, "Unable to retrieve count in $collStats stage");
            bson_destroy(doc);
            agg_iter_close(input);
            return NULL;
        }
        bq_num_append(doc, "count", n);
    }
    if (s->query_exec)
        append_query_exec_stats(doc);
    return once_new(input, run, doc);
}

bool agg__index_stats_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                            bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT || agg__array_len(spec) != 0) {
        bq_error_set(err, 28803, "The $indexStats stage specification must be an empty object");
        return false;
    }
    if (!pc->coll) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "{aggregate: 1} is not valid for '$indexStats'; a collection is "
                     "required.");
        return false;
    }
    *state = ns_new(pc);
    return true;
}

/* One document per index of the collection (none when it does not exist), in
 * listIndexes order: {name, key, host, accesses: {ops, since}, spec}. NEDB does not count
 * index accesses: ops is 0 and since is the time of the command. */
agg_iter_t *agg__index_stats_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                  bq_error_t *err)
{
    const ns_state_t *s = state;
    const agg_source_t *src = run->source;
    agg_iter_close(input);
    if (!src || !src->indexes) {
        bq_error_set(err, BQ_ERR_NotImplemented, "$indexStats needs a collection source");
        return NULL;
    }
    bson_t **specs;
    size_t n;
    if (!src->indexes(src->ctx, s->db, s->coll, &specs, &n, err))
        return NULL;
    char host[256];
    host_name(host, sizeof host);
    for (size_t i = 0; i < n; i++) {
        bson_t *doc = bson_new(), acc;
        bson_iter_t it;
        if (bson_iter_init_find(&it, specs[i], "name"))
            bson_append_iter(doc, "name", 4, &it);
        if (bson_iter_init_find(&it, specs[i], "key"))
            bson_append_iter(doc, "key", 3, &it);
        BSON_APPEND_UTF8(doc, "host", host);
        BSON_APPEND_DOCUMENT_BEGIN(doc, "accesses", &acc);
        BSON_APPEND_INT64(&acc, "ops", 0);
        BSON_APPEND_DATE_TIME(&acc, "since", run_now(run));
        bson_append_document_end(doc, &acc);
        BSON_APPEND_DOCUMENT(doc, "spec", specs[i]);
        bson_destroy(specs[i]);
        specs[i] = doc;
    }
    agg_iter_t *out = agg_iter_from_docs(run, specs, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(specs[i]);
    free(specs);
    return out;
}

/* ================================================================ $listLocalSessions */

/* {$listLocalSessions: {}} | {allUsers: true} | {users: [{user, db}]}: the server's
 * sessions, through run->source->list_sessions. NEDB has no users, so every session
 * belongs to the one unauthenticated user and the three forms list the same sessions. */
bool agg__list_local_sessions_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                                    bq_error_t *err)
{
    (void)state;
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$listLocalSessions must take an object, not %s", agg__type_name(spec));
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "allUsers") && BSON_ITER_HOLDS_BOOL(&it))
            continue;
        if (!strcmp(k, "users") && BSON_ITER_HOLDS_ARRAY(&it))
            continue;
        if (strcmp(k, "allUsers") && strcmp(k, "users")) {
            bq_error_set(err, 40415, "BSON field '$listLocalSessions.%s' is an unknown field.",
                         k);
        } else {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '$listLocalSessions.%s' is the wrong type '%s'", k,
                         bq_type_name(bson_iter_type(&it)));
        }
        return false;
    }
    if (pc->coll) {
        bq_error_set(err, BQ_ERR_InvalidNamespace,
                     "$listLocalSessions must be run against the database with "
                     "{aggregate: 1}, not against a collection");
        return false;
    }
    return true;
}

agg_iter_t *agg__list_local_sessions_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                          bq_error_t *err)
{
    (void)state;
    agg_iter_close(input);
    if (!run->source || !run->source->list_sessions) {
        bq_error_set(err, BQ_ERR_NotImplemented, "$listLocalSessions needs the server's "
                                                 "sessions and none were given");
        return NULL;
    }
    bson_t **docs = NULL;
    size_t n = 0;
    if (!run->source->list_sessions(run->source->ctx, &docs, &n, err))
        return NULL;
    agg_iter_t *it = agg_iter_from_docs(run, docs, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    return it;
}

void agg__list_local_sessions_free(void *state)
{
    (void)state;
}

/* ================================================================ $trace */

typedef struct trace_state {
    bool forward;
    char **as_parts;
    int nas;
    int64_t max_depth; /* 0: unlimited */
    char *db, *coll;
} trace_state_t;

void agg__trace_free(void *state)
{
    trace_state_t *s = state;
    if (!s)
        return;
    if (s->as_parts)
        agg__path_free(s->as_parts, s->nas);
    bson_free(s->db);
    bson_free(s->coll);
    free(s);
}

bool agg__trace_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                      bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$trace takes an object {direction, as, maxDepth}, got %s",
                     agg__type_name(spec));
        return false;
    }
    trace_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    bool have_dir = false, ok = true;
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "direction")) {
            if (v->value_type != BSON_TYPE_UTF8 ||
                (strcmp(v->value.v_utf8.str, "backward") != 0 &&
                 strcmp(v->value.v_utf8.str, "forward") != 0)) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "$trace direction must be \"backward\" or \"forward\"");
                ok = false;
            } else {
                s->forward = !strcmp(v->value.v_utf8.str, "forward");
                have_dir = true;
            }
        } else if (!strcmp(k, "as")) {
            if (v->value_type != BSON_TYPE_UTF8) {
                bq_error_set(err, BQ_ERR_TypeMismatch, "$trace as must be a string, got %s",
                             agg__type_name(v));
                ok = false;
            } else if ((ok = agg__field_path_check(v->value.v_utf8.str, err))) {
                if (s->as_parts)
                    agg__path_free(s->as_parts, s->nas);
                s->as_parts = agg__path_split(v->value.v_utf8.str, &s->nas);
            }
        } else if (!strcmp(k, "maxDepth")) {
            bool exact = false;
            int64_t d = 0;
            if (!bq_num_is_number(v) || !bq_num_to_int64(v, &d, &exact) || !exact || d < 1) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "$trace maxDepth must be a positive integer");
                ok = false;
            } else {
                s->max_depth = d;
            }
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "unknown argument to $trace: %s (expected direction, as, maxDepth)",
                         k);
            ok = false;
        }
    }
    if (ok && (!have_dir || !s->as_parts)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$trace requires %s",
                     !have_dir ? "direction" : "as");
        ok = false;
    }
    if (!ok) {
        agg__trace_free(s);
        return false;
    }
    s->db = bson_strdup(pc->db ? pc->db : "");
    s->coll = pc->coll ? bson_strdup(pc->coll) : NULL;
    *state = s;
    return true;
}

typedef struct seqset {
    int64_t *v;
    size_t n, cap;
} seqset_t;

static bool seqset_has(const seqset_t *s, int64_t x)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == x)
            return true;
    return false;
}

static void seqset_add(seqset_t *s, int64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            abort();
    }
    s->v[s->n++] = x;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct trace_iter {
    agg_iter_t base;
    const trace_state_t *s;
} trace_iter_t;

/* Adds to level the links of seq (in the stage's direction). */
static bool trace_links(const agg_source_t *src, int64_t seq, bool forward, seqset_t *level,
                        bq_error_t *err)
{
    int64_t *links = NULL;
    size_t n = 0;
    if (!src->prov_links(src->ctx, seq, forward, &links, &n, err)) {
        free(links);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!seqset_has(level, links[i]))
            seqset_add(level, links[i]);
    free(links);
    return true;
}

/* Builds the trace array of one document into arr. */
static bool trace_doc(const trace_state_t *s, agg_run_t *run, const bson_t *doc, bson_t *arr,
                      bq_error_t *err)
{
    const agg_source_t *src = run->source;
    seqset_t seen = {0}, level = {0}, next = {0};
    bool ok = true;
    if (!s->forward) {
        bson_iter_t it, ai;
        if (bson_iter_init_find(&it, doc, "_caused_by") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &ai)) {
            while (bson_iter_next(&ai)) {
                int64_t x;
                bool exact = false;
                const bson_value_t *v = bson_iter_value(&ai);
                if (bq_num_is_number(v) && bq_num_to_int64(v, &x, &exact) && exact &&
                    x >= 0 && !seqset_has(&level, x))
                    seqset_add(&level, x);
            }
        }
    } else {
        bson_iter_t it;
        if (s->coll && src->doc_versions && bson_iter_init_find(&it, doc, "_id")) {
            int64_t *vers = NULL;
            size_t nv = 0;
            ok = src->doc_versions(src->ctx, s->db, s->coll, bson_iter_value(&it), &vers, &nv,
                                   err);
            for (size_t i = 0; ok && i < nv; i++) {
                seqset_add(&seen, vers[i]);
                ok = trace_links(src, vers[i], true, &level, err);
            }
            free(vers);
        }
    }
    uint32_t idx = 0;
    for (int64_t depth = 1; ok && level.n > 0; depth++) {
        qsort(level.v, level.n, sizeof *level.v, cmp_i64);
        next.n = 0;
        for (size_t i = 0; ok && i < level.n; i++) {
            int64_t seq = level.v[i];
            if (seqset_has(&seen, seq))
                continue;
            seqset_add(&seen, seq);
            char ns[512] = "";
            bson_t *vdoc = NULL;
            if (!src->op_doc(src->ctx, seq, ns, sizeof ns, &vdoc, err)) {
                ok = false;
                break;
            }
            char key[16];
            const char *k;
            bson_uint32_to_string(idx++, &k, key, sizeof key);
            bson_t e;
            bson_append_document_begin(arr, k, -1, &e);
            BSON_APPEND_INT64(&e, "seq", seq);
            BSON_APPEND_UTF8(&e, "ns", ns);
            BSON_APPEND_INT32(&e, "depth", (int32_t)depth);
            if (vdoc)
                BSON_APPEND_DOCUMENT(&e, "doc", vdoc);
            bson_append_document_end(arr, &e);
            if (vdoc)
                bson_destroy(vdoc);
            if (s->max_depth == 0 || depth < s->max_depth)
                ok = trace_links(src, seq, s->forward, &next, err);
            if (ok && (idx & 255) == 0 && agg_run_expired(run, err))
                ok = false;
        }
        seqset_t t = level;
        level = next;
        next = t;
    }
    free(seen.v);
    free(level.v);
    free(next.v);
    return ok;
}

static int trace_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    const trace_state_t *s = ((trace_iter_t *)it)->s;
    bson_t *doc;
    int r = agg_iter_next(it->input, &doc, err);
    if (r <= 0)
        return r;
    bson_t arr = BSON_INITIALIZER;
    if (!trace_doc(s, it->run, doc, &arr, err)) {
        bson_destroy(&arr);
        bson_destroy(doc);
        return -1;
    }
    bson_value_t v = {.value_type = BSON_TYPE_ARRAY};
    v.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
    v.value.v_doc.data_len = arr.len;
    bson_t *res = bson_new();
    agg__doc_set_path(bson_get_data(doc), doc->len, s->as_parts, s->nas, &v, res);
    bson_destroy(&arr);
    bson_destroy(doc);
    *out = res;
    return 1;
}

agg_iter_t *agg__trace_open(const void *state, agg_iter_t *input, agg_run_t *run,
                            bq_error_t *err)
{
    if (!run->source || !run->source->prov_links || !run->source->op_doc) {
        bq_error_set(err, BQ_ERR_NotImplemented,
                     "$trace needs provenance from the server; this pipeline's source has "
                     "none");
        agg_iter_close(input);
        return NULL;
    }
    trace_iter_t *ti = calloc(1, sizeof *ti);
    if (!ti)
        abort();
    ti->base.next = trace_next;
    ti->base.close = agg__simple_close;
    ti->base.input = input;
    ti->base.run = run;
    ti->s = state;
    return &ti->base;
}
