/*
 * bq_match_cmp.c: the comparison operators of queries: $eq $ne $gt $gte $lt $lte $in $nin.
 *
 * Owns MongoDB's "type bracketing": a comparison only matches values of the same type class
 * (bq_type_rank), with the exceptions mongod makes (null matches missing and undefined for
 * $eq/$lte/$gte; MinKey and MaxKey bound everything; NaN equals only NaN and is neither
 * above nor below anything). $ne and $nin are negated leaves: they match when no value
 * reached by the path is equal. Regexes inside $in match strings (bq_match_eval.c).
 */
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

bool bq__cmp_match(const bson_value_t *rhs, const bson_value_t *v, enum bq__cmp_kind k)
{
    bson_value_t missing;
    if (!v) {
        missing.value_type = BSON_TYPE_EOD;
        v = &missing;
    }
    int rl = bq_type_rank(v->value_type), rr = bq_type_rank(rhs->value_type);
    if (rl != rr) {
        /* null against missing or undefined (ranks 5 and 0) */
        if (rl + rr == 5 && (rl == 5 || rr == 5))
            return k == BQ__CMP_EQ || k == BQ__CMP_LTE || k == BQ__CMP_GTE;
        if (rhs->value_type == BSON_TYPE_MAXKEY)
            return k == BQ__CMP_LT || k == BQ__CMP_LTE;
        if (rhs->value_type == BSON_TYPE_MINKEY)
            return k == BQ__CMP_GT || k == BQ__CMP_GTE;
        return false;
    }
    if (rl == bq_type_rank(BSON_TYPE_INT32) && (bq_num_is_nan(v) || bq_num_is_nan(rhs))) {
        bool both = bq_num_is_nan(v) && bq_num_is_nan(rhs);
        return both && (k == BQ__CMP_EQ || k == BQ__CMP_LTE || k == BQ__CMP_GTE);
    }
    int c = bq_value_compare(v, rhs);
    switch (k) {
    case BQ__CMP_EQ:
        return c == 0;
    case BQ__CMP_LT:
        return c < 0;
    case BQ__CMP_LTE:
        return c <= 0;
    case BQ__CMP_GT:
        return c > 0;
    case BQ__CMP_GTE:
        return c >= 0;
    }
    return false;
}

/* Copies the argument after the checks every comparison shares. */
static bool compile_cmp(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) == BSON_TYPE_UNDEFINED) {
        bq_error_set(err, BQ_ERR_BadValue, "cannot compare to undefined");
        return false;
    }
    bson_value_copy(bson_iter_value((bson_iter_t *)arg), &n->arg);
    return true;
}

static bool compile_ne(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) == BSON_TYPE_REGEX) {
        bq_error_set(err, BQ_ERR_BadValue, "Can't have regex as arg to $ne.");
        return false;
    }
    return compile_cmp(n, arg, err);
}

static bool match_eq(const bq__mnode_t *n, const bson_value_t *v)
{
    return bq__cmp_match(&n->arg, v, BQ__CMP_EQ);
}

static bool match_lt(const bq__mnode_t *n, const bson_value_t *v)
{
    return bq__cmp_match(&n->arg, v, BQ__CMP_LT);
}

static bool match_lte(const bq__mnode_t *n, const bson_value_t *v)
{
    return bq__cmp_match(&n->arg, v, BQ__CMP_LTE);
}

static bool match_gt(const bq__mnode_t *n, const bson_value_t *v)
{
    return bq__cmp_match(&n->arg, v, BQ__CMP_GT);
}

static bool match_gte(const bq__mnode_t *n, const bson_value_t *v)
{
    return bq__cmp_match(&n->arg, v, BQ__CMP_GTE);
}

/* $in: the compiled regexes, in the order they appear in the array. */
typedef struct in_data {
    bq__regex_t **res;
    size_t nres;
} in_data_t;

static void free_in(void *p)
{
    in_data_t *d = p;
    for (size_t i = 0; i < d->nres; i++)
        bq__regex_free(d->res[i]);
    free(d->res);
    free(d);
}

static bool compile_in(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    const char *name = n->op->name;
    if (bson_iter_type(arg) != BSON_TYPE_ARRAY) {
        bq_error_set(err, BQ_ERR_BadValue, "%s needs an array", name);
        return false;
    }
    in_data_t *d = calloc(1, sizeof *d);
    if (!d) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    n->data = d;
    bson_iter_t it;
    bson_iter_recurse(arg, &it);
    while (bson_iter_next(&it)) {
        bson_type_t t = bson_iter_type(&it);
        if (t == BSON_TYPE_UNDEFINED) {
            bq_error_set(err, BQ_ERR_BadValue, "InMatchExpression equality cannot be undefined");
            return false;
        }
        if (t == BSON_TYPE_DOCUMENT) {
            bson_iter_t ch;
            if (bson_iter_recurse(&it, &ch) && bson_iter_next(&ch) &&
                bson_iter_key(&ch)[0] == '$' && strcmp(bson_iter_key(&ch), "$ref") &&
                strcmp(bson_iter_key(&ch), "$id") && strcmp(bson_iter_key(&ch), "$db")) {
                bq_error_set(err, BQ_ERR_BadValue, "cannot nest $ under %s", name);
                return false;
            }
        }
        if (t == BSON_TYPE_REGEX) {
            const char *opts;
            const char *pat = bson_iter_regex(&it, &opts);
            bq__regex_t *re = bq__regex_new(pat, opts, err);
            if (!re)
                return false;
            bq__regex_t **r = realloc(d->res, sizeof *r * (d->nres + 1));
            if (!r) {
                bq__regex_free(re);
                bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
                return false;
            }
            d->res = r;
            d->res[d->nres++] = re;
        }
    }
    bson_value_copy(bson_iter_value((bson_iter_t *)arg), &n->arg);
    return true;
}

static bool match_in(const bq__mnode_t *n, const bson_value_t *v)
{
    const in_data_t *d = n->data;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, n->arg.value.v_doc.data, n->arg.value.v_doc.data_len))
        return false;
    size_t k = 0;
    while (bson_iter_next(&it)) {
        if (bson_iter_type(&it) == BSON_TYPE_REGEX) {
            if (v && bq__regex_match_value(d->res[k], v))
                return true;
            k++;
        } else if (bq__cmp_match(bson_iter_value(&it), v, BQ__CMP_EQ)) {
            return true;
        }
    }
    return false;
}

const bq__mop_t bq__match_eq_op = {"$eq", compile_cmp, match_eq, NULL, 0};

const bq__mop_t bq__match_cmp_ops[] = {
    {"$eq", compile_cmp, match_eq, NULL, 0},
    {"$ne", compile_ne, match_eq, NULL, BQ__MOP_NEGATE},
    {"$gt", compile_cmp, match_gt, NULL, 0},
    {"$gte", compile_cmp, match_gte, NULL, 0},
    {"$lt", compile_cmp, match_lt, NULL, 0},
    {"$lte", compile_cmp, match_lte, NULL, 0},
    {"$in", compile_in, match_in, free_in, 0},
    {"$nin", compile_in, match_in, free_in, BQ__MOP_NEGATE},
    {NULL, NULL, NULL, NULL, 0},
};
