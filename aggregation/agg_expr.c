/*
 * agg_expr.c: the core of the expression language. Owns compiling a spec into a tree
 * (dispatching {$op: ...} through the operator tables of the family files), variable
 * scopes and the runtime env, field paths with aggregation's array semantics ("$a.b" over
 * an array of documents gives the array of their b values; non-documents are skipped,
 * numeric components are field names, never indexes), object and array expressions,
 * constant folding, $literal and $let, and the value helpers the family files share.
 *
 * It must not know any operator beyond those: each family (arithmetic, strings, ...) is
 * its own file with its own table. Nothing here keeps state between evaluations except
 * in the caller's agg_env_t.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg_expr_int.h"

/* ================================================================ values */

void agg_value_cleanup(bson_value_t *v)
{
    if (!v)
        return;
    if (v->value_type != BSON_TYPE_EOD)
        bson_value_destroy(v);
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_EOD;
}

void agg_value_copy(const bson_value_t *src, bson_value_t *dst)
{
    if (src->value_type == BSON_TYPE_EOD) {
        memset(dst, 0, sizeof *dst);
        dst->value_type = BSON_TYPE_EOD;
        return;
    }
    bson_value_copy(src, dst);
}

void agg_value_append(bson_t *doc, const char *key, int key_len, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_EOD)
        bson_append_value(doc, key, key_len, v);
}

bool agg_value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
        return v->value.v_int32 != 0;
    case BSON_TYPE_INT64:
        return v->value.v_int64 != 0;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double != 0.0;
    case BSON_TYPE_DECIMAL128:
        return !bq_dec_is_zero(v->value.v_decimal128);
    default:
        return true;
    }
}

const char *agg__type_name(const bson_value_t *v)
{
    return bq_type_name(v->value_type);
}

void agg__set_string(bson_value_t *o, const char *s, size_t len)
{
    char *p = bson_malloc(len + 1);
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    o->value_type = BSON_TYPE_UTF8;
    o->value.v_utf8.str = p;
    o->value.v_utf8.len = (uint32_t)len;
}

static void set_steal(bson_value_t *o, bson_t *b, bson_type_t t)
{
    uint32_t len = 0;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    o->value_type = t;
    o->value.v_doc.data = data;
    o->value.v_doc.data_len = len;
}

void agg__set_doc_steal(bson_value_t *o, bson_t *b) { set_steal(o, b, BSON_TYPE_DOCUMENT); }
void agg__set_array_steal(bson_value_t *o, bson_t *b) { set_steal(o, b, BSON_TYPE_ARRAY); }

bool agg__iter_init(bson_iter_t *it, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_ARRAY && v->value_type != BSON_TYPE_DOCUMENT)
        return false;
    return bson_iter_init_from_data(it, v->value.v_doc.data, v->value.v_doc.data_len);
}

uint32_t agg__array_len(const bson_value_t *v)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (agg__iter_init(&it, v))
        while (bson_iter_next(&it))
            n++;
    return n;
}

void agg__array_append(bson_t *arr, uint32_t *idx, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_EOD)
        return;
    char buf[16];
    const char *key;
    size_t klen = bson_uint32_to_string(*idx, &key, buf, sizeof buf);
    bson_append_value(arr, key, (int)klen, v);
    (*idx)++;
}

bool agg__as_int64_exact(const bson_value_t *v, int64_t *out)
{
    bool exact = false;
    if (!bq_num_to_int64(v, out, &exact) || !exact)
        return false;
    return true;
}

bool agg__as_int32(const bson_value_t *v, int32_t *out)
{
    int64_t i;
    if (!agg__as_int64_exact(v, &i) || i < INT32_MIN || i > INT32_MAX)
        return false;
    *out = (int32_t)i;
    return true;
}

void agg__values_cleanup(bson_value_t *vals, int n)
{
    for (int i = 0; i < n; i++)
        agg_value_cleanup(&vals[i]);
}

/* ================================================================ scopes */

typedef struct scope_var {
    char *name;
    int slot;
} scope_var_t;

struct agg_scope {
    const agg_scope_t *parent;
    int *counter;     /* the root's next free slot */
    int own_counter;  /* root scope only */
    scope_var_t *vars;
    int nvars, cap;
};

agg_scope_t *agg_scope_new(const agg_scope_t *parent)
{
    agg_scope_t *s = bson_malloc0(sizeof *s);
    s->parent = parent;
    if (parent) {
        s->counter = parent->counter;
    } else {
        s->own_counter = AGG_VAR_FIRST_USER;
        s->counter = &s->own_counter;
    }
    return s;
}

int agg_scope_define(agg_scope_t *s, const char *name)
{
    if (s->nvars == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->vars = bson_realloc(s->vars, sizeof *s->vars * (size_t)s->cap);
    }
    int slot = (*s->counter)++;
    s->vars[s->nvars].name = bson_strdup(name);
    s->vars[s->nvars].slot = slot;
    s->nvars++;
    return slot;
}

int agg_scope_lookup(const agg_scope_t *s, const char *name)
{
    for (; s; s = s->parent) {
        for (int i = s->nvars - 1; i >= 0; i--)
            if (strcmp(s->vars[i].name, name) == 0)
                return s->vars[i].slot;
        if (!s->parent) {
            if (strcmp(name, "ROOT") == 0)
                return AGG_VAR_ROOT;
            if (strcmp(name, "CURRENT") == 0)
                return AGG_VAR_CURRENT;
            if (strcmp(name, "NOW") == 0)
                return AGG_VAR_NOW;
            if (strcmp(name, "CLUSTER_TIME") == 0)
                return AGG_VAR_CLUSTER_TIME;
        }
    }
    return -1;
}

int agg_scope_slot_count(const agg_scope_t *s) { return *s->counter; }

void agg_scope_destroy(agg_scope_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nvars; i++)
        bson_free(s->vars[i].name);
    bson_free(s->vars);
    bson_free(s);
}

static bool var_name_check(const char *name, size_t len, bool for_write, bq_error_t *err)
{
    if (for_write && len == 7 && memcmp(name, "CURRENT", 7) == 0)
        return true;
    if (len == 0) {
        bq_error_set(err, BQ_ERR_FailedToParse, "empty variable names are not allowed");
        return false;
    }
    unsigned char c = (unsigned char)name[0];
    bool ok = (c >= 'a' && c <= 'z') || (c & 0x80) || (!for_write && c >= 'A' && c <= 'Z');
    if (!ok) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "'%.*s' starts with an invalid character for a user variable name",
                     (int)len, name);
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (c & 0x80))) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "'%.*s' contains an invalid character for a variable name: '%c'",
                         (int)len, name, c);
            return false;
        }
    }
    return true;
}

bool agg_var_name_check(const char *name, bq_error_t *err)
{
    return var_name_check(name, strlen(name), true, err);
}

/* ================================================================ env */

void agg_env_init(agg_env_t *env)
{
    memset(env, 0, sizeof *env);
}

void agg_env_cleanup(agg_env_t *env)
{
    for (int i = 0; i < env->nvars; i++)
        if (env->owned[i])
            agg_value_cleanup(&env->vars[i]);
    bson_free(env->vars);
    bson_free(env->owned);
    memset(env, 0, sizeof *env);
}

static void env_reserve(agg_env_t *env, int slot)
{
    if (slot < env->nvars)
        return;
    if (slot >= env->cap) {
        int cap = env->cap ? env->cap : 8;
        while (cap <= slot)
            cap *= 2;
        env->vars = bson_realloc(env->vars, sizeof *env->vars * (size_t)cap);
        env->owned = bson_realloc(env->owned, sizeof *env->owned * (size_t)cap);
        env->cap = cap;
    }
    for (int i = env->nvars; i <= slot; i++) {
        memset(&env->vars[i], 0, sizeof env->vars[i]);
        env->vars[i].value_type = BSON_TYPE_EOD;
        env->owned[i] = false;
    }
    env->nvars = slot + 1;
}

static void env_release(agg_env_t *env, int slot)
{
    if (env->owned[slot])
        agg_value_cleanup(&env->vars[slot]);
    env->owned[slot] = false;
    env->vars[slot].value_type = BSON_TYPE_EOD;
}

void agg_env_set_var_borrowed(agg_env_t *env, int slot, const bson_value_t *v)
{
    env_reserve(env, slot);
    env_release(env, slot);
    env->vars[slot] = *v;
}

void agg_env_set_var(agg_env_t *env, int slot, const bson_value_t *v)
{
    env_reserve(env, slot);
    env_release(env, slot);
    agg_value_copy(v, &env->vars[slot]);
    env->owned[slot] = env->vars[slot].value_type != BSON_TYPE_EOD;
}

/* Takes ownership of *v (which is reset to EOD). */
static void env_take_var(agg_env_t *env, int slot, bson_value_t *v)
{
    env_reserve(env, slot);
    env_release(env, slot);
    env->vars[slot] = *v;
    env->owned[slot] = v->value_type != BSON_TYPE_EOD;
    v->value_type = BSON_TYPE_EOD;
}

const bson_value_t *agg_env_get_var(const agg_env_t *env, int slot)
{
    static const bson_value_t missing = {.value_type = BSON_TYPE_EOD};
    if (slot < 0 || slot >= env->nvars)
        return &missing;
    return &env->vars[slot];
}

void agg_env_set_root(agg_env_t *env, const bson_t *doc)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_DOCUMENT;
    v.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    v.value.v_doc.data_len = doc->len;
    agg_env_set_var_borrowed(env, AGG_VAR_ROOT, &v);
    agg_env_set_var_borrowed(env, AGG_VAR_CURRENT, &v);
}

void agg_env_set_now(agg_env_t *env, int64_t ms)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    agg__set_date(&v, ms);
    agg_env_set_var(env, AGG_VAR_NOW, &v);
}

void agg_env_set_cluster_time(agg_env_t *env, uint32_t t, uint32_t i)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_TIMESTAMP;
    v.value.v_timestamp.timestamp = t;
    v.value.v_timestamp.increment = i;
    agg_env_set_var(env, AGG_VAR_CLUSTER_TIME, &v);
}

/* ================================================================ nodes */

agg_expr_t *agg__expr_new(enum agg__kind kind)
{
    agg_expr_t *e = bson_malloc0(sizeof *e);
    e->kind = kind;
    e->value.value_type = BSON_TYPE_EOD;
    return e;
}

void agg__expr_args_alloc(agg_expr_t *e, int n)
{
    e->args = n ? bson_malloc0(sizeof *e->args * (size_t)n) : NULL;
    e->nargs = n;
}

void agg_expr_destroy(agg_expr_t *e)
{
    if (!e)
        return;
    agg_value_cleanup(&e->value);
    for (int i = 0; i < e->nargs; i++) {
        agg_expr_destroy(e->args[i]);
        if (e->names)
            bson_free(e->names[i]);
    }
    bson_free(e->args);
    bson_free(e->names);
    for (int i = 0; i < e->nparts; i++)
        bson_free(e->parts[i]);
    bson_free(e->parts);
    bson_free(e->path);
    if (e->data && e->data_free)
        e->data_free(e->data);
    bson_free(e);
}

/* Turns e into a constant holding *v (taken). */
static void make_const(agg_expr_t *e, bson_value_t *v)
{
    for (int i = 0; i < e->nargs; i++) {
        agg_expr_destroy(e->args[i]);
        if (e->names)
            bson_free(e->names[i]);
    }
    bson_free(e->args);
    bson_free(e->names);
    e->args = NULL;
    e->names = NULL;
    e->nargs = 0;
    if (e->data && e->data_free)
        e->data_free(e->data);
    e->data = NULL;
    e->kind = AGG__CONST;
    e->op = NULL;
    e->value = *v;
    v->value_type = BSON_TYPE_EOD;
}

bool agg_expr_is_constant(const agg_expr_t *e) { return e->kind == AGG__CONST; }

const bson_value_t *agg_expr_constant(const agg_expr_t *e)
{
    return e->kind == AGG__CONST ? &e->value : NULL;
}

const char *agg_expr_field_path(const agg_expr_t *e)
{
    return e->kind == AGG__VAR && e->slot == AGG_VAR_CURRENT && e->path ? e->path : NULL;
}

bool agg_expr_is_object(const agg_expr_t *e) { return e->kind == AGG__OBJECT; }

/* ================================================================ field paths */

static bool field_name_check(const char *s, size_t len, bq_error_t *err)
{
    if (len == 0) {
        bq_error_set(err, 15998, "FieldPath field names may not be empty strings.");
        return false;
    }
    if (s[0] == '$' && !((len == 3 && memcmp(s, "$id", 3) == 0) ||
                         (len == 4 && memcmp(s, "$ref", 4) == 0) ||
                         (len == 3 && memcmp(s, "$db", 3) == 0))) {
        bq_error_set(err, 16410,
                     "FieldPath field names may not start with '$'. Consider using $getField "
                     "or $setField.");
        return false;
    }
    if (memchr(s, '\0', len)) {
        bq_error_set(err, 16411, "FieldPath field names may not contain '\\0'.");
        return false;
    }
    return true;
}

/* Splits "a.b.c" into e->parts, checking each component. */
static bool path_split(agg_expr_t *e, const char *p, size_t len, bq_error_t *err)
{
    if (len && p[len - 1] == '.') {
        bq_error_set(err, 40353, "FieldPath must not end with a '.'.");
        return false;
    }
    int n = 1;
    for (size_t i = 0; i < len; i++)
        n += p[i] == '.';
    e->parts = bson_malloc0(sizeof *e->parts * (size_t)n);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '.') {
            if (!field_name_check(p + start, i - start, err))
                return false;
            e->parts[e->nparts++] = bson_strndup(p + start, i - start);
            start = i + 1;
        }
    }
    e->path = bson_strndup(p, len);
    return true;
}

bool agg__field_path_parse(const char *text, size_t len, agg_scope_t *scope,
                           agg_expr_t **out, bq_error_t *err)
{
    *out = NULL;
    /* text starts with '$' */
    agg_expr_t *e = agg__expr_new(AGG__VAR);
    if (len >= 2 && text[1] == '$') {
        const char *name = text + 2;
        size_t rest = len - 2;
        const char *dot = memchr(name, '.', rest);
        size_t nlen = dot ? (size_t)(dot - name) : rest;
        if (!var_name_check(name, nlen, false, err))
            goto fail;
        char *vname = bson_strndup(name, nlen);
        if (strcmp(vname, "REMOVE") == 0) {
            e->kind = AGG__REMOVE;
        } else {
            e->slot = agg_scope_lookup(scope, vname);
            if (e->slot < 0) {
                bq_error_set(err, 17276, "Use of undefined variable: %s", vname);
                bson_free(vname);
                goto fail;
            }
        }
        bson_free(vname);
        if (dot && !path_split(e, dot + 1, rest - nlen - 1, err))
            goto fail;
    } else {
        if (len == 1) {
            bq_error_set(err, 16872, "'$' by itself is not a valid FieldPath");
            goto fail;
        }
        e->slot = agg_scope_lookup(scope, "CURRENT");
        if (!path_split(e, text + 1, len - 1, err))
            goto fail;
    }
    *out = e;
    return true;
fail:
    agg_expr_destroy(e);
    return false;
}

static void path_doc(const uint8_t *data, uint32_t len, char *const *parts, int n,
                     bson_value_t *out);

static void path_array(const bson_value_t *arr, char *const *parts, int n, bson_value_t *out)
{
    bson_t res;
    bson_init(&res);
    uint32_t idx = 0;
    bson_iter_t it;
    if (agg__iter_init(&it, arr)) {
        while (bson_iter_next(&it)) {
            if (bson_iter_type(&it) != BSON_TYPE_DOCUMENT)
                continue;
            const bson_value_t *el = bson_iter_value(&it);
            bson_value_t tmp;
            path_doc(el->value.v_doc.data, el->value.v_doc.data_len, parts, n, &tmp);
            agg__array_append(&res, &idx, &tmp);
            agg_value_cleanup(&tmp);
        }
    }
    agg__set_array_steal(out, &res);
}

static void path_doc(const uint8_t *data, uint32_t len, char *const *parts, int n,
                     bson_value_t *out)
{
    bson_iter_t it;
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
    if (!bson_iter_init_from_data(&it, data, len) || !bson_iter_find(&it, parts[0]))
        return;
    const bson_value_t *v = bson_iter_value(&it);
    if (n == 1) {
        agg_value_copy(v, out);
        return;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT)
        path_doc(v->value.v_doc.data, v->value.v_doc.data_len, parts + 1, n - 1, out);
    else if (v->value_type == BSON_TYPE_ARRAY) {
        bson_value_t arr = *v;
        path_array(&arr, parts + 1, n - 1, out);
    }
}

void agg__path_eval(const bson_value_t *base, char *const *parts, int nparts,
                    bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
    if (nparts == 0) {
        agg_value_copy(base, out);
    } else if (base->value_type == BSON_TYPE_DOCUMENT) {
        path_doc(base->value.v_doc.data, base->value.v_doc.data_len, parts, nparts, out);
    } else if (base->value_type == BSON_TYPE_ARRAY) {
        path_array(base, parts, nparts, out);
    }
}

/* ================================================================ compiling */

static const agg__op_t *const families[] = {
    agg__ops_core, agg__ops_arith, agg__ops_cmp, agg__ops_bool, agg__ops_cond,
    agg__ops_str,  agg__ops_array, agg__ops_type, agg__ops_set,  agg__ops_obj,
    agg__ops_misc, agg__ops_date, agg__ops_acc,
};

static const agg__op_t *op_find(const char *name)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const agg__op_t *op = families[f]; op->name; op++)
            if (strcmp(op->name, name) == 0)
                return op;
    return NULL;
}

static agg_expr_t *compile_value(const bson_value_t *spec, agg_scope_t *scope,
                                 bq_error_t *err);

static bool all_const(const agg_expr_t *e)
{
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i] && e->args[i]->kind != AGG__CONST)
            return false;
    return true;
}

/* Folds e into a constant when it is foldable and its arguments are. A failing fold is a
 * compile error, as mongod's optimize() throws while the pipeline is parsed. */
static bool maybe_fold(agg_expr_t *e, bq_error_t *err)
{
    bool foldable = (e->kind == AGG__OP && (e->op->flags & AGG__FOLD)) ||
                    e->kind == AGG__OBJECT || e->kind == AGG__ARRAY;
    if (!foldable || !all_const(e))
        return true;
    agg_env_t env;
    agg_env_init(&env);
    bson_value_t v;
    bool ok = agg_expr_eval(e, &env, &v, err);
    agg_env_cleanup(&env);
    if (!ok)
        return false;
    make_const(e, &v);
    return true;
}

static agg_expr_t *compile_object(const bson_value_t *spec, agg_scope_t *scope,
                                  bq_error_t *err)
{
    bson_iter_t it;
    agg__iter_init(&it, spec);
    int n = 0;
    while (bson_iter_next(&it))
        n++;
    agg__iter_init(&it, spec);
    if (n > 0 && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$') {
        const char *name = bson_iter_key(&it);
        if (n != 1) {
            bq_error_set(err, 15983,
                         "an expression specification must contain exactly one field, the "
                         "name of the expression. Found %d fields",
                         n);
            return NULL;
        }
        const agg__op_t *op = op_find(name);
        if (!op) {
            bq_error_set(err, BQ_ERR_InvalidPipelineOperator, "Unrecognized expression '%s'",
                         name);
            return NULL;
        }
        agg_expr_t *e = agg__expr_new(AGG__OP);
        e->op = op;
        bson_value_t arg = *bson_iter_value(&it);
        bool ok = op->compile ? op->compile(e, &arg, scope, err)
                              : agg__compile_operands(e, &arg, scope, op->min_args,
                                                      op->max_args, err);
        if (!ok || !maybe_fold(e, err)) {
            agg_expr_destroy(e);
            return NULL;
        }
        return e;
    }
    agg__iter_init(&it, spec);
    agg_expr_t *e = agg__expr_new(AGG__OBJECT);
    agg__expr_args_alloc(e, n);
    e->names = bson_malloc0(sizeof *e->names * (size_t)(n ? n : 1));
    int i = 0;
    while (bson_iter_next(&it)) {
        uint32_t klen = bson_iter_key_len(&it);
        const char *key = bson_iter_key(&it);
        if (!field_name_check(key, klen, err))
            goto fail;
        if (memchr(key, '.', klen)) {
            bq_error_set(err, 16412, "FieldPath field names may not contain '.'.");
            goto fail;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(e->names[j], key) == 0) {
                bq_error_set(err, 16406, "duplicate field name specified in object literal");
                goto fail;
            }
        e->names[i] = bson_strdup(key);
        bson_value_t sub = *bson_iter_value(&it);
        e->args[i] = compile_value(&sub, scope, err);
        if (!e->args[i])
            goto fail;
        i++;
    }
    if (!maybe_fold(e, err))
        goto fail;
    return e;
fail:
    agg_expr_destroy(e);
    return NULL;
}

static agg_expr_t *compile_value(const bson_value_t *spec, agg_scope_t *scope,
                                 bq_error_t *err)
{
    agg_expr_t *e = NULL;
    switch (spec->value_type) {
    case BSON_TYPE_UTF8:
        if (spec->value.v_utf8.len > 0 && spec->value.v_utf8.str[0] == '$') {
            if (!agg__field_path_parse(spec->value.v_utf8.str, spec->value.v_utf8.len, scope,
                                       &e, err))
                return NULL;
            return e;
        }
        break;
    case BSON_TYPE_DOCUMENT:
        return compile_object(spec, scope, err);
    case BSON_TYPE_ARRAY: {
        bson_iter_t it;
        agg__iter_init(&it, spec);
        e = agg__expr_new(AGG__ARRAY);
        agg__expr_args_alloc(e, (int)agg__array_len(spec));
        int i = 0;
        while (bson_iter_next(&it)) {
            bson_value_t sub = *bson_iter_value(&it);
            e->args[i] = compile_value(&sub, scope, err);
            if (!e->args[i++]) {
                agg_expr_destroy(e);
                return NULL;
            }
        }
        if (!maybe_fold(e, err)) {
            agg_expr_destroy(e);
            return NULL;
        }
        return e;
    }
    default:
        break;
    }
    e = agg__expr_new(AGG__CONST);
    agg_value_copy(spec, &e->value);
    return e;
}

agg_expr_t *agg_expr_compile(const bson_value_t *spec, agg_scope_t *scope, bq_error_t *err)
{
    return compile_value(spec, scope, err);
}

agg_expr_t *agg_expr_compile_doc(const bson_t *spec, agg_scope_t *scope, bq_error_t *err)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_DOCUMENT;
    v.value.v_doc.data = (uint8_t *)bson_get_data(spec);
    v.value.v_doc.data_len = spec->len;
    return compile_value(&v, scope, err);
}

bool agg__compile_operands(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           int min, int max, bq_error_t *err)
{
    int n = arg->value_type == BSON_TYPE_ARRAY ? (int)agg__array_len(arg) : 1;
    if (n < min || (max >= 0 && n > max)) {
        if (min == max)
            bq_error_set(err, 16020,
                         "Expression %s takes exactly %d arguments. %d were passed in.",
                         e->op->name, min, n);
        else if (max < 0)
            bq_error_set(err, 16020,
                         "Expression %s takes at least %d arguments. %d were passed in.",
                         e->op->name, min, n);
        else
            bq_error_set(err, 28667,
                         "Expression %s takes at least %d arguments, and at most %d, but %d "
                         "were passed in.",
                         e->op->name, min, max, n);
        return false;
    }
    agg__expr_args_alloc(e, n);
    if (arg->value_type != BSON_TYPE_ARRAY) {
        e->args[0] = compile_value(arg, scope, err);
        return e->args[0] != NULL;
    }
    bson_iter_t it;
    agg__iter_init(&it, arg);
    int i = 0;
    while (bson_iter_next(&it)) {
        bson_value_t sub = *bson_iter_value(&it);
        e->args[i] = compile_value(&sub, scope, err);
        if (!e->args[i++])
            return false;
    }
    return true;
}

bool agg__compile_named(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                        const char *const *names, int n, unsigned raw, bson_value_t *raws,
                        int code_not_obj, int code_unknown, bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, code_not_obj, "%s only supports an object as its argument",
                     e->op->name);
        return false;
    }
    agg__expr_args_alloc(e, n);
    if (raws)
        for (int i = 0; i < n; i++)
            raws[i].value_type = BSON_TYPE_EOD;
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int i = 0;
        while (i < n && strcmp(names[i], key) != 0)
            i++;
        if (i == n) {
            bq_error_set(err, code_unknown, "Unrecognized parameter to %s: %s", e->op->name,
                         key);
            return false;
        }
        bson_value_t sub = *bson_iter_value(&it);
        if (raw & (1u << i)) {
            raws[i] = sub;  /* borrowed from the spec */
            continue;
        }
        agg_expr_destroy(e->args[i]);
        e->args[i] = compile_value(&sub, scope, err);
        if (!e->args[i])
            return false;
    }
    return true;
}

/* ================================================================ evaluating */

bool agg_expr_eval(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
    switch (e->kind) {
    case AGG__CONST:
        agg_value_copy(&e->value, out);
        return true;
    case AGG__REMOVE:
        return true;
    case AGG__VAR: {
        if (e->slot == AGG_VAR_NOW &&
            agg_env_get_var(env, AGG_VAR_NOW)->value_type == BSON_TYPE_EOD) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            agg_env_set_now(env, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        }
        agg__path_eval(agg_env_get_var(env, e->slot), e->parts, e->nparts, out);
        return true;
    }
    case AGG__OBJECT: {
        bson_t doc;
        bson_init(&doc);
        for (int i = 0; i < e->nargs; i++) {
            bson_value_t v;
            if (!agg_expr_eval(e->args[i], env, &v, err)) {
                bson_destroy(&doc);
                return false;
            }
            agg_value_append(&doc, e->names[i], -1, &v);
            agg_value_cleanup(&v);
        }
        agg__set_doc_steal(out, &doc);
        return true;
    }
    case AGG__ARRAY: {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        for (int i = 0; i < e->nargs; i++) {
            bson_value_t v;
            if (!agg_expr_eval(e->args[i], env, &v, err)) {
                bson_destroy(&arr);
                return false;
            }
            if (v.value_type == BSON_TYPE_EOD)
                agg__set_null(&v);  /* a missing element is null in an array literal */
            agg__array_append(&arr, &idx, &v);
            agg_value_cleanup(&v);
        }
        agg__set_array_steal(out, &arr);
        return true;
    }
    case AGG__OP:
        if (!e->op->eval(e, env, out, err)) {
            agg_value_cleanup(out);
            return false;
        }
        return true;
    }
    return true;
}

bool agg__eval_arg(const agg_expr_t *e, int i, agg_env_t *env, bson_value_t *out,
                   bq_error_t *err)
{
    if (i >= e->nargs || !e->args[i]) {
        memset(out, 0, sizeof *out);
        out->value_type = BSON_TYPE_EOD;
        return true;
    }
    return agg_expr_eval(e->args[i], env, out, err);
}

bool agg__eval_args(const agg_expr_t *e, agg_env_t *env, bson_value_t *vals, bq_error_t *err)
{
    for (int i = 0; i < e->nargs; i++) {
        vals[i].value_type = BSON_TYPE_EOD;
    }
    for (int i = 0; i < e->nargs; i++)
        if (!agg__eval_arg(e, i, env, &vals[i], err))
            return false;
    return true;
}

bool agg_expr_eval_doc(const agg_expr_t *e, agg_env_t *env, bson_t *out, int32_t code,
                       bq_error_t *err)
{
    bson_init(out);
    bson_value_t v;
    if (!agg_expr_eval(e, env, &v, err))
        return false;
    if (v.value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, code, "expression must evaluate to an object, but resulting value "
                                "was of type %s",
                     agg__type_name(&v));
        agg_value_cleanup(&v);
        return false;
    }
    bson_t tmp;
    if (bson_init_static(&tmp, v.value.v_doc.data, v.value.v_doc.data_len))
        bson_concat(out, &tmp);
    agg_value_cleanup(&v);
    return true;
}

/* ================================================================ $literal, $let */

static bool compile_literal(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                            bq_error_t *err)
{
    (void)scope;
    (void)err;
    /* {$literal: [x]} is x in mongod only when... no: $literal takes its argument as is. */
    bson_value_t v;
    agg_value_copy(arg, &v);
    make_const(e, &v);
    return true;
}

typedef struct let_data {
    int n;
    int slots[];
} let_data_t;

/* args[0] = in, args[1..n] = the vars' expressions; data = their slots. */
static bool compile_let(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                        bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 16874, "$let only supports an object as its argument");
        return false;
    }
    bson_value_t vars = {.value_type = BSON_TYPE_EOD}, in = {.value_type = BSON_TYPE_EOD};
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "vars") == 0)
            vars = *bson_iter_value(&it);
        else if (strcmp(bson_iter_key(&it), "in") == 0)
            in = *bson_iter_value(&it);
        else {
            bq_error_set(err, 16875, "Unrecognized parameter to $let: %s", bson_iter_key(&it));
            return false;
        }
    }
    if (vars.value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 16876, "Missing 'vars' parameter to $let");
        return false;
    }
    if (in.value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 16877, "Missing 'in' parameter to $let");
        return false;
    }
    if (vars.value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 10065, "invalid parameter: expected an object (vars)");
        return false;
    }
    int n = (int)agg__array_len(&vars);
    agg__expr_args_alloc(e, n + 1);
    let_data_t *d = bson_malloc0(sizeof *d + sizeof(int) * (size_t)(n ? n : 1));
    d->n = n;
    e->data = d;
    e->data_free = bson_free;
    agg_scope_t *inner = agg_scope_new(scope);
    agg__iter_init(&it, &vars);
    int i = 0;
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        bson_value_t sub = *bson_iter_value(&it);
        ok = agg_var_name_check(name, err) &&
             (e->args[i + 1] = compile_value(&sub, scope, err)) != NULL;
        if (ok)
            d->slots[i] = agg_scope_define(inner, name);
        i++;
    }
    if (ok)
        ok = (e->args[0] = compile_value(&in, inner, err)) != NULL;
    agg_scope_destroy(inner);
    return ok;
}

static bool eval_let(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err)
{
    const let_data_t *d = e->data;
    bson_value_t *vals = bson_malloc0(sizeof *vals * (size_t)(d->n ? d->n : 1));
    bool ok = true;
    for (int i = 0; i < d->n && ok; i++)
        ok = agg_expr_eval(e->args[i + 1], env, &vals[i], err);
    if (ok) {
        for (int i = 0; i < d->n; i++)
            env_take_var(env, d->slots[i], &vals[i]);
        ok = agg_expr_eval(e->args[0], env, out, err);
    }
    agg__values_cleanup(vals, d->n);
    bson_free(vals);
    return ok;
}

void agg__env_take(agg_env_t *env, int slot, bson_value_t *v) { env_take_var(env, slot, v); }

const agg__op_t agg__ops_core[] = {
    {"$literal", compile_literal, NULL, 1, 1, 0},
    {"$let", compile_let, eval_let, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
