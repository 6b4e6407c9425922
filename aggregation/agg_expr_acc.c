/*
 * agg_expr_acc.c: expression operators that are accumulators' expression forms, and a few
 * integer and timestamp operators:
 *
 *   $sum $avg $min $max $stdDevPop $stdDevSamp   one operand that is an array folds its
 *       elements; several operands fold the operands themselves (arrays among them are
 *       plain values: not numbers for $sum, compared as arrays by $min/$max)
 *   $median $percentile   {input, p, method} as the accumulators take them: a numeric
 *       input is its own percentile, an array gives the percentiles of its numbers
 *   $bitAnd $bitOr $bitXor $bitNot   int32/int64 only (14); a long operand gives a long
 *   $tsSecond $tsIncrement   the two halves of a timestamp, as longs
 *
 * The folding itself is agg_acc.c's (agg_acc_fold, agg_acc_quantile_value), so the
 * expression and accumulator forms cannot drift apart.
 */
#include <stdlib.h>
#include <string.h>

#include "agg_acc.h"
#include "agg_expr_int.h"

/* ---------------------------------------------------------------- folds */

static bool eval_fold(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    const char *name = e->op->name;
    bool ok;
    if (e->nargs == 1) {
        bson_value_t v;
        if (!agg__eval_arg(e, 0, env, &v, err))
            return false;
        if (v.value_type == BSON_TYPE_ARRAY) {
            uint32_t n = agg__array_len(&v);
            bson_value_t *vals = calloc(n ? n : 1, sizeof *vals);
            if (!vals)
                abort();
            bson_iter_t it;
            uint32_t i = 0;
            agg__iter_init(&it, &v);
            while (bson_iter_next(&it) && i < n)
                vals[i++] = *bson_iter_value(&it); /* borrowed from v */
            ok = agg_acc_fold(name, vals, i, out, err);
            free(vals);
        } else {
            ok = agg_acc_fold(name, &v, v.value_type == BSON_TYPE_EOD ? 0 : 1, out, err);
        }
        agg_value_cleanup(&v);
        return ok;
    }
    bson_value_t *vals = calloc(e->nargs ? (size_t)e->nargs : 1, sizeof *vals);
    if (!vals)
        abort();
    ok = agg__eval_args(e, env, vals, err);
    if (ok) {
        /* missing operands are skipped */
        size_t m = 0;
        for (int i = 0; i < e->nargs; i++)
            if (vals[i].value_type != BSON_TYPE_EOD)
                vals[m++] = vals[i];
        ok = agg_acc_fold(name, vals, m, out, err);
        agg__values_cleanup(vals, (int)m);
    } else {
        agg__values_cleanup(vals, e->nargs);
    }
    free(vals);
    return ok;
}

/* ---------------------------------------------------------------- $median $percentile */

static void acc_free(void *p)
{
    agg_acc_destroy(p);
}

static bool compile_quantile(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    bool median = strcmp(e->op->name, "$median") == 0;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, median ? 7436201 : 7436200,
                     "specification must be an object; found %s", agg__type_name(arg));
        return false;
    }
    agg_acc_t *a = agg_acc_compile(e->op->name, arg, scope, AGG_ACC_GROUP, err);
    if (!a)
        return false;
    e->data = a;
    e->data_free = acc_free;
    e->nargs = 0;
    return true;
}

static bool eval_quantile(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    bson_value_t in;
    bool ok = agg_acc_input(e->data, env, &in, err) &&
              agg_acc_quantile_value(e->data, &in, out, err);
    agg_value_cleanup(&in);
    return ok;
}

/* ---------------------------------------------------------------- bitwise */

static bool eval_bitwise(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err)
{
    const char *name = e->op->name;
    char op = name[4]; /* $bitAnd, $bitOr, $bitXor */
    int64_t acc = op == 'A' ? -1 : 0;
    bool is_long = false;
    for (int i = 0; i < e->nargs; i++) {
        bson_value_t v;
        if (!agg__eval_arg(e, i, env, &v, err))
            return false;
        if (agg__nullish(&v)) {
            agg_value_cleanup(&v);
            agg__set_null(out);
            return true;
        }
        int64_t x;
        if (v.value_type == BSON_TYPE_INT32) {
            x = v.value.v_int32;
        } else if (v.value_type == BSON_TYPE_INT64) {
            x = v.value.v_int64;
            is_long = true;
        } else {
            agg_value_cleanup(&v);
            bq_error_set(err, BQ_ERR_TypeMismatch, "%s only supports int and long operands.",
                         name);
            return false;
        }
        acc = op == 'A' ? (acc & x) : op == 'O' ? (acc | x) : (acc ^ x);
    }
    if (is_long)
        agg__set_int64(out, acc);
    else
        agg__set_int32(out, (int32_t)acc);
    return true;
}

static bool eval_bit_not(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
    } else if (v.value_type == BSON_TYPE_INT32) {
        agg__set_int32(out, ~v.value.v_int32);
    } else if (v.value_type == BSON_TYPE_INT64) {
        agg__set_int64(out, ~v.value.v_int64);
    } else if (bq_num_is_number(&v)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "$bitNot only supports int and long, not: %s.",
                     agg__type_name(&v));
        ok = false;
    } else {
        bq_error_set(err, 28765, "$bitNot only supports numeric types, not %s",
                     agg__type_name(&v));
        ok = false;
    }
    agg_value_cleanup(&v);
    return ok;
}

/* ---------------------------------------------------------------- timestamps */

static bool eval_ts_part(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                         bq_error_t *err)
{
    bool second = strcmp(e->op->name, "$tsSecond") == 0;
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
    } else if (v.value_type != BSON_TYPE_TIMESTAMP) {
        bq_error_set(err, second ? 5687301 : 5687302,
                     "Argument to %s must be a timestamp, but is %s", e->op->name,
                     agg__type_name(&v));
        ok = false;
    } else {
        agg__set_int64(out, second ? (int64_t)v.value.v_timestamp.timestamp
                                   : (int64_t)v.value.v_timestamp.increment);
    }
    agg_value_cleanup(&v);
    return ok;
}

const agg__op_t agg__ops_acc[] = {
    {"$sum", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$avg", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$min", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$max", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$stdDevPop", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$stdDevSamp", NULL, eval_fold, 0, -1, AGG__FOLD},
    {"$median", compile_quantile, eval_quantile, 0, 0, 0},
    {"$percentile", compile_quantile, eval_quantile, 0, 0, 0},
    {"$bitAnd", NULL, eval_bitwise, 0, -1, AGG__FOLD},
    {"$bitOr", NULL, eval_bitwise, 0, -1, AGG__FOLD},
    {"$bitXor", NULL, eval_bitwise, 0, -1, AGG__FOLD},
    {"$bitNot", NULL, eval_bit_not, 1, 1, AGG__FOLD},
    {"$tsSecond", NULL, eval_ts_part, 1, 1, AGG__FOLD},
    {"$tsIncrement", NULL, eval_ts_part, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
