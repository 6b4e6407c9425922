/*
 * agg_expr_set.c: set expression operators over arrays treated as sets. $setEquals,
 * $setIntersection, $setUnion, $setDifference, $setIsSubset, $anyElementTrue,
 * $allElementsTrue. Equality is MongoDB's value equality (1 == 1.0), duplicates are
 * ignored, nested arrays are elements (not descended into). Result sets keep the order in
 * which their elements first appear in the operands (mongod leaves the order unspecified).
 * Membership is a linear search: fine for the array sizes documents hold.
 */
#include "agg_expr_int.h"

/* Appends v to the set being built unless an equal value is already there. */
typedef struct vset {
    bson_value_t *v;  /* borrowed */
    uint32_t n, cap;
} vset_t;

static bool vset_has(const vset_t *s, const bson_value_t *v)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (agg__value_compare(&s->v[i], v) == 0)
            return true;
    return false;
}

static void vset_add(vset_t *s, const bson_value_t *v)
{
    if (vset_has(s, v))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = bson_realloc(s->v, sizeof *s->v * s->cap);
    }
    s->v[s->n++] = *v;
}

static void vset_add_array(vset_t *s, const bson_value_t *arr)
{
    bson_iter_t it;
    if (agg__iter_init(&it, arr))
        while (bson_iter_next(&it))
            vset_add(s, bson_iter_value(&it));
}

static void vset_build(const vset_t *s, bson_value_t *out)
{
    bson_t a;
    bson_init(&a);
    uint32_t idx = 0;
    for (uint32_t i = 0; i < s->n; i++)
        agg__array_append(&a, &idx, &s->v[i]);
    agg__set_array_steal(out, &a);
}

static bool set_equals_or_subset(const vset_t *a, const vset_t *b)
{
    for (uint32_t i = 0; i < a->n; i++)
        if (!vset_has(b, &a->v[i]))
            return false;
    return true;
}

static bool compile_set_equals(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                               bq_error_t *err)
{
    int n = arg->value_type == BSON_TYPE_ARRAY ? (int)agg__array_len(arg) : 1;
    if (n < 2) {
        bq_error_set(err, 17045, "$setEquals needs at least two arguments had: %d", n);
        return false;
    }
    return agg__compile_operands(e, arg, scope, 2, -1, err);
}

static bool eval_set_equals(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                            bq_error_t *err)
{
    bson_value_t *v = bson_malloc0(sizeof *v * (size_t)e->nargs);
    bool ok = agg__eval_args(e, env, v, err);
    vset_t first = {0};
    bool eq = true;
    for (int i = 0; ok && i < e->nargs; i++) {
        if (v[i].value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, 17044, "All operands of $setEquals must be arrays. One argument "
                                     "is of type: %s", agg__type_name(&v[i]));
            ok = false;
            break;
        }
        vset_t s = {0};
        vset_add_array(&s, &v[i]);
        if (i == 0)
            first = s;
        else {
            eq = eq && set_equals_or_subset(&first, &s) && set_equals_or_subset(&s, &first);
            bson_free(s.v);
        }
    }
    if (ok)
        agg__set_bool(out, eq);
    bson_free(first.v);
    agg__values_cleanup(v, e->nargs);
    bson_free(v);
    return ok;
}

static bool eval_union_inter(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err, bool inter)
{
    bson_value_t *v = bson_malloc0(sizeof *v * (size_t)(e->nargs ? e->nargs : 1));
    bool ok = agg__eval_args(e, env, v, err), null = false;
    for (int i = 0; ok && i < e->nargs; i++) {
        if (agg__nullish(&v[i]))
            null = true;
        else if (v[i].value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, inter ? 17047 : 17043, "All operands of %s must be arrays. One "
                                                     "argument is of type: %s",
                         e->op->name, agg__type_name(&v[i]));
            ok = false;
        }
    }
    if (ok && null) {
        agg__set_null(out);
    } else if (ok) {
        vset_t s = {0};
        if (!inter) {
            for (int i = 0; i < e->nargs; i++)
                vset_add_array(&s, &v[i]);
        } else if (e->nargs > 0) {
            vset_add_array(&s, &v[0]);
            for (int i = 1; i < e->nargs; i++) {
                vset_t o = {0}, keep = {0};
                vset_add_array(&o, &v[i]);
                for (uint32_t j = 0; j < s.n; j++)
                    if (vset_has(&o, &s.v[j]))
                        vset_add(&keep, &s.v[j]);
                bson_free(o.v);
                bson_free(s.v);
                s = keep;
            }
        }
        vset_build(&s, out);
        bson_free(s.v);
    }
    agg__values_cleanup(v, e->nargs);
    bson_free(v);
    return ok;
}

static bool eval_set_union(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                           bq_error_t *err)
{
    return eval_union_inter(e, env, out, err, false);
}

static bool eval_set_intersection(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                  bq_error_t *err)
{
    return eval_union_inter(e, env, out, err, true);
}

static bool eval_set_difference(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                                bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (!ok)
        goto done;
    if (agg__nullish(&v[0]) || agg__nullish(&v[1])) {
        agg__set_null(out);
        goto done;
    }
    for (int i = 0; i < 2; i++)
        if (v[i].value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, i == 0 ? 17048 : 17049, "both operands of $setDifference must be "
                                                      "arrays. %s argument is of type: %s",
                         i == 0 ? "First" : "Second", agg__type_name(&v[i]));
            ok = false;
            goto done;
        }
    vset_t a = {0}, b = {0}, r = {0};
    vset_add_array(&a, &v[0]);
    vset_add_array(&b, &v[1]);
    for (uint32_t j = 0; j < a.n; j++)
        if (!vset_has(&b, &a.v[j]))
            vset_add(&r, &a.v[j]);
    vset_build(&r, out);
    bson_free(a.v);
    bson_free(b.v);
    bson_free(r.v);
done:
    agg__values_cleanup(v, 2);
    return ok;
}

static bool eval_set_is_subset(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    bson_value_t v[2];
    bool ok = agg__eval_args(e, env, v, err);
    if (ok && v[0].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 17046, "both operands of $setIsSubset must be arrays. First argument "
                                 "is of type: %s", agg__type_name(&v[0]));
        ok = false;
    } else if (ok && v[1].value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, 17042, "both operands of $setIsSubset must be arrays. Second argument "
                                 "is of type: %s", agg__type_name(&v[1]));
        ok = false;
    }
    if (ok) {
        vset_t a = {0}, b = {0};
        vset_add_array(&a, &v[0]);
        vset_add_array(&b, &v[1]);
        agg__set_bool(out, set_equals_or_subset(&a, &b));
        bson_free(a.v);
        bson_free(b.v);
    }
    agg__values_cleanup(v, 2);
    return ok;
}

static bool eval_elements_true(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err, bool any)
{
    bson_value_t v;
    if (!agg__eval_arg(e, 0, env, &v, err))
        return false;
    if (v.value_type != BSON_TYPE_ARRAY) {
        bq_error_set(err, any ? 17041 : 17040, "%s's argument must be an array, but is %s",
                     e->op->name, agg__type_name(&v));
        agg_value_cleanup(&v);
        return false;
    }
    bool res = !any;
    bson_iter_t it;
    agg__iter_init(&it, &v);
    while (bson_iter_next(&it)) {
        bool t = agg_value_truthy(bson_iter_value(&it));
        if (any && t) {
            res = true;
            break;
        }
        if (!any && !t) {
            res = false;
            break;
        }
    }
    agg__set_bool(out, res);
    agg_value_cleanup(&v);
    return true;
}

static bool eval_any_true(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    return eval_elements_true(e, env, out, err, true);
}

static bool eval_all_true(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    return eval_elements_true(e, env, out, err, false);
}

const agg__op_t agg__ops_set[] = {
    {"$setEquals", compile_set_equals, eval_set_equals, 2, -1, AGG__FOLD},
    {"$setIntersection", NULL, eval_set_intersection, 0, -1, AGG__FOLD},
    {"$setUnion", NULL, eval_set_union, 0, -1, AGG__FOLD},
    {"$setDifference", NULL, eval_set_difference, 2, 2, AGG__FOLD},
    {"$setIsSubset", NULL, eval_set_is_subset, 2, 2, AGG__FOLD},
    {"$anyElementTrue", NULL, eval_any_true, 1, 1, AGG__FOLD},
    {"$allElementsTrue", NULL, eval_all_true, 1, 1, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
