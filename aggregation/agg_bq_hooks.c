/*
 * agg_bq_hooks.c: lends the expression language to bsonq's matcher for $expr. bsonq/ is
 * the lower layer and cannot call aggregation/, so this layer installs hooks into it once
 * at startup (agg_install_bq_hooks(), called by the server and by tests).
 *
 * A $expr in a query filter has no `let` variables and sees $$NOW as the wall clock when
 * the document is evaluated; an expression that fails to evaluate (a $divide by zero, say)
 * makes that document not match, where mongod fails the whole query: bq_match_eval has no
 * error path yet.
 */
#include <stdlib.h>

#include "agg.h"
#include "agg_expr.h"
#include "agg_hooks.h"

typedef struct match_expr {
    agg_expr_t *expr;
    agg_scope_t *scope;
} match_expr_t;

static void *hook_compile(const bson_value_t *spec, bq_error_t *err)
{
    match_expr_t *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->scope = agg_scope_new(NULL);
    m->expr = agg_expr_compile(spec, m->scope, err);
    if (!m->expr) {
        agg_scope_destroy(m->scope);
        free(m);
        return NULL;
    }
    return m;
}

static bool hook_matches(const void *compiled, const bson_t *doc)
{
    const match_expr_t *m = compiled;
    agg_env_t env;
    bson_value_t out;
    bq_error_t err;
    agg_env_init(&env);
    agg_env_set_root(&env, doc);
    bool ok = agg_expr_eval(m->expr, &env, &out, &err) && agg_value_truthy(&out);
    agg_value_cleanup(&out);
    agg_env_cleanup(&env);
    return ok;
}

static void hook_destroy(void *compiled)
{
    match_expr_t *m = compiled;
    agg_expr_destroy(m->expr);
    agg_scope_destroy(m->scope);
    free(m);
}

static const bq_expr_hooks_t hooks = {hook_compile, hook_matches, hook_destroy};

void agg_install_bq_hooks(void)
{
    bq_expr_hooks_install(&hooks);
}
