/*
 * cmd_explain.c: explain of find, count, distinct, update, delete and findAndModify
 * (explain of aggregate is cmd_aggregate.c's, which calls here for the others).
 *
 * The reply has mongod's shape (explainVersion "1", queryPlanner {namespace, parsedQuery,
 * winningPlan, rejectedPlans}, executionStats when the verbosity asks for it, command,
 * serverInfo) so that drivers and mongosh's .explain() read it. The plans are what NEDB
 * really does: IDHACK for an {_id: <value>} filter without a collation (the _id index),
 * FETCH over IXSCAN where wire_ixscan_run (wire_util.c, the decision the reads themselves
 * take) answers an equality or $in from a single-field index, otherwise COLLSCAN with the
 * filter, under SORT / SKIP / LIMIT / PROJECTION_DEFAULT for find, COUNT or
 * RECORD_STORE_FAST_COUNT for count, UPDATE / DELETE for writes.
 *
 * executionStats runs the read part at the command's snapshot (the filter over the scan,
 * stopping where the real command stops: at the first match of a single-document write,
 * at skip + limit of an unsorted find) and counts; a write is never executed, as in
 * mongod (nWouldModify and nWouldDelete say what it would have touched).
 *
 * This file reads the store at one snapshot and never writes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bq_sort.h"
#include "cmd_aggregate.h"
#include "cmd_view.h"
#include "wire_cmd.h"

/* One stage of a plan, from the outermost in; the last one reads the collection. */
typedef struct layer {
    const char *stage;
    const char *doc_key;     /* a document field (filter, sortPattern, transformBy) or NULL */
    const bson_t *doc;
    const char *num_key;     /* skipAmount, limitAmount or NULL */
    int64_t num;
    int64_t n_returned;      /* for executionStats */
    const char *stat_key[4]; /* extra counters (docsExamined, nMatched, ...) */
    int64_t stat[4];
    const bson_t *ixscan;    /* IXSCAN: the index fields (keyPattern ... indexBounds) */
} layer_t;

#define MAX_LAYERS 7

typedef struct plan {
    layer_t l[MAX_LAYERS];
    int n;
} plan_t;

static layer_t *plan_push(plan_t *p, const char *stage)
{
    BSON_ASSERT(p->n < MAX_LAYERS);
    layer_t *l = &p->l[p->n++];
    memset(l, 0, sizeof *l);
    l->stage = stage;
    return l;
}

static void plan_append(bson_t *out, const plan_t *p, int i, bool stats)
{
    const layer_t *l = &p->l[i];
    BSON_APPEND_UTF8(out, "stage", l->stage);
    if (l->doc_key && l->doc && !bson_empty(l->doc))
        BSON_APPEND_DOCUMENT(out, l->doc_key, l->doc);
    if (!strcmp(l->stage, "COLLSCAN"))
        BSON_APPEND_UTF8(out, "direction", "forward");
    if (l->ixscan)
        bson_concat(out, l->ixscan);
    if (!strcmp(l->stage, "SORT")) {
        bq_num_append(out, "memLimit", 104857600);
        BSON_APPEND_UTF8(out, "type", "simple");
    }
    if (l->num_key)
        bq_num_append(out, l->num_key, l->num);
    if (stats) {
        bq_num_append(out, "nReturned", l->n_returned);
        bq_num_append(out, "executionTimeMillisEstimate", 0);
        for (int k = 0; k < 4; k++)
            if (l->stat_key[k])
                bq_num_append(out, l->stat_key[k], l->stat[k]);
    }
    if (i + 1 < p->n) {
        bson_t child;
        BSON_APPEND_DOCUMENT_BEGIN(out, "inputStage", &child);
        plan_append(&child, p, i + 1, stats);
        bson_append_document_end(out, &child);
    }
}

/* ---------------------------------------------------------------- parsedQuery */

/* mongod's normalised filter, as far as explain readers care: field: value becomes
 * field: {$eq: value}, a field with several operators and several top-level predicates
 * become one $and of single predicates. */
static void parsed_query(const bson_t *filter, bson_t *out)
{
    bson_t preds = BSON_INITIALIZER;
    uint32_t n = 0;
    bson_iter_t it;
    bson_iter_init(&it, filter);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_iter_t sub;
        bool ops = k[0] != '$' && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
                   bson_iter_next(&sub) && bson_iter_key(&sub)[0] == '$';
        char key[16];
        bson_t p, op;
        if (ops) {
            bson_iter_recurse(&it, &sub);
            while (bson_iter_next(&sub)) {
                snprintf(key, sizeof key, "%u", n++);
                BSON_APPEND_DOCUMENT_BEGIN(&preds, key, &p);
                BSON_APPEND_DOCUMENT_BEGIN(&p, k, &op);
                bson_append_iter(&op, bson_iter_key(&sub), -1, &sub);
                bson_append_document_end(&p, &op);
                bson_append_document_end(&preds, &p);
            }
        } else {
            snprintf(key, sizeof key, "%u", n++);
            BSON_APPEND_DOCUMENT_BEGIN(&preds, key, &p);
            if (k[0] == '$') {
                bson_append_iter(&p, k, -1, &it);
            } else {
                BSON_APPEND_DOCUMENT_BEGIN(&p, k, &op);
                bson_append_iter(&op, "$eq", 3, &it);
                bson_append_document_end(&p, &op);
            }
            bson_append_document_end(&preds, &p);
        }
    }
    if (n == 1) {
        bson_iter_t first, d;
        bson_iter_init(&first, &preds);
        bson_iter_next(&first);
        bson_iter_recurse(&first, &d);
        while (bson_iter_next(&d))
            bson_append_iter(out, bson_iter_key(&d), -1, &d);
    } else if (n > 1) {
        BSON_APPEND_ARRAY(out, "$and", &preds);
    }
    bson_destroy(&preds);
}

/* ---------------------------------------------------------------- IXSCAN */

/* One bound as mongod prints it in indexBounds (BSONElement::toString without the name). */
static void bound_append(bson_string_t *s, const bson_value_t *v)
{
    char num[64];
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        bson_string_append_printf(s, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        bson_string_append_printf(s, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (isnan(d))
            bson_string_append(s, "nan");
        else if (isinf(d))
            bson_string_append(s, d < 0 ? "-inf" : "inf");
        else {
            snprintf(num, sizeof num, "%.16g", d);
            bson_string_append(s, num);
            if (!strpbrk(num, ".e"))
                bson_string_append(s, ".0");
        }
        break;
    }
    case BSON_TYPE_DECIMAL128: {
        char dec[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, dec);
        bson_string_append_printf(s, "NumberDecimal(\"%s\")", dec);
        break;
    }
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL: {
        const char *p = v->value_type == BSON_TYPE_UTF8 ? v->value.v_utf8.str
                                                         : v->value.v_symbol.symbol;
        uint32_t n = v->value_type == BSON_TYPE_UTF8 ? v->value.v_utf8.len
                                                      : v->value.v_symbol.len;
        bson_string_append_c(s, '"');
        for (uint32_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c == '"' || c == '\\')
                bson_string_append_printf(s, "\\%c", c);
            else if (c < 0x20)
                bson_string_append_printf(s, "\\u%04x", c);
            else
                bson_string_append_c(s, (char)c);
        }
        bson_string_append_c(s, '"');
        break;
    }
    case BSON_TYPE_BOOL:
        bson_string_append(s, v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_DATE_TIME:
        bson_string_append_printf(s, "new Date(%lld)", (long long)v->value.v_datetime);
        break;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        bson_string_append_printf(s, "ObjectId('%s')", hex);
        break;
    }
    case BSON_TYPE_TIMESTAMP:
        bson_string_append_printf(s, "Timestamp(%u, %u)", v->value.v_timestamp.timestamp,
                                  v->value.v_timestamp.increment);
        break;
    case BSON_TYPE_MINKEY:
        bson_string_append(s, "MinKey");
        break;
    case BSON_TYPE_MAXKEY:
        bson_string_append(s, "MaxKey");
        break;
    default: { /* documents, binary data, code...: their relaxed Extended JSON */
        bson_t one = BSON_INITIALIZER;
        bson_append_value(&one, "v", 1, v);
        bson_iter_t it;
        size_t len;
        char *json = NULL;
        if (bson_iter_init_find(&it, &one, "v") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t dl;
            const uint8_t *dd;
            bson_t sub;
            bson_iter_document(&it, &dl, &dd);
            if (bson_init_static(&sub, dd, dl))
                json = bson_as_relaxed_extended_json(&sub, &len);
        } else {
            json = bson_as_relaxed_extended_json(&one, &len); /* {"v" : ...} */
        }
        bson_string_append(s, json ? json : "?");
        bson_free(json);
        bson_destroy(&one);
        break;
    }
    }
}

/* Marks bit j of *mask when component j of the path holds an array in doc (an array is
 * walked into through its documents, as index keys are made). */
static void multikey_walk(const bson_t *doc, char **comp, int ncomp, int j, uint64_t *mask)
{
    bson_iter_t it;
    if (j >= ncomp || !bson_iter_init_find(&it, doc, comp[j]))
        return;
    bson_t sub;
    uint32_t len;
    const uint8_t *data;
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        if (j < 64)
            *mask |= 1ull << j;
        bson_iter_t el;
        bson_iter_recurse(&it, &el);
        while (bson_iter_next(&el)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&el))
                continue;
            bson_iter_document(&el, &len, &data);
            if (bson_init_static(&sub, data, len))
                multikey_walk(&sub, comp, ncomp, j + 1, mask);
        }
    } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&sub, data, len))
            multikey_walk(&sub, comp, ncomp, j + 1, mask);
    }
}

/* Appends mongod's IXSCAN fields for ix (keyPattern ... indexBounds) to out. isMultiKey and
 * multiKeyPaths come from the documents of c at snap: NEDB keeps no multikey flag, so an
 * index whose arrays were all removed reads as not multikey here (mongod's flag stays).
 * Returns isMultiKey. */
static bool ixscan_describe(eng_coll_t *c, int64_t snap, const wire_ixscan_t *ix, bson_t *out)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, ix->spec, "key"))
        bson_append_iter(out, "keyPattern", -1, &it);
    if (bson_iter_init_find(&it, ix->spec, "name"))
        bson_append_iter(out, "indexName", -1, &it);

    char *path = bson_strdup(ix->field), *comp[64];
    int ncomp = 0;
    for (char *p = path, *save = NULL, *t; ncomp < 64 && (t = strtok_r(p, ".", &save)); p = NULL)
        comp[ncomp++] = t;
    uint64_t mask = 0, all = ncomp >= 64 ? UINT64_MAX : (1ull << ncomp) - 1;
    eng_scan_t scan;
    eng_doc_t d;
    eng_scan_init(&scan, c, snap, false);
    while (mask != all && eng_scan_next(&scan, &d)) {
        bson_t doc;
        if (bson_init_static(&doc, d.data, d.len))
            multikey_walk(&doc, comp, ncomp, 0, &mask);
    }
    BSON_APPEND_BOOL(out, "isMultiKey", mask != 0);
    bson_t mkp, arr;
    BSON_APPEND_DOCUMENT_BEGIN(out, "multiKeyPaths", &mkp);
    bson_append_array_begin(&mkp, ix->field, -1, &arr);
    bson_string_t *prefix = bson_string_new(NULL);
    for (int j = 0, n = 0; j < ncomp; j++) {
        if (j)
            bson_string_append_c(prefix, '.');
        bson_string_append(prefix, comp[j]);
        if (mask & (1ull << j)) {
            char k[16];
            snprintf(k, sizeof k, "%d", n++);
            BSON_APPEND_UTF8(&arr, k, prefix->str);
        }
    }
    bson_string_free(prefix, true);
    bson_append_array_end(&mkp, &arr);
    bson_append_document_end(out, &mkp);
    bson_free(path);

    BSON_APPEND_BOOL(out, "isUnique",
                     bson_iter_init_find(&it, ix->spec, "unique") && bson_iter_as_bool(&it));
    BSON_APPEND_BOOL(out, "isSparse",
                     bson_iter_init_find(&it, ix->spec, "sparse") && bson_iter_as_bool(&it));
    BSON_APPEND_BOOL(out, "isPartial", false); /* a partial index is never used (wire_ixscan) */
    BSON_APPEND_INT32(out, "indexVersion",
                      bson_iter_init_find(&it, ix->spec, "v") && BSON_ITER_HOLDS_NUMBER(&it)
                          ? (int32_t)bson_iter_as_int64(&it)
                          : 2);
    BSON_APPEND_UTF8(out, "direction", "forward");
    bson_t bounds, pts;
    BSON_APPEND_DOCUMENT_BEGIN(out, "indexBounds", &bounds);
    bson_append_array_begin(&bounds, ix->field, -1, &pts);
    for (size_t i = 0; i < ix->npoints; i++) {
        bson_string_t *b = bson_string_new("[");
        bound_append(b, &ix->points[i]);
        bson_string_append(b, ", ");
        bound_append(b, &ix->points[i]);
        bson_string_append_c(b, ']');
        char k[24];
        snprintf(k, sizeof k, "%zu", i);
        BSON_APPEND_UTF8(&pts, k, b->str);
        bson_string_free(b, true);
    }
    bson_append_array_end(&bounds, &pts);
    bson_append_document_end(out, &bounds);
    return mask != 0;
}

/* The filter without its top-level field number `skip`: what FETCH still checks. */
static void filter_without(const bson_t *filter, uint32_t skip, bson_t *out)
{
    bson_iter_t it;
    uint32_t pos = 0;
    if (bson_iter_init(&it, filter))
        while (bson_iter_next(&it))
            if (pos++ != skip)
                bson_append_iter(out, bson_iter_key(&it), -1, &it);
}

/* ---------------------------------------------------------------- running the read part */

typedef struct scan_result {
    int64_t examined, matched;
} scan_result_t;

/* Reads c at snap as the command would: the _id lookup (idhack), the candidates of an
 * index (ix, all of them matched, as the reads do), or a scan with m stopping after
 * stop_after matches (0: never). */
static bool explain_scan(eng_coll_t *c, int64_t snap, const bson_t *filter, bool idhack,
                         const wire_ixscan_t *ix, const bq_match_t *m, int64_t stop_after,
                         scan_result_t *r, bq_error_t *err)
{
    memset(r, 0, sizeof *r);
    if (!c)
        return true;
    eng_doc_t d;
    bson_t doc;
    bson_value_t id;
    if (idhack && wire_filter_id_eq(filter, &id)) {
        bool found;
        if (!eng_coll_find_id_checked(c, snap, &id, &d, &found, err))
            return false;
        r->examined = r->matched = found ? 1 : 0;
        return true;
    }
    if (ix) {
        for (size_t i = 0; i < ix->ndocs; i++) {
            r->examined++;
            if (!bson_init_static(&doc, ix->docs[i].data, ix->docs[i].len))
                continue;
            int ok = bq_match_eval_env(m, &doc, NULL, err);
            if (ok < 0)
                return false;
            r->matched += ok;
        }
        return true;
    }
    eng_scan_t scan;
    eng_scan_init(&scan, c, snap, false);
    while (eng_scan_next(&scan, &d)) {
        r->examined++;
        if (!bson_init_static(&doc, d.data, d.len))
            continue;
        int ok = bq_match_eval_env(m, &doc, NULL, err);
        if (ok < 0)
            return false;
        if (ok && ++r->matched == stop_after)
            return true;
    }
    return wire_scan_done(&scan, err);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- the commands */

typedef struct explain_in {
    const char *coll;
    bson_t filter;          /* borrowed */
    bool has_sort, has_proj, idhack;
    bson_t sort, proj;      /* borrowed */
    int64_t skip, limit;
    bool write, multi, upsert, remove;
} explain_in_t;

/* The document field `key` of doc (borrowed), empty when absent. */
static bool doc_field(const bson_t *doc, const char *key, const char *cmd, bson_t *out,
                      bool *present, bq_error_t *err)
{
    bson_iter_t it;
    *present = false;
    bson_init_static(out, (const uint8_t *)"\005\0\0\0\0", 5);
    if (!bson_iter_init_find(&it, doc, key) || BSON_ITER_HOLDS_NULL(&it))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", cmd,
                     key, bq_type_name(bson_iter_type(&it)));
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_init_static(out, data, len);
    *present = true;
    return true;
}

static int64_t num_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

static bool bool_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && bson_iter_as_bool(&it);
}

/* The one statement of an explained update / delete (mongod explains batches of one). */
static bool one_statement(const bson_t *cmd, const char *key, bson_t *out, bq_error_t *err)
{
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, cmd, key) || !BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "BSON field '%s' is missing but a required field",
                     key);
        return false;
    }
    bson_iter_recurse(&it, &arr);
    int n = 0;
    while (bson_iter_next(&arr)) {
        if (n++ == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                bq_error_set(err, BQ_ERR_TypeMismatch, "a %s statement must be an object", key);
                return false;
            }
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&arr, &len, &data);
            bson_init_static(out, data, len);
        }
    }
    if (n != 1) {
        bq_error_set(err, BQ_ERR_InvalidLength, "explained write batches must be of size 1");
        return false;
    }
    return true;
}

/* Reads the inner command into `in`. */
static bool explain_parse(wire_cmd_ctx_t *sub, const char *name, explain_in_t *in,
                          bq_error_t *err)
{
    const bson_t *cmd = sub->cmd;
    bool present;
    memset(in, 0, sizeof *in);
    if (!wire_arg_coll(sub, false, &in->coll, err))
        return false;
    if (!strcmp(name, "find")) {
        if (!doc_field(cmd, "filter", name, &in->filter, &present, err) ||
            !doc_field(cmd, "sort", name, &in->sort, &in->has_sort, err) ||
            !doc_field(cmd, "projection", name, &in->proj, &in->has_proj, err))
            return false;
        in->skip = num_field(cmd, "skip");
        in->limit = num_field(cmd, "limit");
        if (in->skip < 0 || in->limit < 0) {
            bq_error_set(err, 51024, "BSON field '%s' value must be >= 0",
                         in->skip < 0 ? "skip" : "limit");
            return false;
        }
    } else if (!strcmp(name, "count") || !strcmp(name, "distinct")) {
        if (!doc_field(cmd, "query", name, &in->filter, &present, err))
            return false;
        in->skip = num_field(cmd, "skip");
        in->limit = llabs(num_field(cmd, "limit"));
    } else if (!strcmp(name, "update") || !strcmp(name, "delete")) {
        bool upd = !strcmp(name, "update");
        bson_t st;
        if (!one_statement(cmd, upd ? "updates" : "deletes", &st, err) ||
            !doc_field(&st, "q", name, &in->filter, &present, err))
            return false;
        in->write = true;
        in->remove = !upd;
        in->multi = upd ? bool_field(&st, "multi") : num_field(&st, "limit") == 0;
        in->upsert = upd && bool_field(&st, "upsert");
        in->has_sort = false;
    } else { /* findAndModify */
        if (!doc_field(cmd, "query", name, &in->filter, &present, err) ||
            !doc_field(cmd, "sort", name, &in->sort, &in->has_sort, err) ||
            !doc_field(cmd, "fields", name, &in->proj, &in->has_proj, err))
            return false;
        in->write = true;
        in->remove = bool_field(cmd, "remove");
        in->upsert = bool_field(cmd, "upsert");
        in->limit = 1;
    }
    in->has_sort = in->has_sort && !bson_empty(&in->sort);
    in->has_proj = in->has_proj && !bson_empty(&in->proj);
    return true;
}

bool wire_explain_command(wire_cmd_ctx_t *ctx, const bson_t *inner, const char *verbosity,
                          bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, inner);
    bson_iter_next(&it);
    const char *name = bson_iter_key(&it);
    static const char *const known[] = {"find", "count", "distinct", "update", "delete",
                                        "findAndModify", "findandmodify"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok = ok || !strcmp(name, known[i]);
    if (!ok) {
        bq_error_set(err, BQ_ERR_CommandNotFound, "Explain failed due to unknown command: %s",
                     name);
        return false;
    }
    if (!strcmp(name, "findandmodify"))
        name = "findAndModify";
    wire_cmd_ctx_t sub = *ctx;
    sub.cmd = inner;
    sub.name = name;
    explain_in_t in;
    int64_t snap;
    bq_collation_t *co;
    if (!explain_parse(&sub, name, &in, err) || !wire_read_snapshot(&sub, &snap, err))
        return false;
    if (wire_view_is(ctx->server->db, ctx->db, in.coll, snap)) {
        if (in.write) {
            bq_error_set(err, BQ_ERR_CommandNotSupportedOnView,
                         "Namespace %s.%s is a view, not a collection", ctx->db, in.coll);
            return false;
        }
        return wire_view_find_explain(&sub, in.coll, err); /* the aggregate it becomes */
    }
    if (!wire_collation(inner, &co, err))
        return false;
    bq_match_t *m = wire_match_compile(&sub, &in.filter, co, err);
    bool collated = co != NULL;
    bq_collation_destroy(co);
    if (!m)
        return false;
    bq_sort_t *s = NULL;
    if (in.has_sort && !(s = bq_sort_compile(&in.sort, err))) {
        bq_match_destroy(m);
        return false;
    }
    int natural_dir = 1;
    if (s) {
        if (!bq_sort_is_natural(s, &natural_dir))
            natural_dir = 1;
        bq_sort_destroy(s);
    }
    bson_value_t idv;
    in.idhack = !collated && !in.has_sort && wire_filter_id_eq(&in.filter, &idv) &&
                strcmp(name, "count") && strcmp(name, "distinct");
    bool stats = strcmp(verbosity, "queryPlanner") != 0;
    bool fast_count = !strcmp(name, "count") && bson_empty(&in.filter);

    /* the index the read would use: the same decision (cmd_find.c reads through it too);
     * a {$natural: -1} find scans backwards instead */
    eng_coll_t *c = eng_coll_get(ctx->server->db, ctx->db, in.coll, snap);
    wire_ixscan_t ix;
    bool use_ix = !in.idhack && !collated && !fast_count &&
                  !(!strcmp(name, "find") && natural_dir < 0) &&
                  wire_ixscan_run(c, snap, &in.filter, &ix);

    /* run the read part */
    bool find = !strcmp(name, "find"), count = !strcmp(name, "count");
    int64_t stop = 0;
    if (find && !in.has_sort && in.limit > 0)
        stop = in.skip + in.limit;
    else if (in.write && !in.multi && !in.has_sort)
        stop = 1;
    scan_result_t r = {0};
    int64_t t0 = monotonic_ms();
    if (stats && !explain_scan(c, snap, &in.filter, in.idhack, use_ix ? &ix : NULL, m, stop,
                               &r, err)) {
        bq_match_destroy(m);
        if (use_ix)
            wire_ixscan_cleanup(&ix);
        return false;
    }
    int64_t elapsed = monotonic_ms() - t0;
    bq_match_destroy(m);

    /* the plan, outermost first */
    bson_t pq = BSON_INITIALIZER;
    parsed_query(&in.filter, &pq);
    plan_t p = {.n = 0};
    layer_t *l;
    int64_t after = r.matched; /* documents leaving the scan, then each stage */
    int64_t skipped = after > in.skip ? after - in.skip : 0;
    int64_t limited = in.limit > 0 && skipped > in.limit ? in.limit : skipped;
    if (count) {
        l = plan_push(&p, fast_count ? "RECORD_STORE_FAST_COUNT" : "COUNT");
        l->stat_key[0] = "nCounted";
        l->stat[0] = limited;
        if (in.skip) {
            l->stat_key[1] = "nSkipped";
            l->stat[1] = after - skipped;
        }
    } else if (in.write) {
        l = plan_push(&p, in.remove ? "DELETE" : "UPDATE");
        int64_t touched = in.multi ? after : (after > 0 ? 1 : 0);
        if (in.remove) {
            l->stat_key[0] = "nWouldDelete";
            l->stat[0] = touched;
        } else {
            l->stat_key[0] = "nMatched";
            l->stat[0] = touched;
            l->stat_key[1] = "nWouldModify";
            l->stat[1] = touched; /* an upper bound: NEDB does not apply the update here */
            l->stat_key[2] = "nWouldUpsert";
            l->stat[2] = in.upsert && touched == 0;
        }
    } else if (in.has_proj && find) {
        l = plan_push(&p, "PROJECTION_DEFAULT");
        l->doc_key = "transformBy";
        l->doc = &in.proj;
        l->n_returned = limited;
    }
    if (find && !in.has_sort && in.limit > 0) {
        l = plan_push(&p, "LIMIT");
        l->num_key = "limitAmount";
        l->num = in.limit;
        l->n_returned = limited;
    }
    if (find && in.skip > 0) {
        l = plan_push(&p, "SKIP");
        l->num_key = "skipAmount";
        l->num = in.skip;
        l->n_returned = in.has_sort ? limited : skipped;
    }
    if (in.has_sort) {
        l = plan_push(&p, "SORT");
        l->doc_key = "sortPattern";
        l->doc = &in.sort;
        if (in.limit > 0) {
            l->num_key = "limitAmount";
            l->num = in.skip + in.limit;
        }
        int64_t kept = in.limit > 0 && after > in.skip + in.limit ? in.skip + in.limit : after;
        l->n_returned = in.write ? (after > 0) : kept;
    }
    bson_t rest = BSON_INITIALIZER, rest_pq = BSON_INITIALIZER, ixdesc = BSON_INITIALIZER;
    if (use_ix) {
        filter_without(&in.filter, ix.pred, &rest);
        parsed_query(&rest, &rest_pq);
        l = plan_push(&p, "FETCH");
        l->doc_key = "filter";
        l->doc = &rest_pq;
        l->n_returned = r.matched;
        l->stat_key[0] = "docsExamined";
        l->stat[0] = r.examined;
        l->stat_key[1] = "alreadyHasObj";
        bool multikey = ixscan_describe(c, snap, &ix, &ixdesc);
        l = plan_push(&p, "IXSCAN");
        l->ixscan = &ixdesc;
        l->n_returned = r.examined;
        l->stat_key[0] = "keysExamined";
        l->stat[0] = ix.keys;
        l->stat_key[1] = "seeks"; /* one lookup per point */
        l->stat[1] = (int64_t)ix.npoints;
        l->stat_key[2] = "dupsTested";
        l->stat[2] = multikey ? ix.keys : 0; /* each key's document tested once seen */
        l->stat_key[3] = "dupsDropped";
        l->stat[3] = ix.keys - (int64_t)ix.ndocs;
    } else if (!fast_count) {
        l = plan_push(&p, in.idhack ? "IDHACK" : "COLLSCAN");
        if (!in.idhack) {
            l->doc_key = "filter";
            l->doc = &pq;
        } else {
            l->stat_key[0] = "keysExamined";
            l->stat[0] = r.examined;
        }
        l->n_returned = r.matched;
        l->stat_key[1] = "docsExamined";
        l->stat[1] = r.examined;
    }
    int64_t returned = find ? limited : (in.write && !in.remove && !strcmp(name, "findAndModify")
                                             ? (after > 0)
                                             : 0);
    if (!strcmp(name, "distinct"))
        returned = r.matched;

    /* the reply */
    char ns[ENG_NS_MAX + 80];
    snprintf(ns, sizeof ns, "%s.%s", ctx->db, in.coll);
    bson_t *reply = ctx->reply, qp, wp, es, st, rej, si;
    BSON_APPEND_UTF8(reply, "explainVersion", "1");
    BSON_APPEND_DOCUMENT_BEGIN(reply, "queryPlanner", &qp);
    BSON_APPEND_UTF8(&qp, "namespace", ns);
    BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
    BSON_APPEND_DOCUMENT(&qp, "parsedQuery", &pq);
    BSON_APPEND_BOOL(&qp, "maxIndexedOrSolutionsReached", false);
    BSON_APPEND_BOOL(&qp, "maxIndexedAndSolutionsReached", false);
    BSON_APPEND_BOOL(&qp, "maxScansToExplodeReached", false);
    BSON_APPEND_DOCUMENT_BEGIN(&qp, "winningPlan", &wp);
    plan_append(&wp, &p, 0, false);
    bson_append_document_end(&qp, &wp);
    BSON_APPEND_ARRAY_BEGIN(&qp, "rejectedPlans", &rej);
    bson_append_array_end(&qp, &rej);
    bson_append_document_end(reply, &qp);
    if (stats) {
        BSON_APPEND_DOCUMENT_BEGIN(reply, "executionStats", &es);
        BSON_APPEND_BOOL(&es, "executionSuccess", true);
        bq_num_append(&es, "nReturned", returned);
        bq_num_append(&es, "executionTimeMillis", elapsed);
        bq_num_append(&es, "totalKeysExamined", use_ix ? ix.keys : in.idhack ? r.examined : 0);
        bq_num_append(&es, "totalDocsExamined", r.examined);
        BSON_APPEND_DOCUMENT_BEGIN(&es, "executionStages", &st);
        plan_append(&st, &p, 0, true);
        bson_append_document_end(&es, &st);
        if (!strcmp(verbosity, "allPlansExecution")) {
            bson_t all;
            BSON_APPEND_ARRAY_BEGIN(&es, "allPlansExecution", &all);
            bson_append_array_end(&es, &all);
        }
        bson_append_document_end(reply, &es);
    }
    BSON_APPEND_DOCUMENT(reply, "command", inner);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "serverInfo", &si);
    BSON_APPEND_UTF8(&si, "host", ctx->server->host);
    bson_append_document_end(reply, &si);
    bson_destroy(&pq);
    bson_destroy(&rest);
    bson_destroy(&rest_pq);
    bson_destroy(&ixdesc);
    if (use_ix)
        wire_ixscan_cleanup(&ix);
    return true;
}
