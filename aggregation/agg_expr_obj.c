/*
 * agg_expr_obj.c: object expression operators. $mergeObjects (later documents win, a
 * field keeps the position of its first appearance; null and missing operands are
 * skipped), $getField, $setField and $unsetField (the field name is a constant string and
 * is taken literally: dots and '$' are part of the name, which is what these operators
 * are for). $setField with value $$REMOVE removes the field.
 */
#include <string.h>

#include "agg_expr_int.h"

/* Merges the fields of the document value src into the ordered list held in dst. */
typedef struct fields {
    const char **keys;
    const bson_value_t **vals;
    uint32_t n, cap;
} fields_t;

static void fields_set(fields_t *f, const char *key, const bson_value_t *v)
{
    for (uint32_t i = 0; i < f->n; i++)
        if (strcmp(f->keys[i], key) == 0) {
            f->vals[i] = v;
            return;
        }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->keys = bson_realloc(f->keys, sizeof *f->keys * f->cap);
        f->vals = bson_realloc(f->vals, sizeof *f->vals * f->cap);
    }
    f->keys[f->n] = key;
    f->vals[f->n] = v;
    f->n++;
}

static bool eval_merge_objects(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                               bq_error_t *err)
{
    int n = e->nargs;
    bson_value_t *v = bson_malloc0(sizeof *v * (size_t)(n ? n : 1));
    bool ok = agg__eval_args(e, env, v, err);
    fields_t f = {0};
    /* iterators' values must stay put: collect them in a flat array first */
    uint32_t total = 0;
    for (int i = 0; ok && i < n; i++) {
        if (agg__nullish(&v[i]))
            continue;
        if (v[i].value_type != BSON_TYPE_DOCUMENT) {
            bq_error_set(err, 40400, "$mergeObjects requires object inputs, but input %s is of "
                                     "type %s", "value", agg__type_name(&v[i]));
            ok = false;
            break;
        }
        total += agg__array_len(&v[i]);
    }
    bson_value_t *vals = bson_malloc0(sizeof *vals * (total ? total : 1));
    const char **keys = bson_malloc0(sizeof *keys * (total ? total : 1));
    uint32_t k = 0;
    for (int i = 0; ok && i < n; i++) {
        if (agg__nullish(&v[i]))
            continue;
        bson_iter_t it;
        agg__iter_init(&it, &v[i]);
        while (bson_iter_next(&it)) {
            vals[k] = *bson_iter_value(&it);
            keys[k] = bson_iter_key(&it);
            fields_set(&f, keys[k], &vals[k]);
            k++;
        }
    }
    if (ok) {
        bson_t d;
        bson_init(&d);
        for (uint32_t i = 0; i < f.n; i++)
            bson_append_value(&d, f.keys[i], -1, f.vals[i]);
        agg__set_doc_steal(out, &d);
    }
    bson_free(f.keys);
    bson_free(f.vals);
    bson_free(vals);
    bson_free(keys);
    agg__values_cleanup(v, n);
    bson_free(v);
    return ok;
}

/* $getField / $setField / $unsetField: args[0] field (constant string), [1] input, [2]
 * value ($setField). The shorthand {$getField: "name"} reads from $$CURRENT. */
static bool compile_field_op(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    const char *name = e->op->name;
    bool get = strcmp(name, "$getField") == 0, set = strcmp(name, "$setField") == 0;
    int base = get ? 3041700 : set ? 4161100 : 4161100;
    static const char *const names[] = {"field", "input", "value"};
    int nnames = set ? 3 : 2;
    bool shorthand = arg->value_type != BSON_TYPE_DOCUMENT;
    if (!shorthand) {
        bson_iter_t it;
        agg__iter_init(&it, arg);
        shorthand = bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
    }
    if (get && shorthand) {
        agg__expr_args_alloc(e, 2);
        e->args[0] = agg_expr_compile(arg, scope, err);
        if (!e->args[0])
            return false;
        bson_value_t cur = {.value_type = BSON_TYPE_UTF8};
        cur.value.v_utf8.str = (char *)"$$CURRENT";
        cur.value.v_utf8.len = 9;
        e->args[1] = agg_expr_compile(&cur, scope, err);
    } else {
        if (arg->value_type != BSON_TYPE_DOCUMENT) {
            bq_error_set(err, base + 1, "%s only supports an object as its argument", name);
            return false;
        }
        if (!agg__compile_named(e, arg, scope, names, nnames, 0, NULL, base + 1, base + 2, err))
            return false;
        if (!e->args[0]) {
            bq_error_set(err, base + 3, "%s requires 'field' to be specified", name);
            return false;
        }
        if (!e->args[1]) {
            if (get) {
                bson_value_t cur = {.value_type = BSON_TYPE_UTF8};
                cur.value.v_utf8.str = (char *)"$$CURRENT";
                cur.value.v_utf8.len = 9;
                e->args[1] = agg_expr_compile(&cur, scope, err);
            } else {
                bq_error_set(err, base + 4, "%s requires 'input' to be specified", name);
                return false;
            }
        }
        if (set && !e->args[2]) {
            bq_error_set(err, 4161104, "$setField requires 'value' to be specified");
            return false;
        }
    }
    const agg_expr_t *f = e->args[0];
    if (f->kind != AGG__CONST) {
        bq_error_set(err, get ? 5654602 : 4161106, "%s requires 'field' to evaluate to a "
                                                   "constant, but got a non-constant argument",
                     name);
        return false;
    }
    if (f->value.value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, get ? 5654601 : 4161107, "%s requires 'field' to evaluate to type "
                                                   "String, but got %s",
                     name, agg__type_name(&f->value));
        return false;
    }
    return true;
}

static bool eval_field_op(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                          bq_error_t *err)
{
    const char *name = e->op->name;
    bool get = strcmp(name, "$getField") == 0, set = strcmp(name, "$setField") == 0;
    const char *field = e->args[0]->value.value.v_utf8.str;
    bson_value_t in;
    if (!agg__eval_arg(e, 1, env, &in, err))
        return false;
    bool ok = true;
    if (agg__nullish(&in)) {
        agg__set_null(out);
        goto done;
    }
    if (in.value_type != BSON_TYPE_DOCUMENT) {
        if (get)
            goto done; /* a non-document input has no fields: missing */
        bq_error_set(err, set ? 4161105 : 4161108, "%s requires 'input' to evaluate to type "
                                                   "Object", name);
        ok = false;
        goto done;
    }
    bson_iter_t it;
    if (get) {
        agg__iter_init(&it, &in);
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), field) == 0) {
                agg_value_copy(bson_iter_value(&it), out);
                break;
            }
        goto done;
    }
    bson_value_t val = {.value_type = BSON_TYPE_EOD};
    if (set && !agg__eval_arg(e, 2, env, &val, err)) {
        ok = false;
        goto done;
    }
    bson_t d;
    bson_init(&d);
    bool placed = false;
    agg__iter_init(&it, &in);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), field) == 0) {
            if (!placed)
                agg_value_append(&d, field, -1, &val);
            placed = true;
            continue;
        }
        bson_append_value(&d, bson_iter_key(&it), -1, bson_iter_value(&it));
    }
    if (!placed)
        agg_value_append(&d, field, -1, &val);
    agg__set_doc_steal(out, &d);
    agg_value_cleanup(&val);
done:
    agg_value_cleanup(&in);
    return ok;
}

const agg__op_t agg__ops_obj[] = {
    {"$mergeObjects", NULL, eval_merge_objects, 0, -1, AGG__FOLD},
    {"$getField", compile_field_op, eval_field_op, 0, 0, AGG__FOLD},
    {"$setField", compile_field_op, eval_field_op, 0, 0, AGG__FOLD},
    {"$unsetField", compile_field_op, eval_field_op, 0, 0, AGG__FOLD},
    {NULL, NULL, NULL, 0, 0, 0},
};
