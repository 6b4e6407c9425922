/*
 * bq_match.c: query filters, compiled once and evaluated against many documents.
 *
 * Owns the parse of a filter document into a tree of nodes (AND/OR/NOR/NOT over leaves),
 * the lookup of field operators in the per-family tables, and evaluation. A leaf is one
 * operator at one path: evaluation walks the path (bq_path.c) and the leaf matches when
 * its operator accepts any value reached, or, for negated leaves ($ne, $nin,
 * $exists: false), when it accepts none. Inside $elemMatch a leaf may have no path: it
 * then tests the array element itself.
 *
 * The operator families live in bq_match_cmp.c ($eq $ne $gt $gte $lt $lte $in $nin),
 * bq_match_logic.c ($and $or $nor $not), bq_match_elem.c ($exists $type),
 * bq_match_array.c ($all $elemMatch $size) and bq_match_eval.c ($regex $mod $bits*).
 * $expr runs through hooks the aggregation layer installs (bq.h: bq_expr_hooks_t);
 * $jsonSchema is compiled and evaluated by bq_match_schema.c; $text and the geo operators
 * compile to NotImplemented; $where is refused (no JavaScript).
 */
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

struct bq_match {
    bq__mnode_t *root;
    bq_collation_t *collation; /* a reference; NULL: binary string comparison */
};

bq__mnode_t *bq__mnode_new(enum bq__mkind kind)
{
    bq__mnode_t *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->arg.value_type = BSON_TYPE_EOD;
    }
    return n;
}

/* Installed once at startup by the aggregation layer (see bq.h). */
static const bq_expr_hooks_t *expr_hooks;

/* The options of the filter being compiled on this thread, for $expr nodes found anywhere
 * in the recursive parse (set and cleared by bq_match_compile_opts). */
static __thread const bq_match_opts_t *parse_opts;

/* The evaluation under way on this thread, for $expr nodes: the env they evaluate with
 * and where the first evaluation error goes (set by bq_match_eval_env). The matcher's
 * node functions return bool, so an error is recorded here and turns into "no match"
 * on the way up; bq_match_eval_env then reports it. */
typedef struct eval_state {
    void *env;
    bq_error_t *err;
    bool failed;
} eval_state_t;
static __thread eval_state_t *eval_state;

void bq_expr_hooks_install(const bq_expr_hooks_t *hooks)
{
    expr_hooks = hooks;
}

void bq__mnode_free(bq__mnode_t *n)
{
    if (!n)
        return;
    if (n->kind == BQ__M_EXPR && n->data)
        expr_hooks->destroy(n->data);
    if (n->kind == BQ__M_SCHEMA)
        bq__schema_free(n->data);
    for (size_t i = 0; i < n->nkids; i++)
        bq__mnode_free(n->kids[i]);
    free(n->kids);
    if (n->op && n->op->free && n->data)
        n->op->free(n->data);
    if (n->arg.value_type != BSON_TYPE_EOD)
        bson_value_destroy(&n->arg);
    free(n->path);
    free(n);
}

bool bq__mnode_add(bq__mnode_t *parent, bq__mnode_t *kid)
{
    bq__mnode_t **k = realloc(parent->kids, sizeof *k * (parent->nkids + 1));
    if (!k) {
        bq__mnode_free(kid);
        return false;
    }
    parent->kids = k;
    parent->kids[parent->nkids++] = kid;
    return true;
}

const bq__mop_t *bq__mop_find(const char *name)
{
    const bq__mop_t *tables[] = {bq__match_cmp_ops, bq__match_elem_ops, bq__match_array_ops,
                                 bq__match_eval_ops};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const bq__mop_t *op = tables[t]; op->name; op++)
            if (strcmp(op->name, name) == 0)
                return op;
    return NULL;
}

bq__mnode_t *bq__match_leaf(const bq__mop_t *op, const char *path, const bson_iter_t *arg,
                            bq_error_t *err)
{
    bq__mnode_t *n = bq__mnode_new(BQ__M_LEAF);
    if (!n) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
        return NULL;
    }
    n->op = op;
    n->negate = (op->flags & BQ__MOP_NEGATE) != 0;
    if (path && !(n->path = strdup(path))) {
        bq__mnode_free(n);
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
        return NULL;
    }
    if (!op->compile(n, arg, err)) {
        bq__mnode_free(n);
        return NULL;
    }
    /* kept for explanations (bq_match_explain's specifiedAs) when the op did not keep it */
    if (n->arg.value_type == BSON_TYPE_EOD)
        bson_value_copy(bson_iter_value((bson_iter_t *)arg), &n->arg);
    return n;
}

bq__mnode_t *bq__match_eq_leaf(const char *path, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) == BSON_TYPE_REGEX)
        return bq__match_regex_leaf(path, arg, NULL, err);
    return bq__match_leaf(&bq__match_eq_op, path, arg, err);
}

/* True for {$ref: ..., $id: ...} style documents, which are values, not operators. */
static bool is_dbref_key(const char *k)
{
    return strcmp(k, "$ref") == 0 || strcmp(k, "$id") == 0 || strcmp(k, "$db") == 0;
}

/* An operator document: its first field starts with '$' (and is not a DBRef field). */
static bool is_operator_doc(const bson_iter_t *it)
{
    if (bson_iter_type(it) != BSON_TYPE_DOCUMENT)
        return false;
    bson_iter_t ch;
    if (!bson_iter_recurse(it, &ch) || !bson_iter_next(&ch))
        return false;
    const char *k = bson_iter_key(&ch);
    return k[0] == '$' && !is_dbref_key(k);
}

static bool is_geo_op(const char *name)
{
    static const char *geo[] = {"$near", "$nearSphere", "$geoWithin", "$geoIntersects",
                                "$within", "$maxDistance", "$minDistance", "$box",
                                "$center", "$centerSphere", "$polygon", "$geometry"};
    for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++)
        if (strcmp(name, geo[i]) == 0)
            return true;
    return false;
}

static bool add_or_fail(bq__mnode_t *into, bq__mnode_t *kid, bq_error_t *err)
{
    if (!kid)
        return false;
    if (!bq__mnode_add(into, kid)) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
        return false;
    }
    return true;
}

bool bq__match_parse_ops(bq__mnode_t *into, const char *path, const bson_iter_t *ops,
                         bq_error_t *err)
{
    bson_iter_t it, regex_it, options_it;
    bool have_regex = false, have_options = false;
    if (!bson_iter_recurse(ops, &it)) {
        bq_error_set(err, BQ_ERR_BadValue, "invalid operator document");
        return false;
    }
    /* $regex and $options belong together wherever they appear in the document. */
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "$regex") == 0) {
            regex_it = it;
            have_regex = true;
        } else if (strcmp(bson_iter_key(&it), "$options") == 0) {
            options_it = it;
            have_options = true;
        }
    }
    if (have_options && !have_regex) {
        bq_error_set(err, BQ_ERR_BadValue, "$options needs a $regex");
        return false;
    }
    bson_iter_recurse(ops, &it);
    while (bson_iter_next(&it)) {
        const char *name = bson_iter_key(&it);
        if (name[0] != '$') {
            bq_error_set(err, BQ_ERR_BadValue, "unknown operator: %s", name);
            return false;
        }
        if (strcmp(name, "$options") == 0)
            continue;
        if (strcmp(name, "$regex") == 0) {
            if (!add_or_fail(into, bq__match_regex_leaf(path, &regex_it,
                                                        have_options ? &options_it : NULL, err),
                             err))
                return false;
            continue;
        }
        if (strcmp(name, "$not") == 0) {
            if (!bq__match_parse_not(into, path, &it, err))
                return false;
            continue;
        }
        if (is_geo_op(name)) {
            bq_error_set(err, BQ_ERR_NotImplemented, "%s is not implemented yet", name);
            return false;
        }
        const bq__mop_t *op = bq__mop_find(name);
        if (!op) {
            bq_error_set(err, BQ_ERR_BadValue, "unknown operator: %s", name);
            return false;
        }
        if (!add_or_fail(into, bq__match_leaf(op, path, &it, err), err))
            return false;
    }
    return true;
}

bool bq__match_parse_doc(bq__mnode_t *into, const bson_t *filter, bool top, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, filter)) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "invalid BSON in filter");
        return false;
    }
    (void)top;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (key[0] == '$') {
            if (!strcmp(key, "$and") || !strcmp(key, "$or") || !strcmp(key, "$nor")) {
                if (!bq__match_parse_logic(into, key, &it, err))
                    return false;
            } else if (!strcmp(key, "$comment")) {
                continue;
            } else if (!strcmp(key, "$alwaysTrue") || !strcmp(key, "$alwaysFalse")) {
                bq__mnode_t *n = bq__mnode_new(key[7] == 'T' ? BQ__M_TRUE : BQ__M_FALSE);
                if (!n) {
                    bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
                    return false;
                }
                if (!add_or_fail(into, n, err))
                    return false;
            } else if (!strcmp(key, "$where")) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "$where is not supported: NEDB has no JavaScript engine");
                return false;
            } else if (!strcmp(key, "$expr") && expr_hooks) {
                bq__mnode_t *n = bq__mnode_new(BQ__M_EXPR);
                if (!n) {
                    bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
                    return false;
                }
                n->data = expr_hooks->compile(bson_iter_value(&it), parse_opts, err);
                if (!n->data) {
                    bq__mnode_free(n);
                    return false;
                }
                bson_value_copy(bson_iter_value(&it), &n->arg); /* for bq_match_explain */
                if (!add_or_fail(into, n, err))
                    return false;
            } else if (!strcmp(key, "$jsonSchema")) {
                if (!add_or_fail(into, bq__match_schema_node(&it, err), err))
                    return false;
            } else if (!strcmp(key, "$expr") || !strcmp(key, "$text")) {
                bq_error_set(err, BQ_ERR_NotImplemented, "%s is not implemented yet", key);
                return false;
            } else {
                bq_error_set(err, BQ_ERR_BadValue, "unknown top level operator: %s", key);
                return false;
            }
            continue;
        }
        if (is_operator_doc(&it)) {
            if (!bq__match_parse_ops(into, key, &it, err))
                return false;
        } else if (!add_or_fail(into, bq__match_eq_leaf(key, &it, err), err)) {
            return false;
        }
    }
    return true;
}

bq_match_t *bq_match_compile(const bson_t *filter, bq_error_t *err)
{
    return bq_match_compile_opts(filter, NULL, err);
}

bq_match_t *bq_match_compile_opts(const bson_t *filter, const bq_match_opts_t *opts,
                                  bq_error_t *err)
{
    static const bq_match_opts_t no_opts;
    bq_match_t *m = calloc(1, sizeof *m);
    if (!m || !(m->root = bq__mnode_new(BQ__M_AND))) {
        free(m);
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
        return NULL;
    }
    parse_opts = opts ? opts : &no_opts;
    m->collation = bq_collation_ref(parse_opts->collation);
    bool ok = bq__match_parse_doc(m->root, filter, true, err);
    parse_opts = NULL;
    if (!ok) {
        bq_match_destroy(m);
        return NULL;
    }
    return m;
}

void bq_match_destroy(bq_match_t *m)
{
    if (!m)
        return;
    bq__mnode_free(m->root);
    bq_collation_destroy(m->collation);
    free(m);
}

typedef struct leaf_ctx {
    const bq__mnode_t *n;
    bool matched;
} leaf_ctx_t;

static bool leaf_hit(void *ctx, const bq_path_hit_t *hit)
{
    leaf_ctx_t *c = ctx;
    if (c->n->op->match(c->n, hit->value)) {
        c->matched = true;
        return true;
    }
    return false;
}

bool bq__mnode_eval(const bq__mnode_t *n, const bson_value_t *ctx)
{
    switch (n->kind) {
    case BQ__M_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!bq__mnode_eval(n->kids[i], ctx))
                return false;
        return true;
    case BQ__M_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (bq__mnode_eval(n->kids[i], ctx))
                return true;
        return false;
    case BQ__M_NOR:
        for (size_t i = 0; i < n->nkids; i++)
            if (bq__mnode_eval(n->kids[i], ctx))
                return false;
        return true;
    case BQ__M_NOT:
        return !bq__mnode_eval(n->kids[0], ctx);
    case BQ__M_TRUE:
        return true;
    case BQ__M_FALSE:
        return false;
    case BQ__M_EXPR: {
        bson_t doc;
        if (ctx->value_type != BSON_TYPE_DOCUMENT ||
            !bson_init_static(&doc, ctx->value.v_doc.data, ctx->value.v_doc.data_len))
            return false;
        eval_state_t *es = eval_state;
        bq_error_t scratch;
        int r = expr_hooks->matches(n->data, &doc, es ? es->env : NULL,
                                    es && !es->failed ? es->err : &scratch);
        if (r < 0 && es)
            es->failed = true;
        return r > 0;
    }
    case BQ__M_SCHEMA:
        return bq__schema_match(n->data, ctx);
    case BQ__M_LEAF:
        break;
    }
    bool matched;
    if (n->path) {
        leaf_ctx_t c = {.n = n, .matched = false};
        int flags = (n->op->flags & BQ__MOP_WHOLE_ARRAY) ? 0 : BQ_PATH_EXPAND_LEAF_ARRAYS;
        bq_path_walk_value(ctx, n->path, flags, leaf_hit, &c);
        matched = c.matched;
    } else {
        matched = n->op->match(n, ctx);
    }
    return matched != n->negate;
}

static bool eval_doc(const bq_match_t *m, const bson_t *doc)
{
    bson_value_t root;
    root.value_type = BSON_TYPE_DOCUMENT;
    root.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    root.value.v_doc.data_len = doc->len;
    if (!m->collation)
        return bq__mnode_eval(m->root, &root);
    const bq_collation_t *prev = bq_collation_enter(m->collation);
    bool r = bq__mnode_eval(m->root, &root);
    bq_collation_leave(prev);
    return r;
}

int bq_match_eval_env(const bq_match_t *m, const bson_t *doc, void *expr_env,
                      bq_error_t *err)
{
    eval_state_t es = {.env = expr_env, .err = err, .failed = false};
    eval_state_t *outer = eval_state; /* a $expr may run a pipeline that matches again */
    eval_state = &es;
    bool r = eval_doc(m, doc);
    eval_state = outer;
    return es.failed ? -1 : r;
}

bool bq_match_eval(const bq_match_t *m, const bson_t *doc)
{
    eval_state_t *outer = eval_state;
    eval_state = NULL;
    bool r = eval_doc(m, doc);
    eval_state = outer;
    return r;
}

void bq_match_explain(const bq_match_t *m, const bson_t *doc, bson_t *details)
{
    bq__match_explain_root(m->root, doc, details);
}
