/*
 * agg_merge.c: parsing $out and $merge (MongoDB 7.0 codes) into the agg_out_t the caller
 * writes from, and the pure helpers that decide, document by document, what a $merge
 * writes (agg_merge.h). Nothing here touches a collection: the caller reads the target and
 * writes.
 *
 * A $merge state starts with its agg_out_t, so the pointer agg_pipeline_out() returns is
 * also the merge_state_t the helpers cast it back to (the let expressions and the scope
 * of the whenMatched pipeline live there).
 */
#include <stdlib.h>
#include <string.h>

#include "agg_merge.h"

typedef struct merge_state {
    agg_out_t out; /* first: agg_pipeline_out() returns &state->out */
    bson_t *on;    /* array of field names, owned (NULL: _id) */
    bson_t *let;   /* owned */
    agg_pipeline_t *pipeline;
    agg_scope_t *scope; /* the whenMatched pipeline's: let names and "new" */
    int nlet;
    agg_expr_t **let_exprs;
    int *let_slots;
    int new_slot;  /* slot of $$new, or -1 */
} merge_state_t;

/* ================================================================ namespaces */

static bool db_name_ok(const char *db)
{
    if (!*db || strlen(db) >= 64)
        return false;
    for (const char *p = db; *p; p++)
        if (strchr("/\\. \"$", *p))
            return false;
    return true;
}

static bool coll_name_ok(const char *coll)
{
    return *coll && coll[0] != '.' && !strchr(coll, '$') && strlen(coll) < 256;
}

static bool is_internal_db(const char *db)
{
    return !strcmp(db, "admin") || !strcmp(db, "local") || !strcmp(db, "config");
}

/* Fills out->db / out->coll after checking them. */
static bool target_set(agg_out_t *out, const char *stage, const char *db, const char *coll,
                       bq_error_t *err)
{
    if (!db_name_ok(db) || !coll_name_ok(coll)) {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "Invalid %s target namespace, %s.%s", stage,
                     db, coll);
        return false;
    }
    bool merge = !strcmp(stage, "$merge");
    if (!strncmp(coll, "system.", 7)) {
        if (merge)
            bq_error_set(err, 31319, "Cannot $merge to special collection: %s", coll);
        else
            bq_error_set(err, 17385, "Can't $out to special collection: %s", coll);
        return false;
    }
    if (is_internal_db(db)) {
        if (merge)
            bq_error_set(err, 31320, "Cannot $merge to internal database: %s", db);
        else
            bq_error_set(err, 31321, "Can't $out to internal database: %s", db);
        return false;
    }
    snprintf(out->db, sizeof out->db, "%s", db);
    snprintf(out->coll, sizeof out->coll, "%s", coll);
    return true;
}

/* ================================================================ $out */

void agg__out_free(void *state)
{
    free(state);
}

bool agg__out_parse(const bson_value_t *spec, agg_parse_t *pc, void **state, bq_error_t *err)
{
    const char *db = pc->db, *coll = NULL;
    if (spec->value_type == BSON_TYPE_UTF8) {
        coll = spec->value.v_utf8.str;
    } else if (spec->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        bool has_db = false;
        bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (!strcmp(k, "db") || !strcmp(k, "coll")) {
                if (!BSON_ITER_HOLDS_UTF8(&it)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$out.%s' is the wrong type '%s', expected type "
                                 "'string'", k, bq_type_name(bson_iter_type(&it)));
                    return false;
                }
                if (k[0] == 'd') {
                    db = bson_iter_utf8(&it, NULL);
                    has_db = true;
                } else {
                    coll = bson_iter_utf8(&it, NULL);
                }
            } else if (!strcmp(k, "timeseries")) {
                bq_error_set(err, BQ_ERR_NotImplemented,
                             "$out to a time series collection is not supported by NEDB");
                return false;
            } else {
                bq_error_set(err, BQ_ERR_IDLUnknownField,
                             "BSON field '$out.%s' is an unknown field.", k);
                return false;
            }
        }
        if (!has_db || !coll) {
            bq_error_set(err, BQ_ERR_IDLFailedToParse,
                         "BSON field '$out.%s' is missing but a required field",
                         has_db ? "coll" : "db");
            return false;
        }
    } else {
        bq_error_set(err, 16990, "$out only supports a string or object argument, but found %s",
                     bq_type_name(spec->value_type));
        return false;
    }
    agg_out_t *out = calloc(1, sizeof *out);
    if (!out)
        abort();
    if (!target_set(out, "$out", db ? db : "", coll, err)) {
        free(out);
        return false;
    }
    *state = out;
    return true;
}

/* ================================================================ $merge */

void agg__merge_free(void *state)
{
    merge_state_t *s = state;
    if (!s)
        return;
    if (s->on)
        bson_destroy(s->on);
    if (s->let)
        bson_destroy(s->let);
    agg_pipeline_destroy(s->pipeline);
    for (int i = 0; i < s->nlet; i++)
        agg_expr_destroy(s->let_exprs[i]);
    free(s->let_exprs);
    free(s->let_slots);
    agg_scope_destroy(s->scope);
    free(s);
}

static const char *const mode_names[] = {"replace", "keepExisting", "merge", "fail",
                                         "pipeline", "insert", "discard"};

/* into: "coll" or {db, coll}. */
static bool merge_into(const bson_iter_t *it, const char *defdb, char *db, size_t dbsz,
                       char *coll, size_t collsz, bq_error_t *err)
{
    snprintf(db, dbsz, "%s", defdb);
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *c = bson_iter_utf8(it, NULL);
        if (!*c) {
            bq_error_set(err, 5786800, "$merge 'into' field cannot be an empty string");
            return false;
        }
        snprintf(coll, collsz, "%s", c);
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        bq_error_set(err, 51178,
                     "$merge 'into' field  must be either a string or an object, but found %s",
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
    bson_iter_t sub;
    bson_iter_recurse(it, &sub);
    bool has_coll = false;
    while (bson_iter_next(&sub)) {
        const char *k = bson_iter_key(&sub);
        if (strcmp(k, "db") != 0 && strcmp(k, "coll") != 0) {
            bq_error_set(err, BQ_ERR_IDLUnknownField, "BSON field 'into.%s' is an unknown field.",
                         k);
            return false;
        }
        if (BSON_ITER_HOLDS_NULL(&sub) || BSON_ITER_HOLDS_UNDEFINED(&sub))
            continue;
        if (!BSON_ITER_HOLDS_UTF8(&sub)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field 'into.%s' is the wrong type '%s', expected type 'string'", k,
                         bq_type_name(bson_iter_type(&sub)));
            return false;
        }
        const char *v = bson_iter_utf8(&sub, NULL);
        if (k[0] == 'd') {
            snprintf(db, dbsz, "%s", *v ? v : defdb);
        } else {
            snprintf(coll, collsz, "%s", v);
            has_coll = *v != 0;
        }
    }
    if (!has_coll) {
        bq_error_set(err, 5786801,
                     "$merge 'into' field must specify a 'coll' that is not empty, null or "
                     "undefined");
        return false;
    }
    return true;
}

static bool merge_on(merge_state_t *s, const bson_iter_t *it, bq_error_t *err)
{
    bson_t *on = bson_new();
    int n = 0;
    bool ok = true;
    if (BSON_ITER_HOLDS_UTF8(it)) {
        ok = agg__join_path_check(bson_iter_utf8(it, NULL), err);
        BSON_APPEND_UTF8(on, "0", bson_iter_utf8(it, NULL));
        n = 1;
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t el;
        bson_iter_recurse(it, &el);
        while (ok && bson_iter_next(&el)) {
            if (!BSON_ITER_HOLDS_UTF8(&el)) {
                bq_error_set(err, 51134, "$merge 'on' array elements must be strings, but found "
                                         "%s", bq_type_name(bson_iter_type(&el)));
                ok = false;
                break;
            }
            const char *f = bson_iter_utf8(&el, NULL);
            ok = agg__join_path_check(f, err);
            bson_iter_t prev;
            bson_iter_init(&prev, on);
            while (ok && bson_iter_next(&prev)) {
                if (!strcmp(bson_iter_utf8(&prev, NULL), f)) {
                    bq_error_set(err, 31465, "Found a duplicate field '%s'", f);
                    ok = false;
                }
            }
            char buf[16];
            const char *key;
            bson_uint32_to_string((uint32_t)n++, &key, buf, sizeof buf);
            bson_append_utf8(on, key, -1, f, -1);
        }
        if (ok && n == 0) {
            bq_error_set(err, 51187,
                         "If explicitly specifying $merge 'on', must include at least one field");
            ok = false;
        }
    } else {
        bq_error_set(err, 51186,
                     "$merge 'on' field  must be either a string or an array of strings, but "
                     "found %s", bq_type_name(bson_iter_type(it)));
        ok = false;
    }
    if (!ok) {
        bson_destroy(on);
        return false;
    }
    s->on = on;
    s->out.on = on;
    return true;
}

/* The stages an update pipeline may contain. */
static bool update_stage_ok(const char *name)
{
    static const char *const ok[] = {"$addFields", "$set",         "$project",
                                     "$unset",     "$replaceRoot", "$replaceWith"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(name, ok[i]))
            return true;
    return false;
}

static bool merge_pipeline(merge_state_t *s, const bson_t *pipeline, agg_parse_t *pc,
                           bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, pipeline);
    while (bson_iter_next(&it)) {
        bson_iter_t st;
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &st) && bson_iter_next(&st) &&
            !update_stage_ok(bson_iter_key(&st)) && agg_stage_find(bson_iter_key(&st))) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "%s is not allowed to be used within an update", bson_iter_key(&st));
            return false;
        }
    }
    /* let: names in the pipeline's scope, expressions in the outer one (they see the
     * incoming document as $$ROOT) */
    s->scope = agg_scope_new(pc->scope);
    s->new_slot = -1;
    bool has_new = false;
    if (s->let) {
        uint32_t n = bson_count_keys(s->let);
        s->let_exprs = calloc(n + 1, sizeof *s->let_exprs);
        s->let_slots = calloc(n + 1, sizeof *s->let_slots);
        if (!s->let_exprs || !s->let_slots)
            abort();
        bson_iter_t lit;
        bson_iter_init(&lit, s->let);
        while (bson_iter_next(&lit)) {
            const char *name = bson_iter_key(&lit);
            if (!strcmp(name, "new")) {
                has_new = true;
                if (!BSON_ITER_HOLDS_UTF8(&lit) || strcmp(bson_iter_utf8(&lit, NULL), "$$ROOT")) {
                    bq_error_set(err, 51273,
                                 "'let' may not define a value for the reserved 'new' variable "
                                 "other than '$$ROOT'");
                    return false;
                }
            }
            if (!agg_var_name_check(name, err))
                return false;
            agg_expr_t *e = agg_expr_compile(bson_iter_value(&lit), pc->scope, err);
            if (!e)
                return false;
            s->let_exprs[s->nlet] = e;
            s->let_slots[s->nlet++] = agg_scope_define(s->scope, name);
        }
    }
    if (!s->let || (!has_new && s->out.when_not_matched == AGG_MERGE_INSERT))
        s->new_slot = agg_scope_define(s->scope, "new");
    agg_parse_t sub = *pc;
    sub.in_lookup = true;
    s->pipeline = agg_pipeline_parse_sub(pipeline, &sub, s->scope, s->out.coll, err);
    if (!s->pipeline) {
        bq_error_prefix(err, "Error parsing $merge.whenMatched pipeline");
        return false;
    }
    s->out.when_matched_pipeline = s->pipeline;
    return true;
}

static int mode_parse(const char *v, bool matched)
{
    static const char *const m[] = {"replace", "keepExisting", "merge", "fail"};
    static const char *const nm[] = {"insert", "discard", "fail"};
    static const int nm_val[] = {AGG_MERGE_INSERT, AGG_MERGE_DISCARD, AGG_MERGE_FAIL};
    if (matched) {
        for (int i = 0; i < 4; i++)
            if (!strcmp(v, m[i]))
                return i; /* AGG_MERGE_REPLACE .. AGG_MERGE_FAIL */
    } else {
        for (int i = 0; i < 3; i++)
            if (!strcmp(v, nm[i]))
                return nm_val[i];
    }
    return -1;
}

static bool mode_supported(int wm, int wnm)
{
    switch (wm) {
    case AGG_MERGE_KEEP_EXISTING:
    case AGG_MERGE_FAIL:
        return wnm == AGG_MERGE_INSERT;
    default:
        return true;
    }
}

bool agg__merge_parse(const bson_value_t *spec, agg_parse_t *pc, void **state, bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_UTF8 && spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "$merge requires a string or object argument, but found %s",
                     bq_type_name(spec->value_type));
        return false;
    }
    merge_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->out.merge = true;
    s->out.when_matched = AGG_MERGE_MERGE;
    s->out.when_not_matched = AGG_MERGE_INSERT;
    s->new_slot = -1;
    char db[128], coll[256];
    snprintf(db, sizeof db, "%s", pc->db ? pc->db : "");
    coll[0] = 0;
    bool ok = true;
    bson_t pipeline;
    bool has_pipeline = false;
    if (spec->value_type == BSON_TYPE_UTF8) {
        snprintf(coll, sizeof coll, "%s", spec->value.v_utf8.str);
    } else {
        bson_iter_t it, on_it;
        bool has_into = false, has_on = false;
        bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
        while (ok && bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (!strcmp(k, "into")) {
                has_into = true;
                ok = merge_into(&it, pc->db ? pc->db : "", db, sizeof db, coll, sizeof coll, err);
            } else if (!strcmp(k, "on")) {
                on_it = it;
                has_on = true;
            } else if (!strcmp(k, "let")) {
                if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$merge.let' is the wrong type '%s', expected type "
                                 "'object'", bq_type_name(bson_iter_type(&it)));
                    ok = false;
                } else {
                    uint32_t len;
                    const uint8_t *data;
                    bson_iter_document(&it, &len, &data);
                    if (s->let)
                        bson_destroy(s->let);
                    s->let = bson_new_from_data(data, len);
                }
            } else if (!strcmp(k, "whenMatched")) {
                if (BSON_ITER_HOLDS_ARRAY(&it)) {
                    uint32_t len;
                    const uint8_t *data;
                    bson_iter_array(&it, &len, &data);
                    has_pipeline = bson_init_static(&pipeline, data, len);
                    s->out.when_matched = AGG_MERGE_PIPELINE;
                } else if (BSON_ITER_HOLDS_UTF8(&it)) {
                    int m = mode_parse(bson_iter_utf8(&it, NULL), true);
                    if (m < 0) {
                        bq_error_set(err, BQ_ERR_BadValue,
                                     "Enumeration value '%s' for field 'whenMatched' is not a "
                                     "valid value.", bson_iter_utf8(&it, NULL));
                        ok = false;
                    }
                    s->out.when_matched = m;
                    has_pipeline = false;
                } else {
                    bq_error_set(err, 51191,
                                 "$merge 'whenMatched' field  must be either a string or an "
                                 "array, but found %s", bq_type_name(bson_iter_type(&it)));
                    ok = false;
                }
            } else if (!strcmp(k, "whenNotMatched")) {
                if (!BSON_ITER_HOLDS_UTF8(&it)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$merge.whenNotMatched' is the wrong type '%s', "
                                 "expected type 'string'", bq_type_name(bson_iter_type(&it)));
                    ok = false;
                } else {
                    int m = mode_parse(bson_iter_utf8(&it, NULL), false);
                    if (m < 0) {
                        bq_error_set(err, BQ_ERR_BadValue,
                                     "Enumeration value '%s' for field 'whenNotMatched' is not a "
                                     "valid value.", bson_iter_utf8(&it, NULL));
                        ok = false;
                    }
                    s->out.when_not_matched = m;
                }
            } else if (!strcmp(k, "targetCollectionVersion")) {
                continue;
            } else {
                bq_error_set(err, BQ_ERR_IDLUnknownField,
                             "BSON field '$merge.%s' is an unknown field.", k);
                ok = false;
            }
        }
        if (ok && !has_into) {
            bq_error_set(err, BQ_ERR_IDLFailedToParse,
                         "BSON field '$merge.into' is missing but a required field");
            ok = false;
        }
        if (ok && has_on)
            ok = merge_on(s, &on_it, err);
    }
    if (ok && !mode_supported(s->out.when_matched, s->out.when_not_matched)) {
        bq_error_set(err, 51181,
                     "Combination of $merge modes 'whenMatched: %s' and 'whenNotMatched: %s' is "
                     "not supported", mode_names[s->out.when_matched],
                     mode_names[s->out.when_not_matched]);
        ok = false;
    }
    ok = ok && target_set(&s->out, "$merge", db, coll, err);
    if (ok && s->let && s->out.when_matched != AGG_MERGE_PIPELINE) {
        bq_error_set(err, 51199, "Cannot use 'let' variables with 'whenMatched: %s' mode",
                     mode_names[s->out.when_matched]);
        ok = false;
    }
    s->out.let = s->let;
    if (ok && has_pipeline)
        ok = merge_pipeline(s, &pipeline, pc, err);
    if (!ok) {
        agg__merge_free(s);
        return false;
    }
    *state = s;
    return true;
}

/* ================================================================ the write helpers */

static bool on_fields_has_id(const agg_out_t *out)
{
    if (!out->on)
        return true;
    bson_iter_t it;
    bson_iter_init(&it, out->on);
    while (bson_iter_next(&it))
        if (!strcmp(bson_iter_utf8(&it, NULL), "_id"))
            return true;
    return false;
}

bool agg_merge_prepare(const agg_out_t *out, const bson_t *incoming, bson_t *doc,
                       bson_t *filter, bq_error_t *err)
{
    bson_init(doc);
    bson_init(filter);
    bson_iter_t it;
    if (on_fields_has_id(out) && !bson_iter_init_find(&it, incoming, "_id")) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(doc, "_id", &oid);
    }
    bson_concat(doc, incoming);
    bson_t id_only = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&id_only, "0", "_id");
    bson_iter_init(&it, out->on ? out->on : &id_only);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *f = bson_iter_utf8(&it, NULL);
        bson_value_t v;
        if (!bq_path_get(doc, f, &v) || v.value_type == BSON_TYPE_NULL ||
            v.value_type == BSON_TYPE_UNDEFINED || v.value_type == BSON_TYPE_ARRAY) {
            bq_error_set(err, 51132,
                         "$merge write error: 'on' field cannot be missing, null, undefined or "
                         "an array");
            ok = false;
            break;
        }
        bson_t cmp;
        bson_append_document_begin(filter, f, -1, &cmp);
        bson_append_value(&cmp, "$eq", 3, &v);
        bson_append_document_end(filter, &cmp);
    }
    bson_destroy(&id_only);
    return ok;
}

/* Makes result keep the matched document's _id: prepends it when result has none, fails
 * with 66 when result has another. */
static bool keep_id(const bson_t *existing, bson_t *result, bq_error_t *err)
{
    bson_iter_t eit, rit;
    if (!bson_iter_init_find(&eit, existing, "_id"))
        return true;
    if (bson_iter_init_find(&rit, result, "_id")) {
        if (!bq_value_equal(bson_iter_value(&eit), bson_iter_value(&rit))) {
            bq_error_set(err, BQ_ERR_ImmutableField,
                         "$merge failed to update the matching document, did you attempt to "
                         "modify the _id or the shard key? :: caused by :: Performing an update "
                         "on the path '_id' would modify the immutable field '_id'");
            return false;
        }
        return true;
    }
    bson_t tmp = BSON_INITIALIZER;
    bson_append_iter(&tmp, "_id", 3, &eit);
    bson_concat(&tmp, result);
    bson_reinit(result);
    bson_concat(result, &tmp);
    bson_destroy(&tmp);
    return true;
}

/* Top-level merge: existing fields in place with incoming values, new fields last. */
static void merge_docs(const bson_t *existing, const bson_t *incoming, bson_t *result)
{
    bson_iter_t it, f;
    bson_iter_init(&it, existing);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (bson_iter_init_find(&f, incoming, k))
            bson_append_iter(result, k, -1, &f);
        else
            bson_append_iter(result, k, -1, &it);
    }
    bson_iter_init(&it, incoming);
    while (bson_iter_next(&it))
        if (!bson_iter_init_find(&f, existing, bson_iter_key(&it)))
            bson_append_iter(result, bson_iter_key(&it), -1, &it);
}

static void dup_key_error(const agg_out_t *out, const bson_t *incoming, bq_error_t *err)
{
    bson_t key = BSON_INITIALIZER, id_only = BSON_INITIALIZER;
    char index[256] = "";
    size_t used = 0;
    BSON_APPEND_UTF8(&id_only, "0", "_id");
    bson_iter_t it;
    bson_iter_init(&it, out->on ? out->on : &id_only);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_utf8(&it, NULL);
        bson_value_t v;
        if (bq_path_get(incoming, f, &v))
            bson_append_value(&key, f, -1, &v);
        if (used < sizeof index)
            used += (size_t)snprintf(index + used, sizeof index - used, "%s%s_1", used ? "_" : "",
                                     f);
    }
    if (!out->on)
        snprintf(index, sizeof index, "_id_");
    char *j = bson_as_relaxed_extended_json(&key, NULL);
    bq_error_set(err, BQ_ERR_DuplicateKey,
                 "E11000 duplicate key error collection: %s.%s index: %s dup key: %s", out->db,
                 out->coll, index, j ? j : "{}");
    bson_free(j);
    bson_destroy(&key);
    bson_destroy(&id_only);
}

static int apply_pipeline(const merge_state_t *s, agg_run_t *run, const bson_t *existing,
                          const bson_t *incoming, bson_t *result, bq_error_t *err)
{
    agg_run_t sub;
    agg_run_init_sub(&sub, run);
    agg_env_set_root(&run->env, incoming);
    bool ok = true;
    for (int i = 0; ok && i < s->nlet; i++) {
        bson_value_t v;
        ok = agg_expr_eval(s->let_exprs[i], &run->env, &v, err);
        if (ok)
            agg_env_set_var(&sub.env, s->let_slots[i], &v);
        agg_value_cleanup(&v);
    }
    if (ok && s->new_slot >= 0) {
        bson_value_t nv;
        memset(&nv, 0, sizeof nv);
        nv.value_type = BSON_TYPE_DOCUMENT;
        nv.value.v_doc.data = (uint8_t *)bson_get_data(incoming);
        nv.value.v_doc.data_len = incoming->len;
        agg_env_set_var(&sub.env, s->new_slot, &nv);
    }
    agg_iter_t *it = NULL;
    if (ok) {
        bson_t *one = (bson_t *)existing;
        agg_iter_t *input = agg_iter_from_docs(&sub, &one, 1);
        it = agg_pipeline_open(s->pipeline, input, &sub, err);
        ok = it != NULL;
    }
    bson_t *d = NULL;
    if (ok) {
        int r = agg_iter_next(it, &d, err);
        ok = r >= 0;
        if (r == 0) /* cannot happen with update stages; keep the document */
            d = bson_copy(existing);
    }
    if (ok) {
        bson_concat(result, d);
        bson_destroy(d);
        ok = keep_id(existing, result, err);
    }
    agg_iter_close(it);
    agg_run_cleanup(&sub);
    return ok ? AGG_MERGE_ACT_REPLACE : -1;
}

int agg_merge_apply(const agg_out_t *out, agg_run_t *run, const bson_t *existing,
                    const bson_t *incoming, bson_t *result, bq_error_t *err)
{
    bson_init(result);
    if (!existing) {
        switch (out->when_not_matched) {
        case AGG_MERGE_INSERT:
            bson_concat(result, incoming);
            return AGG_MERGE_ACT_INSERT;
        case AGG_MERGE_DISCARD:
            return AGG_MERGE_ACT_DISCARD;
        default:
            bq_error_set(err, 13113,
                         "$merge could not find a matching document in the target collection "
                         "for at least one document in the source collection");
            return -1;
        }
    }
    switch (out->when_matched) {
    case AGG_MERGE_REPLACE:
        bson_concat(result, incoming);
        return keep_id(existing, result, err) ? AGG_MERGE_ACT_REPLACE : -1;
    case AGG_MERGE_KEEP_EXISTING:
        return AGG_MERGE_ACT_KEEP;
    case AGG_MERGE_MERGE:
        merge_docs(existing, incoming, result);
        return keep_id(existing, result, err) ? AGG_MERGE_ACT_REPLACE : -1;
    case AGG_MERGE_FAIL:
        dup_key_error(out, incoming, err);
        return -1;
    case AGG_MERGE_PIPELINE:
        return apply_pipeline((const merge_state_t *)out, run, existing, incoming, result, err);
    default:
        bq_error_set(err, BQ_ERR_InternalError, "$merge: unknown whenMatched mode %d",
                     out->when_matched);
        return -1;
    }
}
