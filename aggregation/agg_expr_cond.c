/*
 * agg_expr_cond.c: conditional expression operators $cond (array form [if, then, else]
 * or object form {if, then, else}), $ifNull (first operand that is neither null nor
 * missing, else the last) and $switch ({branches: [{case, then}], default}). Only the
 * chosen branch is evaluated, so a branch that would fail is harmless when not taken.
 */
#include <string.h>

#include "agg_expr_int.h"

static bool compile_cond(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                         bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT)
        return agg__compile_operands(e, arg, scope, 3, 3, err);
    static const char *const names[] = {"if", "then", "else"};
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "if") && strcmp(k, "then") && strcmp(k, "else")) {
            bq_error_set(err, 17083, "Unrecognized parameter to $cond: %s", k);
            return false;
        }
    }
    if (!agg__compile_named(e, arg, scope, names, 3, 0, NULL, 17083, 17083, err))
        return false;
    for (int i = 0; i < 3; i++)
        if (!e->args[i]) {
            bq_error_set(err, 17080 + i, "Missing '%s' parameter to $cond", names[i]);
            return false;
        }
    return true;
}

static bool eval_cond(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t c;
    if (!agg__eval_arg(e, 0, env, &c, err))
        return false;
    bool t = agg_value_truthy(&c);
    agg_value_cleanup(&c);
    return agg__eval_arg(e, t ? 1 : 2, env, out, err);
}

static bool compile_ifnull(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           bq_error_t *err)
{
    int n = arg->value_type == BSON_TYPE_ARRAY ? (int)agg__array_len(arg) : 1;
    if (n < 2) {
        bq_error_set(err, 1257300, "$ifNull needs at least two arguments, had: %d", n);
        return false;
    }
    return agg__compile_operands(e, arg, scope, 2, -1, err);
}

static bool eval_ifnull(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    for (int i = 0; i < e->nargs - 1; i++) {
        if (!agg__eval_arg(e, i, env, out, err))
            return false;
        if (!agg__nullish(out))
            return true;
        agg_value_cleanup(out);
    }
    return agg__eval_arg(e, e->nargs - 1, env, out, err);
}

/* args: case0, then0, case1, then1, ..., default (NULL when absent); ival = branches. */
static bool compile_switch(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40060, "$switch requires an object as an argument, found: %s",
                     agg__type_name(arg));
        return false;
    }
    bson_value_t branches = {.value_type = BSON_TYPE_EOD}, def = {.value_type = BSON_TYPE_EOD};
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "branches") == 0) {
            branches = *bson_iter_value(&it);
            if (branches.value_type != BSON_TYPE_ARRAY) {
                bq_error_set(err, 40061, "$switch expected an array for 'branches', found: %s",
                             agg__type_name(&branches));
                return false;
            }
        } else if (strcmp(k, "default") == 0) {
            def = *bson_iter_value(&it);
        } else {
            bq_error_set(err, 40067, "$switch found an unknown argument: %s", k);
            return false;
        }
    }
    int n = branches.value_type == BSON_TYPE_ARRAY ? (int)agg__array_len(&branches) : 0;
    if (n == 0) {
        bq_error_set(err, 40068, "$switch requires at least one branch.");
        return false;
    }
    agg__expr_args_alloc(e, 2 * n + 1);
    e->ival = n;
    agg__iter_init(&it, &branches);
    int i = 0;
    while (bson_iter_next(&it)) {
        bson_value_t b = *bson_iter_value(&it);
        if (b.value_type != BSON_TYPE_DOCUMENT) {
            bq_error_set(err, 40062, "$switch expected each branch to be an object, found: %s",
                         agg__type_name(&b));
            return false;
        }
        bson_iter_t bi;
        agg__iter_init(&bi, &b);
        while (bson_iter_next(&bi)) {
            const char *k = bson_iter_key(&bi);
            int slot;
            if (strcmp(k, "case") == 0)
                slot = 2 * i;
            else if (strcmp(k, "then") == 0)
                slot = 2 * i + 1;
            else {
                bq_error_set(err, 40063, "$switch found an unknown argument to a branch: %s", k);
                return false;
            }
            bson_value_t sub = *bson_iter_value(&bi);
            agg_expr_destroy(e->args[slot]);
            e->args[slot] = agg_expr_compile(&sub, scope, err);
            if (!e->args[slot])
                return false;
        }
        if (!e->args[2 * i]) {
            bq_error_set(err, 40064, "$switch requires each branch have a 'case' expression");
            return false;
        }
        if (!e->args[2 * i + 1]) {
            bq_error_set(err, 40065, "$switch requires each branch have a 'then' expression.");
            return false;
        }
        i++;
    }
    if (def.value_type != BSON_TYPE_EOD) {
        e->args[2 * n] = agg_expr_compile(&def, scope, err);
        if (!e->args[2 * n])
            return false;
    }
    return true;
}

static bool eval_switch(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    int n = (int)e->ival;
    for (int i = 0; i < n; i++) {
        bson_value_t c;
        if (!agg__eval_arg(e, 2 * i, env, &c, err))
            return false;
        bool t = agg_value_truthy(&c);
        agg_value_cleanup(&c);
        if (t)
            return agg__eval_arg(e, 2 * i + 1, env, out, err);
    }
    if (!e->args[2 * n]) {
        bq_error_set(err, 40066, "$switch could not find a matching branch for an input, and no "
                                 "default was specified.");
        return false;
    }
    return agg__eval_arg(e, 2 * n, env, out, err);
}

const agg__op_t agg__ops_cond[] = {
    {"$cond", compile_cond, eval_cond, 3, 3, AGG__FOLD},
    {"$ifNull", compile_ifnull, eval_ifnull, 2, -1, AGG__FOLD},
    {"$switch", compile_switch, eval_switch, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
