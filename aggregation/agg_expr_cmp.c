/*
 * agg_expr_cmp.c: comparison expression operators $eq $ne $gt $gte $lt $lte $cmp. They
 * compare any two values with MongoDB's total order (bq_value_compare: numbers by value
 * across types, then type rank); unlike query filters there is no array fan-out. A
 * missing value compares as undefined, below null, so {$eq: ["$nosuch", null]} is false
 * as in mongod. Collation is not supported here (simple binary comparison).
 */
#include <string.h>

#include "agg_expr_int.h"

enum cmp_op { CMP_EQ, CMP_NE, CMP_GT, CMP_GTE, CMP_LT, CMP_LTE, CMP_CMP };

int agg__value_compare(const bson_value_t *a, const bson_value_t *b)
{
    bson_value_t x = *a, y = *b;
    if (x.value_type == BSON_TYPE_EOD)
        x.value_type = BSON_TYPE_UNDEFINED;
    if (y.value_type == BSON_TYPE_EOD)
        y.value_type = BSON_TYPE_UNDEFINED;
    return bq_value_compare(&x, &y);
}

static bool eval_cmp_op(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err, enum cmp_op op)
{
    bson_value_t v[2];
    if (!agg__eval_args(e, env, v, err)) {
        agg__values_cleanup(v, 2);
        return false;
    }
    int c = agg__value_compare(&v[0], &v[1]);
    agg__values_cleanup(v, 2);
    switch (op) {
    case CMP_EQ: agg__set_bool(out, c == 0); break;
    case CMP_NE: agg__set_bool(out, c != 0); break;
    case CMP_GT: agg__set_bool(out, c > 0); break;
    case CMP_GTE: agg__set_bool(out, c >= 0); break;
    case CMP_LT: agg__set_bool(out, c < 0); break;
    case CMP_LTE: agg__set_bool(out, c <= 0); break;
    case CMP_CMP: agg__set_int32(out, c < 0 ? -1 : c > 0 ? 1 : 0); break;
    }
    return true;
}

#define CMP_FN(fn, op)                                                                   \
    static bool fn(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err) \
    {                                                                                    \
        return eval_cmp_op(e, env, out, err, op);                                        \
    }
CMP_FN(eval_eq, CMP_EQ)
CMP_FN(eval_ne, CMP_NE)
CMP_FN(eval_gt, CMP_GT)
CMP_FN(eval_gte, CMP_GTE)
CMP_FN(eval_lt, CMP_LT)
CMP_FN(eval_lte, CMP_LTE)
CMP_FN(eval_cmp, CMP_CMP)

const agg__op_t agg__ops_cmp[] = {
    {"$eq", NULL, eval_eq, 2, 2, AGG__FOLD},
    {"$ne", NULL, eval_ne, 2, 2, AGG__FOLD},
    {"$gt", NULL, eval_gt, 2, 2, AGG__FOLD},
    {"$gte", NULL, eval_gte, 2, 2, AGG__FOLD},
    {"$lt", NULL, eval_lt, 2, 2, AGG__FOLD},
    {"$lte", NULL, eval_lte, 2, 2, AGG__FOLD},
    {"$cmp", NULL, eval_cmp, 2, 2, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
