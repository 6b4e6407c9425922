/*
 * agg_bq_hooks.c: lends the expression language to bsonq's matcher for $expr. bsonq/ is
 * the lower layer and cannot call aggregation/, so this layer installs hooks into it once
 * at startup (agg_install_bq_hooks(), called by the server and by tests).
 *
 * Two ways in:
 *  - a filter of find/update/delete: the $expr gets a scope of its own holding the
 *    command's `let` variables, evaluated once when the filter is compiled (as mongod
 *    does), and a fresh env per document in which $$NOW is the wall clock read once at
 *    compile time, so every document (and the let values) of a command see one $$NOW, as
 *    in mongod;
 *  - a pipeline's $match (bq_match_opts_t.expr_scope set): the $expr is compiled in the
 *    pipeline's scope and evaluated in the run's env, so it sees $lookup's let variables
 *    and the command's $$NOW.
 * An evaluation error fails the match with the error (bq_match_eval_env reports it).
 *
 * The same compiled form serves find's projection expressions ({total: {$add: [...]}},
 * bq_project_expr_hooks_t): compiled in a scope of its own with the command's `let`,
 * evaluated against the whole document in a fresh env, the result appended under the
 * field's name (nothing when missing, e.g. $$REMOVE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg.h"
#include "agg_expr.h"
#include "agg_hooks.h"

typedef struct match_expr {
    agg_expr_t *expr;
    agg_scope_t *scope;       /* owned; NULL when compiled in a pipeline's scope */
    int nlet;
    int *let_slots;           /* the slot of each let variable */
    bson_value_t *let_values; /* its value, evaluated at compile time (owned) */
    int64_t now_ms;           /* $$NOW of the command (own scope only) */
} match_expr_t;

static void match_expr_free(match_expr_t *m)
{
    if (m->expr)
        agg_expr_destroy(m->expr);
    for (int i = 0; i < m->nlet; i++)
        agg_value_cleanup(&m->let_values[i]);
    free(m->let_slots);
    free(m->let_values);
    agg_scope_destroy(m->scope);
    free(m);
}

/* Defines and evaluates the let variables ({name: expression}) in m's scope. */
static bool let_prepare(match_expr_t *m, const bson_t *let, bq_error_t *err)
{
    uint32_t n = bson_count_keys(let);
    m->let_slots = calloc(n ? n : 1, sizeof *m->let_slots);
    m->let_values = calloc(n ? n : 1, sizeof *m->let_values);
    if (!m->let_slots || !m->let_values)
        abort();
    bson_iter_t it;
    bson_iter_init(&it, let);
    agg_scope_t *outer = agg_scope_new(NULL); /* let values cannot see each other */
    while (bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        if (!agg_var_name_check(name, err)) {
            agg_scope_destroy(outer);
            return false;
        }
        agg_expr_t *e = agg_expr_compile(bson_iter_value(&it), outer, err);
        agg_env_t env;
        agg_env_init(&env);
        agg_env_set_now(&env, m->now_ms);
        bool ok = e && agg_expr_eval(e, &env, &m->let_values[m->nlet], err);
        agg_env_cleanup(&env);
        if (e)
            agg_expr_destroy(e);
        if (!ok) {
            agg_scope_destroy(outer);
            return false;
        }
        m->let_slots[m->nlet++] = agg_scope_define(m->scope, name);
    }
    agg_scope_destroy(outer);
    return true;
}

static void *hook_compile(const bson_value_t *spec, const bq_match_opts_t *opts,
                          bq_error_t *err)
{
    match_expr_t *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    if (opts->expr_scope) {
        if (!(m->expr = agg_expr_compile(spec, opts->expr_scope, err))) {
            match_expr_free(m);
            return NULL;
        }
        return m;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    m->scope = agg_scope_new(NULL);
    if ((opts->let && !let_prepare(m, opts->let, err)) ||
        !(m->expr = agg_expr_compile(spec, m->scope, err))) {
        match_expr_free(m);
        return NULL;
    }
    return m;
}

/* A fresh env for one evaluation of an expression compiled in its own scope: the let
 * values and the command's $$NOW. */
static void own_env_init(const match_expr_t *m, agg_env_t *env)
{
    agg_env_init(env);
    agg_env_set_now(env, m->now_ms);
    for (int i = 0; i < m->nlet; i++)
        agg_env_set_var_borrowed(env, m->let_slots[i], &m->let_values[i]);
}

static int hook_matches(const void *compiled, const bson_t *doc, void *run_env,
                        bq_error_t *err)
{
    const match_expr_t *m = compiled;
    agg_env_t own, *env = run_env;
    if (!m->scope && !env) {
        bq_error_set(err, BQ_ERR_InternalError, "$expr compiled for a pipeline evaluated "
                                                "without its environment");
        return -1;
    }
    if (m->scope) {
        env = &own;
        own_env_init(m, env);
    }
    agg_env_set_root(env, doc);
    bson_value_t out;
    int r = agg_expr_eval(m->expr, env, &out, err) ? agg_value_truthy(&out) : -1;
    agg_value_cleanup(&out);
    if (env == &own)
        agg_env_cleanup(env);
    return r;
}

static void hook_destroy(void *compiled)
{
    match_expr_free(compiled);
}

static const bq_expr_hooks_t hooks = {hook_compile, hook_matches, hook_destroy};

/* Evaluates a filter-style compiled expression against doc in a fresh env. */
static bool eval_own(const match_expr_t *m, const bson_t *doc, bson_value_t *out,
                     bq_error_t *err)
{
    agg_env_t env;
    own_env_init(m, &env);
    agg_env_set_root(&env, doc);
    bool ok = agg_expr_eval(m->expr, &env, out, err);
    agg_env_cleanup(&env);
    return ok;
}

/* A projected {$name: ...} whose top-level name is no operator is 31325 in a projection
 * (mongod: "Unknown expression"), not the expression language's 168. */
static bool unknown_top_level(const bson_value_t *spec, const bq_error_t *e,
                              const char **name)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT || e->code != BQ_ERR_InvalidPipelineOperator)
        return false;
    bson_t d;
    bson_iter_t it;
    if (!bson_init_static(&d, spec->value.v_doc.data, spec->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d) || !bson_iter_next(&it))
        return false;
    char want[BQ_ERROR_MSG_MAX];
    snprintf(want, sizeof want, "Unrecognized expression '%s'", bson_iter_key(&it));
    *name = bson_iter_key(&it);
    return strcmp(e->message, want) == 0;
}

static void *proj_compile(const bson_value_t *spec, const bson_t *let, bq_error_t *err)
{
    bq_match_opts_t opts = {.let = let};
    bq_error_t e;
    bq_error_clear(&e);
    void *m = hook_compile(spec, &opts, &e);
    const char *name;
    if (!m && unknown_top_level(spec, &e, &name))
        bq_error_set(err, 31325, "Unknown expression %s", name);
    else if (!m && err)
        *err = e;
    return m;
}

static bool proj_append(const void *compiled, const bson_t *root, const char *key,
                        bson_t *out, bq_error_t *err)
{
    bson_value_t v;
    bool ok = eval_own(compiled, root, &v, err);
    if (ok)
        agg_value_append(out, key, -1, &v);
    agg_value_cleanup(&v);
    return ok;
}

static const bq_project_expr_hooks_t project_hooks = {proj_compile, proj_append,
                                                      hook_destroy};

void agg_install_bq_hooks(void)
{
    bq_expr_hooks_install(&hooks);
    bq_project_expr_hooks_install(&project_hooks);
}
