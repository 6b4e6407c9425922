/*
 * agg_expr_bool.c: boolean expression operators $and, $or (any number of operands,
 * evaluated left to right and short-circuited) and $not. Truthiness is
 * agg_value_truthy(): false, null, undefined, missing and numeric zero are false,
 * everything else (including "" and []) is true. Results are always booleans.
 */
#include "agg_expr_int.h"

static bool eval_and_or(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err, bool is_or)
{
    for (int i = 0; i < e->nargs; i++) {
        bson_value_t v;
        if (!agg__eval_arg(e, i, env, &v, err))
            return false;
        bool t = agg_value_truthy(&v);
        agg_value_cleanup(&v);
        if (t == is_or) {
            agg__set_bool(out, is_or);
            return true;
        }
    }
    agg__set_bool(out, !is_or);
    return true;
}

static bool eval_and(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_and_or(e, env, out, err, false);
}

static bool eval_or(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_and_or(e, env, out, err, true);
}

static bool eval_not(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    agg__set_bool(out, !agg_value_truthy(&v));
    agg_value_cleanup(&v);
    return true;
}

const agg__op_t agg__ops_bool[] = {
    {"$and", NULL, eval_and, 0, -1, AGG__FOLD},
    {"$or", NULL, eval_or, 0, -1, AGG__FOLD},
    {"$not", NULL, eval_not, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
