/*
 * agg_expr_array.c: array expression operators. $arrayElemAt, $first, $last,
 * $concatArrays, $filter, $map, $reduce, $in, $indexOfArray, $isArray, $range,
 * $reverseArray, $size, $slice, $zip, $sortArray, $arrayToObject, $objectToArray, and
 * the array forms of $maxN, $minN, $firstN, $lastN.
 *
 * $filter, $map and $reduce bind variables ("as", default $$this; $reduce's $$value) in
 * a child scope at compile time; at run time each element is bound borrowed from the
 * input array, so iterating copies nothing but the results. A null or missing array
 * argument gives null for most operators, as in mongod; the exceptions ($size, $isArray,
 * $in) say so where they are.
 */
#include <string.h>

#include "agg_expr_int.h"
#include "bq_sort.h"

/* ---------------------------------------------------------------- helpers */

/* Loads an array's elements as borrowed values (pointing into arr). */
static bson_value_t *array_values(const bson_value_t *arr, uint32_t *n)
{
    uint32_t cnt = agg__array_len(arr);
    bson_value_t *vals = bson_malloc0(sizeof *vals * (cnt ? cnt : 1));
    bson_iter_t it;
    uint32_t i = 0;
    if (agg__iter_init(&it, arr))
        while (bson_iter_next(&it) && i < cnt)
            vals[i++] = *bson_iter_value(&it);
    *n = i;
    return vals;
}

static void build_array(bson_value_t *out, const bson_value_t *vals, uint32_t n)
{
    bson_t arr;
    bson_init(&arr);
    uint32_t idx = 0;
    for (uint32_t i = 0; i < n; i++)
        agg__array_append(&arr, &idx, &vals[i]);
    agg__set_array_steal(out, &arr);
}

typedef int (*val_cmp_fn)(const bson_value_t *a, const bson_value_t *b, const void *ctx);

/* Stable merge sort of values. */
static void sort_values(bson_value_t *v, uint32_t n, val_cmp_fn cmp, const void *ctx)
{
    if (n < 2)
        return;
    bson_value_t *tmp = bson_malloc(sizeof *tmp * n);
    for (uint32_t w = 1; w < n; w *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * w) {
            uint32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = cmp(&v[j], &v[i], ctx) < 0 ? v[j++] : v[i++];
            while (i < mid)
                tmp[k++] = v[i++];
            while (j < hi)
                tmp[k++] = v[j++];
        }
        memcpy(v, tmp, sizeof *v * n);
    }
    bson_free(tmp);
}

static int cmp_plain(const bson_value_t *a, const bson_value_t *b, const void *ctx)
{
    int dir = *(const int *)ctx;
    return dir * bq_value_compare(a, b);
}

/* ---------------------------------------------------------------- element access */

static bool elem_at(const char *name, const bson_value_t *arr, const bson_value_t *idx,
                    bson_value_t *out, bq_error_t *err)
{
    if (agg__nullish(arr) || agg__nullish(idx)) {
        agg__set_null(out);
        return true;
    }
    if (arr->value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 28689, "%s's first argument must be an array, but is %s", name,
                     agg__type_name(arr));
        return false;
    }
    if (!bq_num_is_number(idx)) {
        bq_error_set(err, 28690, "%s's second argument must be a numeric value, but is %s",
                     name, agg__type_name(idx));
        return false;
    }
    int32_t i;
    if (!agg__as_int32(idx, &i)) {
        bq_error_set(err, 28691,
                     "%s's second argument must be representable as a 32-bit integer", name);
        return false;
    }
    uint32_t n;
    bson_value_t *vals = array_values(arr, &n);
    int64_t k = i < 0 ? (int64_t)n + i : i;
    if (k >= 0 && k < (int64_t)n)
        agg_value_copy(&vals[k], out);
    bson_free(vals);
    return true;
}

static bool eval_array_elem_at(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err) && elem_at("$arrayElemAt", &v[0], &v[1], out, err);
    agg__values_cleanup(v, 2);
    return ok;
}

static bool eval_first_last(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err, int idx)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bson_value_t i = {.value_type = BSON_TYPE_INT32};
    i.value.v_int32 = idx;
    bool ok = elem_at(e->op->name, &v, &i, out, err);
    agg_value_cleanup(&v);
    return ok;
}

static bool eval_first(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_first_last(e, env, out, err, 0);
}

static bool eval_last(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    return eval_first_last(e, env, out, err, -1);
}

/* ---------------------------------------------------------------- $concatArrays */

static bool eval_concat_arrays(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    bson_t arr;
    bson_init(&arr);
    uint32_t idx = 0;
    bool null = false;
    for (int i = 0; i < e->nargs; i++) {
        bson_value_t v;
        if (!agg__eval_arg(e, i, env, &v, err)) {
            bson_destroy(&arr);
            return false;
        }
        if (agg__nullish(&v)) {
            null = true;
        } else if (v.value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, 28664, "$concatArrays only supports arrays, not %s",
                         agg__type_name(&v));
            agg_value_cleanup(&v);
            bson_destroy(&arr);
            return false;
        } else if (!null) {
            bson_iter_t it;
            agg__iter_init(&it, &v);
            while (bson_iter_next(&it))
                agg__array_append(&arr, &idx, bson_iter_value(&it));
        }
        agg_value_cleanup(&v);
    }
    if (null) {
        bson_destroy(&arr);
        agg__set_null(out);
    } else {
        agg__set_array_steal(out, &arr);
    }
    return true;
}

/* ---------------------------------------------------------------- $map $filter $reduce */

/* Defines `as` (a raw string value, or the default name) in a new child scope. */
static agg_scope_t *bind_scope(agg_scope_t *scope, const bson_value_t *as, const char *dflt,
                               int *slot, bq_error_t *err)
{
    const char *name = dflt;
    if (as && as->value_type != BSON_TYPE_EOD) {
        if (as->value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, BQ_ERR_FailedToParse, "'as' must be a string");
            return NULL;
        }
        name = as->value.v_utf8.str;
    }
    if (!agg_var_name_check(name, err))
        return NULL;
    agg_scope_t *inner = agg_scope_new(scope);
    *slot = agg_scope_define(inner, name);
    return inner;
}

/* $map: args[0] input, args[1] in; slots[0] the element. */
static bool compile_map(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                        bq_error_t *err)
{
    static const char *const names[] = {"input", "as", "in"};
    bson_value_t raws[3];
    if (!agg__compile_named(e, arg, scope, names, 3, 1u << 1 | 1u << 2, raws, 16878, 16879,
                            err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 16880, "Missing 'input' parameter to $map");
        return false;
    }
    if (raws[2].value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 16882, "Missing 'in' parameter to $map");
        return false;
    }
    agg_scope_t *inner = bind_scope(scope, &raws[1], "this", &e->slots[0], err);
    if (!inner)
        return false;
    e->args[2] = agg_expr_compile(&raws[2], inner, err);
    agg_scope_destroy(inner);
    return e->args[2] != NULL;
}

static bool eval_map(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t in;
    if (!agg__eval_arg(e, 0, env, &in, err))
        return false;
    bool ok = true;
    if (agg__nullish(&in)) {
        agg__set_null(out);
    } else if (in.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 16883, "input to $map must be an array not %s", agg__type_name(&in));
        ok = false;
    } else {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        bson_iter_t it;
        agg__iter_init(&it, &in);
        while (ok && bson_iter_next(&it)) {
            bson_value_t el = *bson_iter_value(&it), r;
            agg_env_set_var_borrowed(env, e->slots[0], &el);
            ok = agg_expr_eval(e->args[2], env, &r, err);
            if (ok) {
                if (r.value_type == BSON_TYPE_EOD)
                    agg__set_null(&r);
                agg__array_append(&arr, &idx, &r);
            }
            agg_value_cleanup(&r);
        }
        bson_value_t none = {.value_type = BSON_TYPE_EOD};
        agg_env_set_var_borrowed(env, e->slots[0], &none);
        if (ok)
            agg__set_array_steal(out, &arr);
        else
            bson_destroy(&arr);
    }
    agg_value_cleanup(&in);
    return ok;
}

/* $filter: args[0] input, args[2] cond, args[3] limit; slots[0] the element. */
static bool compile_filter(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           bq_error_t *err)
{
    static const char *const names[] = {"input", "as", "cond", "limit"};
    bson_value_t raws[4];
    if (!agg__compile_named(e, arg, scope, names, 4, 1u << 1 | 1u << 2, raws, 28646, 28647,
                            err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 28648, "Missing 'input' parameter to $filter");
        return false;
    }
    if (raws[2].value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 28650, "Missing 'cond' parameter to $filter");
        return false;
    }
    agg_scope_t *inner = bind_scope(scope, &raws[1], "this", &e->slots[0], err);
    if (!inner)
        return false;
    e->args[2] = agg_expr_compile(&raws[2], inner, err);
    agg_scope_destroy(inner);
    return e->args[2] != NULL;
}

static bool eval_filter(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    bson_value_t in, lim;
    if (!agg__eval_arg(e, 0, env, &in, err))
        return false;
    if (!agg__eval_arg(e, 3, env, &lim, err)) {
        agg_value_cleanup(&in);
        return false;
    }
    bool ok = true;
    int64_t limit = -1;
    if (agg__nullish(&in)) {
        agg__set_null(out);
        goto done;
    }
    if (in.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 28651, "input to $filter must be an array not %s", agg__type_name(&in));
        ok = false;
        goto done;
    }
    if (!agg__nullish(&lim)) {
        int32_t l;
        if (!bq_num_is_number(&lim) || !agg__as_int32(&lim, &l)) {
            bq_error_set(err, 327391, "$filter: limit must be represented as a 32-bit integral "
                                      "value");
            ok = false;
            goto done;
        }
        if (l < 1) {
            bq_error_set(err, 327392, "$filter: limit must be greater than 0: %d", l);
            ok = false;
            goto done;
        }
        limit = l;
    }
    bson_t arr;
    bson_init(&arr);
    uint32_t idx = 0;
    bson_iter_t it;
    agg__iter_init(&it, &in);
    while (ok && (limit < 0 || idx < limit) && bson_iter_next(&it)) {
        bson_value_t el = *bson_iter_value(&it), c;
        agg_env_set_var_borrowed(env, e->slots[0], &el);
        ok = agg_expr_eval(e->args[2], env, &c, err);
        if (ok && agg_value_truthy(&c))
            agg__array_append(&arr, &idx, &el);
        agg_value_cleanup(&c);
    }
    bson_value_t none = {.value_type = BSON_TYPE_EOD};
    agg_env_set_var_borrowed(env, e->slots[0], &none);
    if (ok)
        agg__set_array_steal(out, &arr);
    else
        bson_destroy(&arr);
done:
    agg_value_cleanup(&in);
    agg_value_cleanup(&lim);
    return ok;
}

/* $reduce: args[0] input, args[1] initialValue, args[2] in; slots[0] this, [1] value. */
static bool compile_reduce(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40075, "$reduce requires an object as an argument, found: %s",
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "initialValue", "in"};
    bson_value_t raws[3];
    if (!agg__compile_named(e, arg, scope, names, 3, 1u << 2, raws, 40075, 40076, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 40077, "$reduce requires 'input' to be specified");
        return false;
    }
    if (!e->args[1]) {
        bq_error_set(err, 40078, "$reduce requires 'initialValue' to be specified");
        return false;
    }
    if (raws[2].value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 40079, "$reduce requires 'in' to be specified");
        return false;
    }
    agg_scope_t *inner = agg_scope_new(scope);
    e->slots[0] = agg_scope_define(inner, "this");
    e->slots[1] = agg_scope_define(inner, "value");
    e->args[2] = agg_expr_compile(&raws[2], inner, err);
    agg_scope_destroy(inner);
    return e->args[2] != NULL;
}

static bool eval_reduce(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                        bq_error_t *err)
{
    bson_value_t in, acc;
    if (!agg__eval_arg(e, 0, env, &in, err))
        return false;
    bool ok = true;
    if (agg__nullish(&in)) {
        agg__set_null(out);
        goto done;
    }
    if (in.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 40080, "$reduce requires that 'input' be an array, found: %s",
                     agg__type_name(&in));
        ok = false;
        goto done;
    }
    if (!agg__eval_arg(e, 1, env, &acc, err)) {
        ok = false;
        goto done;
    }
    bson_iter_t it;
    agg__iter_init(&it, &in);
    while (ok && bson_iter_next(&it)) {
        bson_value_t el = *bson_iter_value(&it), r;
        agg_env_set_var_borrowed(env, e->slots[0], &el);
        agg__env_take(env, e->slots[1], &acc);  /* the env owns the accumulator now */
        ok = agg_expr_eval(e->args[2], env, &r, err);
        acc = r;
    }
    bson_value_t none = {.value_type = BSON_TYPE_EOD};
    agg_env_set_var_borrowed(env, e->slots[0], &none);
    agg_env_set_var_borrowed(env, e->slots[1], &none);
    if (ok)
        *out = acc;
    else
        agg_value_cleanup(&acc);
done:
    agg_value_cleanup(&in);
    return ok;
}

/* ---------------------------------------------------------------- searching */

static bool eval_in(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (ok && v[1].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 40081, "$in requires an array as a second argument, found: %s",
                     agg__type_name(&v[1]));
        ok = false;
    }
    if (ok) {
        bool found = false;
        bson_iter_t it;
        agg__iter_init(&it, &v[1]);
        while (!found && bson_iter_next(&it))
            found = agg__value_compare(&v[0], bson_iter_value(&it)) == 0;
        agg__set_bool(out, found);
    }
    agg__values_cleanup(v, 2);
    return ok;
}

static bool index_arg(const bson_value_t *v, int64_t *out, bq_error_t *err)
{
    if (!bq_num_is_number(v) || !agg__as_int64_exact(v, out)) {
        bq_error_set(err, 40096, "$indexOfArray requires an integral starting index, found a "
                                 "value of type: %s", agg__type_name(v));
        return false;
    }
    if (*out < 0) {
        bq_error_set(err, 40097, "$indexOfArray requires a nonnegative start index, found: %lld",
                     (long long)*out);
        return false;
    }
    return true;
}

static bool eval_index_of_array(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                bq_error_t *err)
{
    bson_value_t v[4];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        goto done;
    }
    if (v[0].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 40090, "$indexOfArray requires an array as a first argument, found: %s",
                     agg__type_name(&v[0]));
        ok = false;
        goto done;
    }
    uint32_t n;
    bson_value_t *vals = array_values(&v[0], &n);
    int64_t start = 0, end = n;
    ok = (e->nargs < 3 || index_arg(&v[2], &start, err)) &&
         (e->nargs < 4 || index_arg(&v[3], &end, err));
    if (ok) {
        agg__set_int32(out, -1);
        if (end > n)
            end = n;
        for (int64_t i = start; i < end; i++)
            if (agg__value_compare(&vals[i], &v[1]) == 0) {
                agg__set_int32(out, (int32_t)i);
                break;
            }
    }
    bson_free(vals);
done:
    agg__values_cleanup(v, e->nargs);
    return ok;
}

static bool eval_is_array(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    agg__set_bool(out, v.value_type == BSON_TYPE_ARRAY);
    agg_value_cleanup(&v);
    return true;
}

/* ---------------------------------------------------------------- building arrays */

static bool range_arg(const bson_value_t *v, const char *what, int c_num, int c_int,
                      int32_t *out, bq_error_t *err)
{
    if (!bq_num_is_number(v)) {
        bq_error_set(err, c_num, "$range requires a numeric %s, found value of type: %s", what,
                     agg__type_name(v));
        return false;
    }
    if (!agg__as_int32(v, out)) {
        bq_error_set(err, c_int, "$range requires a %s that can be represented as a 32-bit "
                                 "integer", what);
        return false;
    }
    return true;
}

static bool eval_range(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                       bq_error_t *err)
{
    bson_value_t v[3];
    int32_t start, end, step = 1;
    bool ok = agg__eval_args(e, env, v, err) &&
              range_arg(&v[0], "starting value", 34443, 34444, &start, err) &&
              range_arg(&v[1], "ending value", 34445, 34446, &end, err) &&
              (e->nargs < 3 || range_arg(&v[2], "step value", 34447, 34448, &step, err));
    if (ok && step == 0) {
        bq_error_set(err, 34449, "$range requires a non-zero step value");
        ok = false;
    }
    if (ok) {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        for (int64_t i = start; step > 0 ? i < end : i > end; i += step) {
            bson_value_t x = {.value_type = BSON_TYPE_INT32};
            x.value.v_int32 = (int32_t)i;
            agg__array_append(&arr, &idx, &x);
        }
        agg__set_array_steal(out, &arr);
    }
    agg__values_cleanup(v, e->nargs);
    return ok;
}

static bool eval_reverse_array(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
    } else if (v.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 34435, "The argument to $reverseArray must be an array, but was of "
                                 "type: %s", agg__type_name(&v));
        ok = false;
    } else {
        uint32_t n;
        bson_value_t *vals = array_values(&v, &n);
        for (uint32_t i = 0; i < n / 2; i++) {
            bson_value_t t = vals[i];
            vals[i] = vals[n - 1 - i];
            vals[n - 1 - i] = t;
        }
        build_array(out, vals, n);
        bson_free(vals);
    }
    agg_value_cleanup(&v);
    return ok;
}

static bool eval_size(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = v.value_type == BSON_TYPE_ARRAY;
    if (ok)
        agg__set_int32(out, (int32_t)agg__array_len(&v));
    else
        bq_error_set(err, 17124, "The argument to $size must be an array. Type of argument was: "
                                 "%s", agg__type_name(&v));
    agg_value_cleanup(&v);
    return ok;
}

static bool eval_slice(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                       bq_error_t *err)
{
    bson_value_t v[3];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    for (int i = 0; i < e->nargs; i++)
        if (agg__nullish(&v[i])) {
            agg__set_null(out);
            goto done;
        }
    ok = false;
    if (v[0].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 28724, "First argument to $slice must be an array, but is of type: %s",
                     agg__type_name(&v[0]));
        goto done;
    }
    int32_t a, b = 0;
    if (!bq_num_is_number(&v[1])) {
        bq_error_set(err, 28725, "Second argument to $slice must be a numeric value, but is of "
                                 "type: %s", agg__type_name(&v[1]));
        goto done;
    }
    if (!agg__as_int32(&v[1], &a)) {
        bq_error_set(err, 28726, "Second argument to $slice can't be represented as a 32-bit "
                                 "integer");
        goto done;
    }
    if (e->nargs == 3) {
        if (!bq_num_is_number(&v[2])) {
            bq_error_set(err, 28727, "Third argument to $slice must be numeric, but is of type: "
                                     "%s", agg__type_name(&v[2]));
            goto done;
        }
        if (!agg__as_int32(&v[2], &b)) {
            bq_error_set(err, 28728, "Third argument to $slice can't be represented as a 32-bit "
                                     "integer");
            goto done;
        }
        if (b <= 0) {
            bq_error_set(err, 28729, "Third argument to $slice must be positive: %d", b);
            goto done;
        }
    }
    ok = true;
    uint32_t n;
    bson_value_t *vals = array_values(&v[0], &n);
    int64_t start, len;
    if (e->nargs == 2) {
        if (a >= 0) {
            start = 0;
            len = a;
        } else {
            start = (int64_t)n + a;
            if (start < 0)
                start = 0;
            len = n;
        }
    } else {
        start = a >= 0 ? a : (int64_t)n + a;
        if (start < 0)
            start = 0;
        len = b;
    }
    if (start > n)
        start = n;
    if (start + len > n)
        len = (int64_t)n - start;
    build_array(out, vals + start, (uint32_t)len);
    bson_free(vals);
done:
    agg__values_cleanup(v, e->nargs);
    return ok;
}

/* $zip: args[0] inputs (an array expression), args[1] useLongestLength, args[2] defaults. */
static bool compile_zip(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                        bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 34460, "$zip only supports an object as an argument, found %s",
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"inputs", "useLongestLength", "defaults"};
    bson_value_t raws[3];
    if (!agg__compile_named(e, arg, scope, names, 3, 1u << 1, raws, 34460, 34464, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 34465, "$zip requires at least one input array");
        return false;
    }
    if (e->args[0]->kind != AGG__ARRAY && !(e->args[0]->kind == AGG__CONST &&
                                           e->args[0]->value.value_type == BSON_TYPE_ARRAY)) {
        bq_error_set(err, 34461, "inputs must be an array of expressions");
        return false;
    }
    e->ival = 0;
    if (raws[1].value_type != BSON_TYPE_EOD) {
        if (raws[1].value_type != BSON_TYPE_BOOL) {
            bq_error_set(err, 34463, "useLongestLength must be a bool, found %s",
                         agg__type_name(&raws[1]));
            return false;
        }
        e->ival = raws[1].value.v_bool;
    }
    if (e->args[2] && !e->ival) {
        bq_error_set(err, 34466, "cannot specify defaults unless useLongestLength is true");
        return false;
    }
    return true;
}

static bool eval_zip(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    bson_value_t ins, defs;
    if (!agg__eval_arg(e, 0, env, &ins, err))
        return false;
    if (!agg__eval_arg(e, 2, env, &defs, err)) {
        agg_value_cleanup(&ins);
        return false;
    }
    bool ok = true;
    uint32_t k, nd = 0;
    bson_value_t *arrs = array_values(&ins, &k), *dv = NULL;
    bson_value_t **cols = bson_malloc0(sizeof *cols * (k ? k : 1));
    uint32_t *lens = bson_malloc0(sizeof *lens * (k ? k : 1));
    uint32_t maxlen = 0, minlen = UINT32_MAX;
    if (defs.value_type != BSON_TYPE_EOD) {
        if (defs.value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, 34462, "defaults must be an array of expressions, found %s",
                         agg__type_name(&defs));
            ok = false;
            goto done;
        }
        dv = array_values(&defs, &nd);
        if (nd != k) {
            bq_error_set(err, 34467, "defaults and inputs must have the same length");
            ok = false;
            goto done;
        }
    }
    for (uint32_t i = 0; i < k; i++) {
        if (agg__nullish(&arrs[i])) {
            agg__set_null(out);
            goto done;
        }
        if (arrs[i].value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, 34468, "$zip found a non-array expression in input: %s",
                         agg__type_name(&arrs[i]));
            ok = false;
            goto done;
        }
        cols[i] = array_values(&arrs[i], &lens[i]);
        if (lens[i] > maxlen)
            maxlen = lens[i];
        if (lens[i] < minlen)
            minlen = lens[i];
    }
    if (k == 0)
        minlen = 0;
    uint32_t rows = e->ival ? maxlen : minlen, idx = 0;
    bson_t res;
    bson_init(&res);
    static const bson_value_t nullv = {.value_type = BSON_TYPE_NULL};
    for (uint32_t r = 0; r < rows; r++) {
        bson_t row;
        bson_init(&row);
        uint32_t ri = 0;
        for (uint32_t i = 0; i < k; i++)
            agg__array_append(&row, &ri,
                              r < lens[i] ? &cols[i][r] : dv ? &dv[i] : &nullv);
        bson_value_t rv;
        agg__set_array_steal(&rv, &row);
        agg__array_append(&res, &idx, &rv);
        agg_value_cleanup(&rv);
    }
    agg__set_array_steal(out, &res);
done:
    for (uint32_t i = 0; i < k; i++)
        bson_free(cols[i]);
    bson_free(cols);
    bson_free(lens);
    bson_free(arrs);
    bson_free(dv);
    agg_value_cleanup(&ins);
    agg_value_cleanup(&defs);
    return ok;
}

/* ---------------------------------------------------------------- $sortArray */

typedef struct sort_data {
    int dir;        /* 1/-1 for a plain sortBy */
    bq_sort_t *by;  /* document sortBy */
} sort_data_t;

static void sort_data_free(void *p)
{
    sort_data_t *d = p;
    bq_sort_destroy(d->by);
    bson_free(d);
}

static int cmp_sort_doc(const bson_value_t *a, const bson_value_t *b, const void *ctx)
{
    return bq_sort_compare_values(ctx, a, b);
}

static bool compile_sort_array(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                               bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 2942500, "$sortArray requires an object as an argument, found: %s",
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "sortBy"};
    bson_value_t raws[2];
    if (!agg__compile_named(e, arg, scope, names, 2, 1u << 1, raws, 2942500, 2942501, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 2942502, "$sortArray requires 'input' to be specified");
        return false;
    }
    if (raws[1].value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 2942503, "$sortArray requires 'sortBy' to be specified");
        return false;
    }
    sort_data_t *d = bson_malloc0(sizeof *d);
    e->data = d;
    e->data_free = sort_data_free;
    if (raws[1].value_type == BSON_TYPE_DOCUMENT) {
        bson_t spec;
        bson_init_static(&spec, raws[1].value.v_doc.data, raws[1].value.v_doc.data_len);
        d->by = bq_sort_compile(&spec, err);
        return d->by != NULL;
    }
    int64_t dir;
    if (!bq_num_is_number(&raws[1]) || !agg__as_int64_exact(&raws[1], &dir) ||
        (dir != 1 && dir != -1)) {
        bq_error_set(err, 15975, "$sort key ordering must be 1 (for ascending) or -1 (for "
                                 "descending)");
        return false;
    }
    d->dir = (int)dir;
    return true;
}

static bool eval_sort_array(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err)
{
    const sort_data_t *d = e->data;
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
    } else if (v.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 2942504, "The input argument to $sortArray must be an array, but was "
                                   "of type: %s", agg__type_name(&v));
        ok = false;
    } else {
        uint32_t n;
        bson_value_t *vals = array_values(&v, &n);
        if (d->by)
            sort_values(vals, n, cmp_sort_doc, d->by);
        else
            sort_values(vals, n, cmp_plain, &d->dir);
        build_array(out, vals, n);
        bson_free(vals);
    }
    agg_value_cleanup(&v);
    return ok;
}

/* ---------------------------------------------------------------- objects <-> arrays */

static bool eval_array_to_object(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                 bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
        goto done;
    }
    if (v.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 40386, "$arrayToObject requires an array input, found: %s",
                     agg__type_name(&v));
        ok = false;
        goto done;
    }
    uint32_t n;
    bson_value_t *vals = array_values(&v, &n);
    /* Later duplicates replace earlier ones in place (mongod keeps the first position). */
    const char **keys = bson_malloc0(sizeof *keys * (n ? n : 1));
    uint32_t *klens = bson_malloc0(sizeof *klens * (n ? n : 1));
    const bson_value_t **fvals = bson_malloc0(sizeof *fvals * (n ? n : 1));
    bson_value_t *kv = bson_malloc0(sizeof *kv * 2 * (n ? n : 1));
    uint32_t nk = 0;
    bool pairs = n > 0 && vals[0].value_type == BSON_TYPE_ARRAY;
    for (uint32_t i = 0; i < n && ok; i++) {
        const bson_value_t *k = NULL, *val = NULL;
        if (pairs) {
            if (vals[i].value_type != BSON_TYPE_ARRAY) {
                bq_error_set(err, 40398, "Unrecognised input type format for $arrayToObject: %s",
                             agg__type_name(&vals[i]));
                ok = false;
                break;
            }
            uint32_t m;
            bson_value_t *p = array_values(&vals[i], &m);
            if (m != 2) {
                bq_error_set(err, 40397, "$arrayToObject requires an array of size 2 arrays,"
                                         "found array of size: %u", m);
                bson_free(p);
                ok = false;
                break;
            }
            kv[2 * i] = p[0];
            kv[2 * i + 1] = p[1];
            bson_free(p);
            if (kv[2 * i].value_type != BSON_TYPE_UTF8) {
                bq_error_set(err, 40395, "$arrayToObject requires an array of key-value pairs, "
                                         "where the key must be of type string. Found key type: "
                                         "%s", agg__type_name(&kv[2 * i]));
                ok = false;
                break;
            }
        } else {
            if (vals[i].value_type != BSON_TYPE_DOCUMENT) {
                bq_error_set(err, 40398, "Unrecognised input type format for $arrayToObject: %s",
                             agg__type_name(&vals[i]));
                ok = false;
                break;
            }
            bson_iter_t it;
            agg__iter_init(&it, &vals[i]);
            int cnt = 0;
            kv[2 * i].value_type = BSON_TYPE_EOD;
            kv[2 * i + 1].value_type = BSON_TYPE_EOD;
            while (bson_iter_next(&it)) {
                cnt++;
                if (strcmp(bson_iter_key(&it), "k") == 0)
                    kv[2 * i] = *bson_iter_value(&it);
                else if (strcmp(bson_iter_key(&it), "v") == 0)
                    kv[2 * i + 1] = *bson_iter_value(&it);
            }
            if (cnt != 2) {
                bq_error_set(err, 40392, "$arrayToObject requires an object keys of 'k' and 'v'. "
                                         "Found incorrect number of keys:%d", cnt);
                ok = false;
                break;
            }
            if (kv[2 * i].value_type == BSON_TYPE_EOD || kv[2 * i + 1].value_type == BSON_TYPE_EOD) {
                bq_error_set(err, 40393, "$arrayToObject requires an object with keys 'k' and "
                                         "'v'. Missing either or both keys from input");
                ok = false;
                break;
            }
            if (kv[2 * i].value_type != BSON_TYPE_UTF8) {
                bq_error_set(err, 40394, "$arrayToObject requires an object with keys 'k' and "
                                         "'v', where the value of 'k' must be of type string. "
                                         "Found type: %s", agg__type_name(&kv[2 * i]));
                ok = false;
                break;
            }
        }
        k = &kv[2 * i];
        val = &kv[2 * i + 1];
        if (strlen(k->value.v_utf8.str) != k->value.v_utf8.len) {
            bq_error_set(err, 4940400, "Key field cannot contain an embedded null byte");
            ok = false;
            break;
        }
        uint32_t j = 0;
        while (j < nk && !(klens[j] == k->value.v_utf8.len &&
                           memcmp(keys[j], k->value.v_utf8.str, klens[j]) == 0))
            j++;
        if (j == nk) {
            keys[nk] = k->value.v_utf8.str;
            klens[nk] = k->value.v_utf8.len;
            nk++;
        }
        fvals[j] = val;
    }
    if (ok) {
        bson_t d;
        bson_init(&d);
        for (uint32_t j = 0; j < nk; j++)
            bson_append_value(&d, keys[j], (int)klens[j], fvals[j]);
        agg__set_doc_steal(out, &d);
    }
    bson_free(keys);
    bson_free(klens);
    bson_free(fvals);
    bson_free(kv);
    bson_free(vals);
done:
    agg_value_cleanup(&v);
    return ok;
}

static bool eval_object_to_array(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                 bq_error_t *err)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    bool ok = true;
    if (agg__nullish(&v)) {
        agg__set_null(out);
    } else if (v.value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40390, "$objectToArray requires a document input, found: %s",
                     agg__type_name(&v));
        ok = false;
    } else {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        bson_iter_t it;
        agg__iter_init(&it, &v);
        while (bson_iter_next(&it)) {
            bson_t kv;
            bson_init(&kv);
            bson_append_utf8(&kv, "k", 1, bson_iter_key(&it), (int)bson_iter_key_len(&it));
            bson_append_value(&kv, "v", 1, bson_iter_value(&it));
            bson_value_t kvv;
            agg__set_doc_steal(&kvv, &kv);
            agg__array_append(&arr, &idx, &kvv);
            agg_value_cleanup(&kvv);
        }
        agg__set_array_steal(out, &arr);
    }
    agg_value_cleanup(&v);
    return ok;
}

/* ---------------------------------------------------------------- $firstN ... $minN */

enum n_kind { N_FIRST, N_LAST, N_MAX, N_MIN };

/* args[0] input, args[1] n. */
static bool compile_n(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                      bq_error_t *err)
{
    const char *name = e->op->name;
    e->ival = strcmp(name, "$firstN") == 0 ? N_FIRST
              : strcmp(name, "$lastN") == 0 ? N_LAST
              : strcmp(name, "$maxN") == 0  ? N_MAX
                                            : N_MIN;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 5787801, "specification must be an object; found %s: %s", name,
                     agg__type_name(arg));
        return false;
    }
    static const char *const names[] = {"input", "n"};
    if (!agg__compile_named(e, arg, scope, names, 2, 0, NULL, 5787801, 5787901, err))
        return false;
    if (!e->args[0]) {
        bq_error_set(err, 5787907, "Missing value for 'input'");
        return false;
    }
    if (!e->args[1]) {
        bq_error_set(err, 5787906, "Missing value for 'n'");
        return false;
    }
    return true;
}

static bool eval_n(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    const char *name = e->op->name;
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    ok = false;
    int64_t n;
    if (!bq_num_is_number(&v[1]) || !agg__as_int64_exact(&v[1], &n)) {
        bq_error_set(err, 5787902, "Value for 'n' must be of integral type, but found %s",
                     agg__type_name(&v[1]));
        goto done;
    }
    if (n <= 0) {
        bq_error_set(err, 5787908, "'n' must be greater than 0, found %lld", (long long)n);
        goto done;
    }
    if (agg__nullish(&v[0])) {
        agg__set_null(out);
        ok = true;
        goto done;
    }
    if (v[0].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 5788200, "Input must be an array for %s, found: %s", name,
                     agg__type_name(&v[0]));
        goto done;
    }
    ok = true;
    uint32_t cnt;
    bson_value_t *vals = array_values(&v[0], &cnt);
    uint32_t take = (uint64_t)n < cnt ? (uint32_t)n : cnt;
    switch (e->ival) {
    case N_FIRST:
        build_array(out, vals, take);
        break;
    case N_LAST:
        build_array(out, vals + (cnt - take), take);
        break;
    default: {
        /* nulls and missing are skipped; maxN is descending */
        uint32_t m = 0;
        for (uint32_t i = 0; i < cnt; i++)
            if (!agg__nullish(&vals[i]))
                vals[m++] = vals[i];
        int dir = e->ival == N_MAX ? -1 : 1;
        sort_values(vals, m, cmp_plain, &dir);
        build_array(out, vals, (uint64_t)n < m ? (uint32_t)n : m);
        break;
    }
    }
    bson_free(vals);
done:
    agg__values_cleanup(v, 2);
    return ok;
}

const agg__op_t agg__ops_array[] = {
    {"$arrayElemAt", NULL, eval_array_elem_at, 2, 2, AGG__FOLD},
    {"$first", NULL, eval_first, 1, 1, AGG__FOLD},
    {"$last", NULL, eval_last, 1, 1, AGG__FOLD},
    {"$concatArrays", NULL, eval_concat_arrays, 0, -1, AGG__FOLD},
    {"$filter", compile_filter, eval_filter, 0, 0, 0},
    {"$map", compile_map, eval_map, 0, 0, 0},
    {"$reduce", compile_reduce, eval_reduce, 0, 0, 0},
    {"$in", NULL, eval_in, 2, 2, AGG__FOLD},
    {"$indexOfArray", NULL, eval_index_of_array, 2, 4, AGG__FOLD},
    {"$isArray", NULL, eval_is_array, 1, 1, AGG__FOLD},
    {"$range", NULL, eval_range, 2, 3, AGG__FOLD},
    {"$reverseArray", NULL, eval_reverse_array, 1, 1, AGG__FOLD},
    {"$size", NULL, eval_size, 1, 1, AGG__FOLD},
    {"$slice", NULL, eval_slice, 2, 3, AGG__FOLD},
    {"$zip", compile_zip, eval_zip, 0, 0, AGG__FOLD},
    {"$sortArray", compile_sort_array, eval_sort_array, 0, 0, AGG__FOLD},
    {"$arrayToObject", NULL, eval_array_to_object, 1, 1, AGG__FOLD},
    {"$objectToArray", NULL, eval_object_to_array, 1, 1, AGG__FOLD},
    {"$firstN", compile_n, eval_n, 0, 0, AGG__FOLD},
    {"$lastN", compile_n, eval_n, 0, 0, AGG__FOLD},
    {"$maxN", compile_n, eval_n, 0, 0, AGG__FOLD},
    {"$minN", compile_n, eval_n, 0, 0, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
