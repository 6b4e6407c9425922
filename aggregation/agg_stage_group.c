/*
 * agg_stage_group.c: the group family of pipeline stages (see agg_pipeline.h), MongoDB 7.0
 * semantics:
 *
 *   $group        {_id: <expression>, <field>: {<accumulator>: <argument>}, ...}
 *   $bucket       {groupBy, boundaries, default, output}: a $group whose key is the
 *                 boundary a value falls in, sorted by that key, as mongod rewrites it
 *   $bucketAuto   {groupBy, buckets, granularity, output}: sorts by the key and cuts the
 *                 sorted input into buckets of about the same size
 *   $sortByCount  <expression>: {$group: {_id: expr, count: {$sum: 1}}} + {$sort: {count: -1}}
 *
 * All four are blocking: they read their whole input on the first next(), charging what they
 * hold to the run's memory limit (agg_mem_charge, 292 without allowDiskUse; nothing spills).
 * Groups are kept in a hash table keyed by the _id value under MongoDB's equality (1, 1.0
 * and NumberLong(1) are one group, keeping the first _id seen) and come out in the order
 * they were first seen; mongod leaves that order unspecified. Output documents are _id
 * first, then the accumulators in the order the spec gives them; a missing result is null.
 *
 * The accumulators themselves are agg_acc.c's. This file does not evaluate anything but
 * the key expressions and never reads a collection.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg_acc.h"
#include "agg_expr_int.h"
#include "agg_pipeline.h"

/* ================================================================ the parsed spec */

enum group_mode { MODE_GROUP, MODE_BUCKET, MODE_SORT_BY_COUNT, MODE_BUCKET_AUTO };

typedef struct group_spec {
    enum group_mode mode;
    const char *stage;       /* for memory errors */
    agg_expr_t *id;          /* _id / groupBy */
    int nacc;
    char **names;
    agg_acc_t **accs;
    /* $bucket */
    bson_value_t *bounds;
    int nbounds;
    bson_value_t def;        /* EOD: no default */
    /* $bucketAuto */
    int32_t buckets;
    const struct series *gran;
} group_spec_t;

static void spec_free(void *p)
{
    group_spec_t *s = p;
    if (!s)
        return;
    agg_expr_destroy(s->id);
    for (int i = 0; i < s->nacc; i++) {
        free(s->names[i]);
        agg_acc_destroy(s->accs[i]);
    }
    free(s->names);
    free(s->accs);
    for (int i = 0; i < s->nbounds; i++)
        agg_value_cleanup(&s->bounds[i]);
    free(s->bounds);
    agg_value_cleanup(&s->def);
    free(s);
}

static group_spec_t *spec_new(enum group_mode mode, const char *stage)
{
    group_spec_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->mode = mode;
    s->stage = stage;
    return s;
}

static void spec_add_acc(group_spec_t *s, const char *name, agg_acc_t *a)
{
    s->names = realloc(s->names, (size_t)(s->nacc + 1) * sizeof *s->names);
    s->accs = realloc(s->accs, (size_t)(s->nacc + 1) * sizeof *s->accs);
    if (!s->names || !s->accs)
        abort();
    s->names[s->nacc] = strdup(name);
    s->accs[s->nacc++] = a;
}

/* The default {count: {$sum: 1}} of $bucket / $bucketAuto / $sortByCount. */
static bool spec_add_count(group_spec_t *s, agg_scope_t *scope, bq_error_t *err)
{
    bson_value_t one = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    agg_acc_t *a = agg_acc_compile("$sum", &one, scope, AGG_ACC_GROUP, err);
    if (!a)
        return false;
    spec_add_acc(s, "count", a);
    return true;
}

/* Output fields {name: {$acc: arg}, ...} of a document value. */
static bool spec_add_outputs(group_spec_t *s, const bson_value_t *doc, agg_scope_t *scope,
                             bq_error_t *err)
{
    bson_iter_t it;
    agg__iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        agg_acc_t *a = agg_acc_compile_field(bson_iter_key(&it), bson_iter_value(&it), scope,
                                             err);
        if (!a)
            return false;
        spec_add_acc(s, bson_iter_key(&it), a);
    }
    return true;
}

/* ================================================================ $group parse */

static bool group_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 15947, "a group's fields must be specified in an object");
        return false;
    }
    group_spec_t *s = spec_new(MODE_GROUP, "$group");
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "_id")) {
            if (s->id) {
                bq_error_set(err, 15948, "a group's _id may only be specified once");
                goto fail;
            }
            if (!(s->id = agg_expr_compile(bson_iter_value(&it), pc->scope, err)))
                goto fail;
            continue;
        }
        agg_acc_t *a = agg_acc_compile_field(k, bson_iter_value(&it), pc->scope, err);
        if (!a)
            goto fail;
        spec_add_acc(s, k, a);
    }
    if (!s->id) {
        bq_error_set(err, 15955, "a group specification must include an _id");
        goto fail;
    }
    *state = s;
    return true;
fail:
    spec_free(s);
    return false;
}

/* ================================================================ $bucket parse */

/* A constant from an expression spec, or false. */
static bool const_value(const bson_value_t *v, agg_scope_t *scope, bson_value_t *out,
                        bq_error_t *err)
{
    memset(out, 0, sizeof *out);
    agg_expr_t *e = agg_expr_compile(v, scope, err);
    if (!e)
        return false;
    const bson_value_t *c = agg_expr_constant(e);
    if (c)
        agg_value_copy(c, out);
    agg_expr_destroy(e);
    return c != NULL;
}

static bool is_group_by(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        return agg__iter_init(&it, v) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
    }
    return v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len > 0 &&
           v->value.v_utf8.str[0] == '$';
}

static bool bucket_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                         bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40201,
                     "Argument to $bucket stage must be an object, but found type: %s.",
                     agg__type_name(spec));
        return false;
    }
    group_spec_t *s = spec_new(MODE_BUCKET, "$bucket");
    bson_value_t output_v; /* a copy: iterator values change as it advances */
    const bson_value_t *output = NULL;
    bool have_bounds = false;
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "groupBy")) {
            if (!is_group_by(v)) {
                bq_error_set(err, 40202,
                             "The $bucket 'groupBy' field must be defined as a $-prefixed "
                             "path or an expression, but found: %s.",
                             agg__type_name(v));
                goto fail;
            }
            agg_expr_destroy(s->id);
            if (!(s->id = agg_expr_compile(v, pc->scope, err)))
                goto fail;
        } else if (!strcmp(k, "boundaries")) {
            if (v->value_type != BSON_TYPE_ARRAY) {
                bq_error_set(err, 40200,
                             "The $bucket 'boundaries' field must be an array, but found "
                             "type: %s.",
                             agg__type_name(v));
                goto fail;
            }
            uint32_t n = agg__array_len(v);
            s->bounds = calloc(n ? n : 1, sizeof *s->bounds);
            if (!s->bounds)
                abort();
            bson_iter_t bit;
            agg__iter_init(&bit, v);
            while (bson_iter_next(&bit)) {
                if (!const_value(bson_iter_value(&bit), pc->scope, &s->bounds[s->nbounds],
                                 err)) {
                    if (!err || !err->code)
                        bq_error_set(err, 40191,
                                     "The $bucket 'boundaries' field must be an array of "
                                     "constant values, but found value: %s.",
                                     agg__type_name(bson_iter_value(&bit)));
                    else if (err->code != 40191)
                        bq_error_set(err, 40191,
                                     "The $bucket 'boundaries' field must be an array of "
                                     "constant values");
                    goto fail;
                }
                s->nbounds++;
            }
            if (s->nbounds < 2) {
                bq_error_set(err, 40192,
                             "The $bucket 'boundaries' field must have at least 2 values, but "
                             "found %d value(s).",
                             s->nbounds);
                goto fail;
            }
            for (int i = 1; i < s->nbounds; i++) {
                const bson_value_t *lo = &s->bounds[i - 1], *hi = &s->bounds[i];
                if (bq_type_rank(lo->value_type) != bq_type_rank(hi->value_type)) {
                    bq_error_set(err, 40193,
                                 "All values in the the 'boundaries' option to $bucket must "
                                 "have the same type. Found conflicting types %s and %s.",
                                 agg__type_name(lo), agg__type_name(hi));
                    goto fail;
                }
                if (agg__value_compare(lo, hi) >= 0) {
                    bq_error_set(err, 40194,
                                 "The 'boundaries' option to $bucket must be sorted, but "
                                 "elements %d and %d are not in ascending order",
                                 i - 1, i);
                    goto fail;
                }
            }
            have_bounds = true;
        } else if (!strcmp(k, "default")) {
            agg_value_cleanup(&s->def);
            if (!const_value(v, pc->scope, &s->def, err)) {
                bq_error_set(err, 40195,
                             "The $bucket 'default' field must be a constant expression, but "
                             "found: %s.",
                             agg__type_name(v));
                goto fail;
            }
            if (s->def.value_type == BSON_TYPE_EOD) /* $$REMOVE and the like */
                agg__set_null(&s->def);
        } else if (!strcmp(k, "output")) {
            if (v->value_type != BSON_TYPE_DOCUMENT) {
                bq_error_set(err, 40196,
                             "The $bucket 'output' field must be an object, but found type: "
                             "%s.",
                             agg__type_name(v));
                goto fail;
            }
            output_v = *v;
            output = &output_v;
        } else {
            bq_error_set(err, 40197, "Unrecognized option to $bucket: %s.", k);
            goto fail;
        }
    }
    if (!s->id || !have_bounds) {
        bq_error_set(err, 40198, "$bucket requires 'groupBy' and 'boundaries' to be specified.");
        goto fail;
    }
    if (s->def.value_type != BSON_TYPE_EOD &&
        bq_type_rank(s->def.value_type) == bq_type_rank(s->bounds[0].value_type) &&
        !(agg__value_compare(&s->def, &s->bounds[0]) < 0 ||
          agg__value_compare(&s->def, &s->bounds[s->nbounds - 1]) >= 0)) {
        bq_error_set(err, 40199,
                     "The $bucket 'default' field must be less than the lowest boundary or "
                     "greater than or equal to the highest boundary.");
        goto fail;
    }
    if (output ? !spec_add_outputs(s, output, pc->scope, err)
               : !spec_add_count(s, pc->scope, err))
        goto fail;
    *state = s;
    return true;
fail:
    spec_free(s);
    return false;
}

/* ================================================================ $sortByCount parse */

static bool sort_by_count_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                                bq_error_t *err)
{
    bool ok = false;
    if (spec->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        ok = agg__iter_init(&it, spec) && bson_iter_next(&it) &&
             bson_iter_key(&it)[0] == '$';
    } else if (spec->value_type == BSON_TYPE_UTF8) {
        ok = spec->value.v_utf8.len > 1 && spec->value.v_utf8.str[0] == '$';
    }
    if (!ok) {
        bq_error_set(err, 40148, "the sortByCount field must be defined as a $-prefixed path "
                                 "or an expression");
        return false;
    }
    group_spec_t *s = spec_new(MODE_SORT_BY_COUNT, "$sortByCount");
    if (!(s->id = agg_expr_compile(spec, pc->scope, err)) || !spec_add_count(s, pc->scope, err)) {
        spec_free(s);
        return false;
    }
    *state = s;
    return true;
}

/* ================================================================ grouping */

/* A hash of a value consistent with agg__value_compare equality: numbers hash by their
 * double value, strings by bytes, documents and arrays by their elements. */
static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t hash_value(const bson_value_t *v)
{
    uint64_t h = (uint64_t)(int64_t)bq_type_rank(v->value_type) * 0x100000001b3ULL;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128: {
        double d = 0;
        bq_num_to_double(v, &d);
        if (isnan(d))
            return mix(h, 0x7ff8);
        if (d == 0)
            d = 0; /* -0 */
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return mix(h, bits);
    }
    case BSON_TYPE_UTF8:
        return hash_bytes(h, v->value.v_utf8.str, v->value.v_utf8.len);
    case BSON_TYPE_SYMBOL:
        return hash_bytes(h, v->value.v_symbol.symbol, v->value.v_symbol.len);
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bson_iter_t it;
        if (agg__iter_init(&it, v))
            while (bson_iter_next(&it)) {
                if (v->value_type == BSON_TYPE_DOCUMENT)
                    h = hash_bytes(h, bson_iter_key(&it), bson_iter_key_len(&it));
                h = mix(h, hash_value(bson_iter_value(&it)));
            }
        return h;
    }
    case BSON_TYPE_OID:
        return hash_bytes(h, v->value.v_oid.bytes, 12);
    case BSON_TYPE_BOOL:
        return mix(h, v->value.v_bool);
    case BSON_TYPE_DATE_TIME:
        return mix(h, (uint64_t)v->value.v_datetime);
    case BSON_TYPE_TIMESTAMP:
        return mix(h, ((uint64_t)v->value.v_timestamp.timestamp << 32) |
                          v->value.v_timestamp.increment);
    case BSON_TYPE_BINARY:
        return hash_bytes(h, v->value.v_binary.data, v->value.v_binary.data_len);
    default:
        return h; /* equal values share a hash; collisions are only slower */
    }
}

typedef struct group {
    bson_value_t key;
    agg_acc_state_t **states;
    uint64_t hash;
    size_t next; /* chain in the hash table; SIZE_MAX ends */
} group_t;

typedef struct group_iter {
    agg_iter_t base;
    const group_spec_t *s;
    bool built;
    group_t **groups;
    size_t ngroups, cap;
    size_t *heads;
    size_t nheads;
    size_t pos;
    int64_t mem;
} group_iter_t;

static void group_free(const group_spec_t *s, group_t *g)
{
    if (!g)
        return;
    agg_value_cleanup(&g->key);
    for (int i = 0; i < s->nacc; i++)
        agg_acc_state_destroy(g->states[i]);
    free(g->states);
    free(g);
}

static void rehash(group_iter_t *gi)
{
    size_t n = gi->nheads ? gi->nheads * 2 : 64;
    free(gi->heads);
    gi->heads = malloc(n * sizeof *gi->heads);
    if (!gi->heads)
        abort();
    for (size_t i = 0; i < n; i++)
        gi->heads[i] = SIZE_MAX;
    gi->nheads = n;
    for (size_t i = 0; i < gi->ngroups; i++) {
        size_t b = gi->groups[i]->hash % n;
        gi->groups[i]->next = gi->heads[b];
        gi->heads[b] = i;
    }
}

/* Finds or creates the group of `key` (copied when new). env's ROOT is the current
 * document; it is restored to `doc` after the accumulators' initializers ran. */
static group_t *group_get(group_iter_t *gi, const bson_value_t *key, const bson_t *doc,
                          bq_error_t *err)
{
    uint64_t h = hash_value(key);
    if (gi->nheads)
        for (size_t i = gi->heads[h % gi->nheads]; i != SIZE_MAX; i = gi->groups[i]->next)
            if (gi->groups[i]->hash == h && agg__value_compare(&gi->groups[i]->key, key) == 0)
                return gi->groups[i];
    const group_spec_t *s = gi->s;
    agg_run_t *run = gi->base.run;
    group_t *g = calloc(1, sizeof *g);
    if (!g || !(g->states = calloc((size_t)s->nacc + 1, sizeof *g->states)))
        abort();
    agg_value_copy(key, &g->key);
    g->hash = h;
    /* initializers ($firstN's n ...) see the group key as their document */
    bson_t kdoc;
    if (key->value_type == BSON_TYPE_DOCUMENT)
        bson_init_static(&kdoc, key->value.v_doc.data, key->value.v_doc.data_len);
    else
        bson_init(&kdoc);
    agg_env_set_root(&run->env, &kdoc);
    bool ok = true;
    for (int i = 0; ok && i < s->nacc; i++)
        ok = (g->states[i] = agg_acc_state_new(s->accs[i], &run->env, err)) != NULL;
    agg_env_set_root(&run->env, doc);
    if (!ok || !agg_mem_charge(run, &gi->mem,
                               (int64_t)sizeof *g + 64 * s->nacc +
                                   (int64_t)(key->value_type == BSON_TYPE_DOCUMENT ||
                                                     key->value_type == BSON_TYPE_ARRAY
                                                 ? key->value.v_doc.data_len
                                                 : 16),
                               s->stage, err)) {
        group_free(s, g);
        return NULL;
    }
    if (gi->ngroups == gi->cap) {
        gi->cap = gi->cap ? gi->cap * 2 : 16;
        gi->groups = realloc(gi->groups, gi->cap * sizeof *gi->groups);
        if (!gi->groups)
            abort();
    }
    gi->groups[gi->ngroups++] = g;
    if (gi->ngroups > gi->nheads) {
        rehash(gi);
    } else {
        size_t b = h % gi->nheads;
        g->next = gi->heads[b];
        gi->heads[b] = gi->ngroups - 1;
    }
    return g;
}

/* The key of doc: the _id expression, or for $bucket the boundary its value falls in. */
static bool compute_key(const group_spec_t *s, agg_env_t *env, bson_value_t *key,
                        bq_error_t *err)
{
    if (!agg_expr_eval(s->id, env, key, err))
        return false;
    if (s->mode != MODE_BUCKET) {
        if (key->value_type == BSON_TYPE_EOD)
            agg__set_null(key);
        return true;
    }
    /* mongod: $switch over {$and: [{$gte: [v, lo]}, {$lt: [v, hi]}]} per bucket */
    bson_value_t v = *key;
    int found = -1;
    if (agg__value_compare(&v, &s->bounds[0]) >= 0 &&
        agg__value_compare(&v, &s->bounds[s->nbounds - 1]) < 0) {
        int lo = 0, hi = s->nbounds - 1; /* bounds[lo] <= v < bounds[hi] */
        while (hi - lo > 1) {
            int mid = (lo + hi) / 2;
            if (agg__value_compare(&v, &s->bounds[mid]) >= 0)
                lo = mid;
            else
                hi = mid;
        }
        found = lo;
    }
    if (found < 0 && s->def.value_type == BSON_TYPE_EOD) {
        agg_value_cleanup(key);
        bq_error_set(err, 40066,
                     "$switch could not find a matching branch for an input, and no default "
                     "was specified.");
        return false;
    }
    agg_value_copy(found < 0 ? &s->def : &s->bounds[found], key);
    agg_value_cleanup(&v);
    return true;
}

static bool group_build(group_iter_t *gi, bq_error_t *err)
{
    const group_spec_t *s = gi->s;
    agg_run_t *run = gi->base.run;
    size_t seen = 0;
    for (;;) {
        bson_t *doc;
        int r = agg_iter_next(gi->base.input, &doc, err);
        if (r < 0)
            return false;
        if (r == 0)
            break;
        if ((++seen & 1023) == 0 && agg_run_expired(run, err)) {
            bson_destroy(doc);
            return false;
        }
        agg_env_set_root(&run->env, doc);
        bson_value_t key;
        bool ok = compute_key(s, &run->env, &key, err);
        group_t *g = ok ? group_get(gi, &key, doc, err) : NULL;
        agg_value_cleanup(&key);
        int64_t delta = 0;
        for (int i = 0; g && i < s->nacc; i++)
            if (!agg_acc_add_doc(s->accs[i], g->states[i], &run->env, &delta, err))
                g = NULL;
        bson_destroy(doc);
        if (!g || (delta > 0 && !agg_mem_charge(run, &gi->mem, delta, s->stage, err)))
            return false;
    }
    /* $bucket sorts by _id; $sortByCount by count, descending (stable) */
    if (s->mode == MODE_BUCKET || s->mode == MODE_SORT_BY_COUNT) {
        bson_value_t *sortv = NULL;
        if (s->mode == MODE_SORT_BY_COUNT) {
            sortv = calloc(gi->ngroups ? gi->ngroups : 1, sizeof *sortv);
            if (!sortv)
                abort();
            for (size_t i = 0; i < gi->ngroups; i++)
                agg_acc_result(s->accs[0], gi->groups[i]->states[0], &sortv[i], NULL);
        }
        /* a stable bottom-up merge sort of the group order */
        size_t n = gi->ngroups;
        group_t **tmp = malloc((n ? n : 1) * sizeof *tmp);
        size_t *idx = malloc((n ? n : 1) * sizeof *idx), *tidx = malloc((n ? n : 1) * sizeof *tidx);
        if (!tmp || !idx || !tidx)
            abort();
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        for (size_t width = 1; width < n; width *= 2) {
            for (size_t lo = 0; lo < n; lo += 2 * width) {
                size_t mid = lo + width < n ? lo + width : n;
                size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
                size_t a = lo, b = mid, o = lo;
                while (a < mid || b < hi) {
                    bool take_b;
                    if (a < mid && b < hi)
                        take_b = sortv ? agg__value_compare(&sortv[idx[b]], &sortv[idx[a]]) > 0
                                       : agg__value_compare(&gi->groups[idx[b]]->key,
                                                            &gi->groups[idx[a]]->key) < 0;
                    else
                        take_b = a >= mid;
                    tidx[o++] = take_b ? idx[b++] : idx[a++];
                }
            }
            memcpy(idx, tidx, n * sizeof *idx);
        }
        for (size_t i = 0; i < n; i++)
            tmp[i] = gi->groups[idx[i]];
        if (n) /* groups is NULL when there are none */
            memcpy(gi->groups, tmp, n * sizeof *tmp);
        free(tmp);
        free(idx);
        free(tidx);
        if (sortv) {
            for (size_t i = 0; i < n; i++)
                agg_value_cleanup(&sortv[i]);
            free(sortv);
        }
    }
    return true;
}

/* Appends the accumulators' results to out (missing results become null). */
static bool append_results(const group_spec_t *s, agg_acc_state_t **states, bson_t *out,
                           bq_error_t *err)
{
    for (int i = 0; i < s->nacc; i++) {
        bson_value_t v;
        if (!agg_acc_result(s->accs[i], states[i], &v, err)) {
            agg_value_cleanup(&v);
            return false;
        }
        if (v.value_type == BSON_TYPE_EOD)
            agg__set_null(&v);
        bson_append_value(out, s->names[i], -1, &v);
        agg_value_cleanup(&v);
    }
    return true;
}

static int group_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    group_iter_t *gi = (group_iter_t *)it;
    if (!gi->built) {
        gi->built = true;
        if (!group_build(gi, err))
            return -1;
    }
    if (gi->pos >= gi->ngroups)
        return 0;
    group_t *g = gi->groups[gi->pos];
    gi->groups[gi->pos++] = NULL;
    bson_t *doc = bson_new();
    bson_append_value(doc, "_id", 3, &g->key);
    bool ok = append_results(gi->s, g->states, doc, err);
    group_free(gi->s, g);
    if (!ok) {
        bson_destroy(doc);
        return -1;
    }
    *out = doc;
    return 1;
}

static void group_close(agg_iter_t *it)
{
    group_iter_t *gi = (group_iter_t *)it;
    for (size_t i = 0; i < gi->ngroups; i++)
        group_free(gi->s, gi->groups[i]);
    free(gi->groups);
    free(gi->heads);
    agg_iter_close(it->input);
    free(gi);
}

static agg_iter_t *group_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    group_iter_t *gi = calloc(1, sizeof *gi);
    if (!gi)
        abort();
    gi->base.next = group_next;
    gi->base.close = group_close;
    gi->base.input = input;
    gi->base.run = run;
    gi->s = state;
    return &gi->base;
}

/* ================================================================ $bucketAuto */

/* Preferred number series (scaled so that they are integers), and POWERSOF2. */
typedef struct series {
    const char *name;
    const double *v;
    int n; /* 0: powers of two */
} series_t;

static const double r5[] = {10, 16, 25, 40, 63};
static const double r10[] = {100, 125, 160, 200, 250, 315, 400, 500, 630, 800};
static const double r20[] = {100, 112, 125, 140, 160, 180, 200, 224, 250, 280,
                             315, 355, 400, 450, 500, 560, 630, 710, 800, 900};
static const double r40[] = {100, 106, 112, 118, 125, 132, 140, 150, 160, 170,
                             180, 190, 200, 212, 224, 236, 250, 265, 280, 300,
                             315, 335, 355, 375, 400, 425, 450, 475, 500, 530,
                             560, 600, 630, 670, 710, 750, 800, 850, 900, 950};
static const double r80[] = {
    103, 109, 115, 122, 128, 136, 145, 155, 165, 175, 185, 195, 206, 218,
    230, 243, 258, 272, 290, 307, 325, 345, 365, 387, 412, 437, 462, 487,
    515, 545, 575, 615, 650, 690, 730, 775, 825, 875, 925, 975};
static const double s125[] = {10, 20, 50};
static const double e6[] = {10, 15, 22, 33, 47, 68};
static const double e12[] = {10, 12, 15, 18, 22, 27, 33, 39, 47, 56, 68, 82};
static const double e24[] = {10, 11, 12, 13, 15, 16, 18, 20, 22, 24, 27, 30,
                             33, 36, 39, 43, 47, 51, 56, 62, 68, 75, 82, 91};
static const double e48[] = {100, 105, 110, 115, 121, 127, 133, 140, 147, 154, 162, 169,
                             178, 187, 196, 205, 215, 226, 237, 249, 261, 274, 287, 301,
                             316, 332, 348, 365, 383, 402, 422, 442, 464, 487, 511, 536,
                             562, 590, 619, 649, 681, 715, 750, 787, 825, 866, 909, 953};
static const double e96[] = {
    100, 102, 105, 107, 110, 113, 115, 118, 121, 124, 127, 130, 133, 137, 140, 143,
    147, 150, 154, 158, 162, 165, 169, 174, 178, 182, 187, 191, 196, 200, 205, 210,
    215, 221, 226, 232, 237, 243, 249, 255, 261, 267, 274, 280, 287, 294, 301, 309,
    316, 324, 332, 340, 348, 357, 365, 374, 383, 392, 402, 412, 422, 432, 442, 453,
    464, 475, 487, 499, 511, 523, 536, 549, 562, 576, 590, 604, 619, 634, 649, 665,
    681, 698, 715, 732, 750, 768, 787, 806, 825, 845, 866, 887, 909, 931, 953, 976};
static const double e192[] = {
    100, 101, 102, 104, 105, 106, 107, 109, 110, 111, 113, 114, 115, 117, 118, 120, 121, 123,
    124, 126, 127, 129, 130, 132, 133, 135, 137, 138, 140, 142, 143, 145, 147, 149, 150, 152,
    154, 156, 158, 160, 162, 164, 165, 167, 169, 172, 174, 176, 178, 180, 182, 184, 187, 189,
    191, 193, 196, 198, 200, 203, 205, 208, 210, 213, 215, 218, 221, 223, 226, 229, 232, 234,
    237, 240, 243, 246, 249, 252, 255, 258, 261, 264, 267, 271, 274, 277, 280, 284, 287, 291,
    294, 298, 301, 305, 309, 312, 316, 320, 324, 328, 332, 336, 340, 344, 348, 352, 357, 361,
    365, 370, 374, 379, 383, 388, 392, 397, 402, 407, 412, 417, 422, 427, 432, 437, 442, 448,
    453, 459, 464, 470, 475, 481, 487, 493, 499, 505, 511, 517, 523, 530, 536, 542, 549, 556,
    562, 569, 576, 583, 590, 597, 604, 612, 619, 626, 634, 642, 649, 657, 665, 673, 681, 690,
    698, 706, 715, 723, 732, 741, 750, 759, 768, 777, 787, 796, 806, 816, 825, 835, 845, 856,
    866, 876, 887, 898, 909, 920, 931, 942, 953, 965, 976, 988};

#define SERIES(name, arr) {name, arr, (int)(sizeof arr / sizeof *arr)}
static const series_t all_series[] = {
    SERIES("R5", r5),     SERIES("R10", r10),   SERIES("R20", r20),   SERIES("R40", r40),
    SERIES("R80", r80),   SERIES("1-2-5", s125), SERIES("E6", e6),    SERIES("E12", e12),
    SERIES("E24", e24),   SERIES("E48", e48),   SERIES("E96", e96),   SERIES("E192", e192),
    {"POWERSOF2", NULL, 0},
};

/* 2^e as $pow(2, e) gives it: int when it fits, long past that, double for e < 0. */
static void pow2(int e, bool dec, bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    if (dec) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = e >= 0 && e < 63 ? bq_dec_from_int64((int64_t)1 << e)
                                                   : bq_dec_from_double(ldexp(1, e), 34);
    } else if (e < 0) {
        agg__set_double(out, ldexp(1, e));
    } else if (e < 31) {
        agg__set_int32(out, (int32_t)1 << e);
    } else if (e < 63) {
        agg__set_int64(out, (int64_t)1 << e);
    } else {
        agg__set_double(out, ldexp(1, e));
    }
}

static void round_pow2(const bson_value_t *v, bool up, bson_value_t *out)
{
    double d = 0;
    bq_num_to_double(v, &d);
    if (d == 0) {
        agg_value_copy(v, out);
        return;
    }
    int e;
    if (v->value_type == BSON_TYPE_DOUBLE || v->value_type == BSON_TYPE_DECIMAL128) {
        e = up ? (int)(floor(log2(d)) + 1.0) : (int)(ceil(log2(d)) - 1.0);
    } else {
        int64_t x = v->value_type == BSON_TYPE_INT32 ? v->value.v_int32 : v->value.v_int64;
        int lz = __builtin_clzll((unsigned long long)x);
        int tz = __builtin_ctzll((unsigned long long)x);
        e = up ? 63 - lz + 1 : (lz + tz == 63 ? 63 - lz - 1 : 63 - lz);
    }
    pow2(e, v->value_type == BSON_TYPE_DECIMAL128, out);
}

/* Preferred numbers: the smallest series value (times a power of ten) > v when rounding
 * up, the largest < v when rounding down, computed as mongod does (the same double
 * products). Decimal128 inputs are rounded in decimal. */
static void round_series(const series_t *sr, const bson_value_t *v, bool up,
                         bson_value_t *out)
{
    double number = 0;
    bq_num_to_double(v, &number);
    memset(out, 0, sizeof *out);
    if (number == 0) {
        agg_value_copy(v, out);
        return;
    }
    const double *s = sr->v;
    int n = sr->n;
    if (v->value_type == BSON_TYPE_DECIMAL128) {
        bson_decimal128_t x = v->value.v_decimal128, mul = bq_dec_from_int64(1),
                          ten = bq_dec_from_int64(10);
#define SD(i) bq_dec_mul(bq_dec_from_int64((int64_t)s[i]), mul)
        out->value_type = BSON_TYPE_DECIMAL128;
        if (up) {
            while (bq_dec_compare(x, SD(n - 1)) >= 0)
                mul = bq_dec_mul(mul, ten);
            while (bq_dec_compare(x, SD(0)) < 0) {
                bson_decimal128_t prev = SD(0);
                mul = bq_dec_div(mul, ten);
                if (bq_dec_compare(x, SD(n - 1)) >= 0) {
                    out->value.v_decimal128 = prev;
                    return;
                }
            }
            int i = 0;
            while (i < n && bq_dec_compare(x, SD(i)) >= 0)
                i++;
            out->value.v_decimal128 = SD(i < n ? i : n - 1);
        } else {
            while (bq_dec_compare(x, SD(0)) <= 0)
                mul = bq_dec_div(mul, ten);
            while (bq_dec_compare(x, SD(n - 1)) > 0) {
                bson_decimal128_t prev = SD(n - 1);
                mul = bq_dec_mul(mul, ten);
                if (bq_dec_compare(x, SD(0)) <= 0) {
                    out->value.v_decimal128 = prev;
                    return;
                }
            }
            int i = 0;
            while (i < n && bq_dec_compare(SD(i), x) < 0)
                i++;
            out->value.v_decimal128 = SD(i > 0 ? i - 1 : 0);
        }
#undef SD
        return;
    }
    double mul = 1.0;
    if (up) {
        while (number >= s[n - 1] * mul)
            mul *= 10.0;
        while (number < s[0] * mul) {
            double prev = s[0] * mul;
            mul /= 10.0;
            if (number >= s[n - 1] * mul) {
                agg__set_double(out, prev);
                return;
            }
        }
        int i = 0;
        while (i < n && !(number < s[i] * mul))
            i++;
        agg__set_double(out, s[i < n ? i : n - 1] * mul);
    } else {
        while (number <= s[0] * mul)
            mul /= 10.0;
        while (number > s[n - 1] * mul) {
            double prev = s[n - 1] * mul;
            mul *= 10.0;
            if (number <= s[0] * mul) {
                agg__set_double(out, prev);
                return;
            }
        }
        int i = 0;
        while (i < n && s[i] * mul < number)
            i++;
        agg__set_double(out, s[i > 0 ? i - 1 : 0] * mul);
    }
}

static void gran_round(const series_t *sr, const bson_value_t *v, bool up, bson_value_t *out)
{
    if (sr->n == 0)
        round_pow2(v, up, out);
    else
        round_series(sr, v, up, out);
}

static bool bucket_auto_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                              bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40240, "The argument to $bucketAuto must be an object, but found "
                                 "type: %s",
                     agg__type_name(spec));
        return false;
    }
    group_spec_t *s = spec_new(MODE_BUCKET_AUTO, "$bucketAuto");
    bool have_buckets = false;
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "groupBy")) {
            if (!is_group_by(v) ||
                (v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len < 2)) {
                bq_error_set(err, 40239,
                             "The $bucketAuto 'groupBy' field must be defined as a $-prefixed "
                             "path or an expression object, but found: %s",
                             agg__type_name(v));
                goto fail;
            }
            agg_expr_destroy(s->id);
            if (!(s->id = agg_expr_compile(v, pc->scope, err)))
                goto fail;
        } else if (!strcmp(k, "buckets")) {
            int32_t n;
            if (!bq_num_is_number(v)) {
                bq_error_set(err, 40241,
                             "The $bucketAuto 'buckets' field must be a numeric value, but "
                             "found type: %s",
                             agg__type_name(v));
                goto fail;
            }
            if (!agg__as_int32(v, &n)) {
                double d = 0;
                bq_num_to_double(v, &d);
                bq_error_set(err, 40242,
                             "The $bucketAuto 'buckets' field must be representable as a "
                             "32-bit integer, but found %g",
                             d);
                goto fail;
            }
            s->buckets = n;
            have_buckets = true;
        } else if (!strcmp(k, "output")) {
            if (v->value_type != BSON_TYPE_DOCUMENT) {
                bq_error_set(err, 40244,
                             "The $bucketAuto 'output' field must be an object, but found "
                             "type: %s",
                             agg__type_name(v));
                goto fail;
            }
            if (!spec_add_outputs(s, v, pc->scope, err))
                goto fail;
        } else if (!strcmp(k, "granularity")) {
            if (v->value_type != BSON_TYPE_UTF8) {
                bq_error_set(err, 40261,
                             "The $bucketAuto 'granularity' field must be a string, but found "
                             "type: %s",
                             agg__type_name(v));
                goto fail;
            }
            s->gran = NULL;
            for (size_t i = 0; i < sizeof all_series / sizeof *all_series; i++)
                if (!strcmp(all_series[i].name, v->value.v_utf8.str))
                    s->gran = &all_series[i];
            if (!s->gran) {
                bq_error_set(err, 40257, "Unknown rounding granularity '%s'",
                             v->value.v_utf8.str);
                goto fail;
            }
        } else {
            bq_error_set(err, 40245, "Unrecognized option to $bucketAuto: %s", k);
            goto fail;
        }
    }
    if (!s->id || !have_buckets) {
        bq_error_set(err, 40246, "$bucketAuto requires 'groupBy' and 'buckets' to be specified");
        goto fail;
    }
    if (s->buckets <= 0) {
        bq_error_set(err, 40243,
                     "The $bucketAuto 'buckets' field must be greater than 0, but found: %d",
                     s->buckets);
        goto fail;
    }
    if (s->nacc == 0 && !spec_add_count(s, pc->scope, err))
        goto fail;
    *state = s;
    return true;
fail:
    spec_free(s);
    return false;
}

typedef struct keyed {
    bson_value_t key;
    bson_t *doc;
} keyed_t;

typedef struct auto_iter {
    agg_iter_t base;
    const group_spec_t *s;
    bool built;
    keyed_t *items;
    size_t n, pos;
    int bucket_no;     /* buckets emitted so far */
    size_t approx;     /* documents per bucket */
    bson_value_t prev_max;
    int64_t mem;
} auto_iter_t;

static bool auto_read(auto_iter_t *ai, bq_error_t *err)
{
    const group_spec_t *s = ai->s;
    agg_run_t *run = ai->base.run;
    size_t cap = 0;
    for (;;) {
        bson_t *doc;
        int r = agg_iter_next(ai->base.input, &doc, err);
        if (r < 0)
            return false;
        if (r == 0)
            break;
        if (((ai->n + 1) & 1023) == 0 && agg_run_expired(run, err)) {
            bson_destroy(doc);
            return false;
        }
        agg_env_set_root(&run->env, doc);
        bson_value_t key;
        if (!agg_expr_eval(s->id, &run->env, &key, err)) {
            bson_destroy(doc);
            return false;
        }
        if (s->gran) {
            double d = 0;
            const char *bad = NULL;
            int code = 0;
            if (!bq_num_is_number(&key)) {
                bq_error_set(err, 40258,
                             "$bucketAuto can specify a 'granularity' with numeric boundaries "
                             "only, but found a value with type: %s",
                             key.value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(&key));
                code = 1;
            } else if (bq_num_to_double(&key, &d), isnan(d)) {
                bad = "$bucketAuto can specify a 'granularity' with numeric boundaries only, "
                      "but found a NaN";
                code = 40259;
            } else if (d < 0) {
                bad = "$bucketAuto can specify a 'granularity' with non-negative numbers only, "
                      "but found a negative number";
                code = 40260;
            }
            if (bad)
                bq_error_set(err, code, "%s", bad);
            if (code) {
                agg_value_cleanup(&key);
                bson_destroy(doc);
                return false;
            }
        }
        if (key.value_type == BSON_TYPE_EOD)
            agg__set_null(&key);
        if (!agg_mem_charge(run, &ai->mem, (int64_t)doc->len + 64, s->stage, err)) {
            agg_value_cleanup(&key);
            bson_destroy(doc);
            return false;
        }
        if (ai->n == cap) {
            cap = cap ? cap * 2 : 64;
            ai->items = realloc(ai->items, cap * sizeof *ai->items);
            if (!ai->items)
                abort();
        }
        ai->items[ai->n].key = key;
        ai->items[ai->n++].doc = doc;
    }
    /* stable merge sort by key */
    size_t n = ai->n;
    keyed_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp)
        abort();
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid || b < hi) {
                if (a < mid &&
                    (b >= hi || agg__value_compare(&ai->items[b].key, &ai->items[a].key) >= 0))
                    tmp[o++] = ai->items[a++];
                else
                    tmp[o++] = ai->items[b++];
            }
        }
        memcpy(ai->items, tmp, n * sizeof *tmp);
    }
    free(tmp);
    double approx = round((double)n / (double)s->buckets);
    ai->approx = approx < 1 ? 1 : (size_t)approx;
    return true;
}

/* Adds items[pos] to the bucket's states. */
static bool auto_add(auto_iter_t *ai, agg_acc_state_t **states, bq_error_t *err)
{
    const group_spec_t *s = ai->s;
    agg_run_t *run = ai->base.run;
    agg_env_set_root(&run->env, ai->items[ai->pos].doc);
    for (int i = 0; i < s->nacc; i++)
        if (!agg_acc_add_doc(s->accs[i], states[i], &run->env, NULL, err))
            return false;
    ai->pos++;
    return true;
}

static int auto_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    auto_iter_t *ai = (auto_iter_t *)it;
    const group_spec_t *s = ai->s;
    agg_run_t *run = it->run;
    if (!ai->built) {
        ai->built = true;
        if (!auto_read(ai, err))
            return -1;
    }
    if (ai->bucket_no >= s->buckets || ai->pos >= ai->n)
        return 0;
    ai->bucket_no++;
    bool last = ai->bucket_no == s->buckets;
    agg_acc_state_t **states = calloc((size_t)s->nacc + 1, sizeof *states);
    if (!states)
        abort();
    bson_t empty = BSON_INITIALIZER;
    agg_env_set_root(&run->env, &empty);
    bool ok = true;
    for (int i = 0; ok && i < s->nacc; i++)
        ok = (states[i] = agg_acc_state_new(s->accs[i], &run->env, err)) != NULL;
    bson_value_t min, max;
    memset(&min, 0, sizeof min);
    memset(&max, 0, sizeof max);
    if (ok) {
        const bson_value_t *first = &ai->items[ai->pos].key;
        if (s->gran && ai->prev_max.value_type != BSON_TYPE_EOD)
            agg_value_copy(&ai->prev_max, &min);
        else if (s->gran)
            gran_round(s->gran, first, false, &min);
        else
            agg_value_copy(first, &min);
        size_t taken = 0;
        while (ok && ai->pos < ai->n && (taken < ai->approx || last)) {
            ok = auto_add(ai, states, err);
            taken++;
        }
        const bson_value_t *cur_max = &ai->items[ai->pos - 1].key;
        if (ok && s->gran) {
            bson_value_t bound;
            gran_round(s->gran, cur_max, true, &bound);
            while (ok && ai->pos < ai->n &&
                   (agg__value_compare(&bound, &ai->items[ai->pos].key) > 0 ||
                    agg__value_compare(cur_max, &ai->items[ai->pos].key) == 0)) {
                cur_max = &ai->items[ai->pos].key;
                ok = auto_add(ai, states, err);
            }
            if (ok) {
                double bd = 0;
                bq_num_to_double(&bound, &bd);
                if (bd == 0.0 && ai->pos < ai->n) {
                    gran_round(s->gran, &ai->items[ai->pos].key, false, &max);
                    agg_value_cleanup(&bound);
                } else {
                    max = bound;
                }
            } else {
                agg_value_cleanup(&bound);
            }
        } else if (ok) {
            while (ok && ai->pos < ai->n &&
                   agg__value_compare(cur_max, &ai->items[ai->pos].key) == 0)
                ok = auto_add(ai, states, err);
            agg_value_copy(ai->pos < ai->n ? &ai->items[ai->pos].key : cur_max, &max);
        }
    }
    bson_t *doc = NULL;
    if (ok) {
        agg_value_cleanup(&ai->prev_max);
        agg_value_copy(&max, &ai->prev_max);
        doc = bson_new();
        bson_t idd;
        bson_append_document_begin(doc, "_id", 3, &idd);
        bson_append_value(&idd, "min", 3, &min);
        bson_append_value(&idd, "max", 3, &max);
        bson_append_document_end(doc, &idd);
        ok = append_results(s, states, doc, err);
    }
    agg_value_cleanup(&min);
    agg_value_cleanup(&max);
    for (int i = 0; i < s->nacc; i++)
        agg_acc_state_destroy(states[i]);
    free(states);
    if (!ok) {
        if (doc)
            bson_destroy(doc);
        return -1;
    }
    *out = doc;
    return 1;
}

static void auto_close(agg_iter_t *it)
{
    auto_iter_t *ai = (auto_iter_t *)it;
    for (size_t i = 0; i < ai->n; i++) {
        agg_value_cleanup(&ai->items[i].key);
        bson_destroy(ai->items[i].doc);
    }
    free(ai->items);
    agg_value_cleanup(&ai->prev_max);
    agg_iter_close(it->input);
    free(ai);
}

static agg_iter_t *auto_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    (void)err;
    auto_iter_t *ai = calloc(1, sizeof *ai);
    if (!ai)
        abort();
    ai->base.next = auto_next;
    ai->base.close = auto_close;
    ai->base.input = input;
    ai->base.run = run;
    ai->s = state;
    return &ai->base;
}

const agg_stage_kind_t agg__stages_group[] = {
    {"$group", 0, group_parse, group_open, spec_free},
    {"$bucket", 0, bucket_parse, group_open, spec_free},
    {"$bucketAuto", 0, bucket_auto_parse, auto_open, spec_free},
    {"$sortByCount", 0, sort_by_count_parse, group_open, spec_free},
    {NULL, 0, NULL, NULL, NULL},
};
