/*
 * bq_match_elem.c: the element operators of queries: $exists and $type.
 *
 * Owns their argument checks and the $type type set: numeric codes (-1 minKey ... 19
 * decimal, 127 maxKey), mongod's aliases (bq_type.h) and "number" for every numeric type,
 * alone or in an array. $exists: false is a negated leaf: no value may be reached.
 * $type: "array" matches arrays because a leaf array is also reported as itself.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

/* ---------------------------------------------------------------- $exists */

static bool truthy(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_BOOL:
        return bson_iter_bool(it);
    case BSON_TYPE_INT32:
        return bson_iter_int32(it) != 0;
    case BSON_TYPE_INT64:
        return bson_iter_int64(it) != 0;
    case BSON_TYPE_DOUBLE:
        return bson_iter_double(it) != 0;
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t d;
        bson_iter_decimal128(it, &d);
        return !bq_dec_is_zero(d);
    }
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_EOD:
        return false;
    default:
        return true;
    }
}

static bool compile_exists(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    (void)err;
    if (!truthy(arg))
        n->negate = !n->negate;
    return true;
}

static bool match_exists(const bq__mnode_t *n, const bson_value_t *v)
{
    (void)n;
    return v != NULL;
}

/* ---------------------------------------------------------------- $type */

typedef struct type_set {
    uint32_t bits;  /* bit t for BSON type t in 1..31 */
    bool min_key, max_key, number;
} type_set_t;

static bool add_type(type_set_t *ts, const bson_iter_t *it, bq_error_t *err)
{
    if (bson_iter_type(it) == BSON_TYPE_UTF8) {
        const char *s = bson_iter_utf8(it, NULL);
        bson_type_t t;
        if (strcmp(s, "number") == 0) {
            ts->number = true;
            return true;
        }
        if (!bq_type_from_name(s, &t)) {
            bq_error_set(err, BQ_ERR_BadValue, "Unknown type name alias: %s", s);
            return false;
        }
        if (t == BSON_TYPE_MINKEY)
            ts->min_key = true;
        else if (t == BSON_TYPE_MAXKEY)
            ts->max_key = true;
        else
            ts->bits |= 1u << (unsigned)t;
        return true;
    }
    bson_value_t v = *bson_iter_value((bson_iter_t *)it);
    if (!bq_num_is_number(&v)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "type must be represented as a number or a string");
        return false;
    }
    int64_t code;
    bool exact;
    if (!bq_num_to_int64(&v, &code, &exact) || !exact) {
        double d = 0;
        bq_num_to_double(&v, &d);
        bq_error_set(err, BQ_ERR_BadValue, "Invalid numerical type code: %g", d);
        return false;
    }
    if (code == -1) {
        ts->min_key = true;
    } else if (code == 127) {
        ts->max_key = true;
    } else if (code >= 1 && code <= 19) {
        ts->bits |= 1u << (unsigned)code;
    } else {
        bq_error_set(err, BQ_ERR_BadValue, "Invalid numerical type code: %lld",
                     (long long)code);
        return false;
    }
    return true;
}

static bool compile_type(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    type_set_t *ts = calloc(1, sizeof *ts);
    if (!ts) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    n->data = ts;
    if (bson_iter_type(arg) == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        bson_iter_recurse(arg, &it);
        while (bson_iter_next(&it))
            if (!add_type(ts, &it, err))
                return false;
        return true;
    }
    return add_type(ts, arg, err);
}

static bool match_type(const bq__mnode_t *n, const bson_value_t *v)
{
    const type_set_t *ts = n->data;
    if (!v)
        return false;
    if (ts->number && bq_num_is_number(v))
        return true;
    if (v->value_type == BSON_TYPE_MINKEY)
        return ts->min_key;
    if (v->value_type == BSON_TYPE_MAXKEY)
        return ts->max_key;
    unsigned t = (unsigned)v->value_type;
    return t < 32 && (ts->bits & (1u << t)) != 0;
}

const bq__mop_t bq__match_elem_ops[] = {
    {"$exists", compile_exists, match_exists, NULL, 0},
    {"$type", compile_type, match_type, free, 0},
    {NULL, NULL, NULL, NULL, 0},
};
