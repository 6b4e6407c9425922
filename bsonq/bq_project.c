/*
 * bq_project.c: find-style projections (bq_project.h). Owns parsing a projection into a
 * tree of path components (with MongoDB's inclusion/exclusion and path-collision
 * errors) and applying it to documents: inclusion keeps only the named fields (in the
 * document's order, computed fields after them), exclusion drops the named ones, and
 * dotted paths reach into arrays of documents element by element. $slice trims arrays;
 * $elemMatch keeps the first matching element, evaluated with bq_match (bq.h).
 *
 * Computed fields (MongoDB 4.4+): a projected value that is not a number or a boolean is
 * an aggregation expression evaluated against the whole document. Plain literals ("x",
 * null, dates) are kept as values here; operator documents ({$add: ...}), "$path"
 * strings and arrays are compiled and evaluated through the hooks the aggregation layer
 * installs (bq.h: bq_project_expr_hooks_t), as $expr is for filters. Like mongod, a
 * computed field is added after the fields kept from the document (in projection order),
 * replaces a scalar it lands on with a document, is added to every document of an array
 * it reaches, and is dropped when its value is missing ($$REMOVE).
 *
 * Must not: evaluate aggregation expressions itself (aggregation/ owns them), do I/O.
 */
#include <string.h>

#include "bq.h"
#include "bq_project.h"
#include "bq_type.h"
#include "bq_update_int.h"

enum pkind {
    P_INNER,
    P_INCLUDE,
    P_EXCLUDE,
    P_SLICE,
    P_ELEMMATCH,
    P_LITERAL,
    P_POSITIONAL, /* a.$: the element the query matched */
    P_META,       /* {$meta: "seq"} */
    P_EXPR,       /* an aggregation expression (compiled by the hooks) */
};

typedef struct pnode pnode_t;
struct pnode {
    char *name;
    enum pkind kind;
    pnode_t **kids;
    size_t n;
    bool has_skip;          /* $slice: [skip, limit] */
    int64_t skip, limit;
    bq_match_t *match;      /* $elemMatch: {name: {$elemMatch: cond}} */
    bson_value_t lit;       /* literal value (owned) */
    void *expr;             /* P_EXPR: what the hooks compiled (owned) */
};

static const bq_project_expr_hooks_t *expr_hooks;

void bq_project_expr_hooks_install(const bq_project_expr_hooks_t *hooks)
{
    expr_hooks = hooks;
}

struct bq_project {
    pnode_t *root;
    char *pos_path;         /* the array path of a positional projection */
    bool inclusion;
    bool whole;             /* empty projection: the document as it is */
};

static void pnode_free(pnode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        pnode_free(n->kids[i]);
    bson_free(n->kids);
    bson_free(n->name);
    bq_match_destroy(n->match);
    if (n->kind == P_LITERAL)
        bson_value_destroy(&n->lit);
    if (n->expr && expr_hooks)
        expr_hooks->destroy(n->expr);
    bson_free(n);
}

void bq_project_destroy(bq_project_t *p)
{
    if (!p)
        return;
    pnode_free(p->root);
    bson_free(p->pos_path);
    bson_free(p);
}

bool bq_project_is_inclusion(const bq_project_t *p)
{
    return p->inclusion;
}

static pnode_t *pnode_new(const char *name, size_t len, enum pkind kind)
{
    pnode_t *n = bson_malloc0(sizeof *n);
    n->name = bson_strndup(name, len);
    n->kind = kind;
    return n;
}

static pnode_t *pnode_find(const pnode_t *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->n; i++)
        if (strlen(n->kids[i]->name) == len && memcmp(n->kids[i]->name, name, len) == 0)
            return n->kids[i];
    return NULL;
}

static void pnode_add(pnode_t *parent, pnode_t *kid)
{
    parent->kids = bson_realloc(parent->kids, sizeof *parent->kids * (parent->n + 1));
    parent->kids[parent->n++] = kid;
}

/* ---------------------------------------------------------------- compile */

typedef struct pctx {
    bq_project_t *p;
    int mode;               /* 0 undecided, 1 inclusion, -1 exclusion */
    int id;                 /* explicit top-level _id: 1 / -1, 0 none */
    bool slice;             /* a $slice was seen */
    bool elem;              /* an $elemMatch was seen */
    const bson_t *let;      /* the command's let variables, for expressions */
    bq_error_t *err;
} pctx_t;

/* Inserts a leaf at path; fills *out. */
static bool tree_add(pctx_t *c, const char *path, pnode_t *leaf)
{
    pnode_t *cur = c->p->root;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        pnode_t *kid = pnode_find(cur, p, len);
        if (!dot) {
            if (kid) {
                bq_error_set(c->err, 31250, "Path collision at %s", path);
                return false;
            }
            bson_free(leaf->name);
            leaf->name = bson_strndup(p, len);
            pnode_add(cur, leaf);
            return true;
        }
        if (kid && kid->kind != P_INNER) {
            bq_error_set(c->err, 31249, "Path collision at %s remaining portion %s", path,
                         dot + 1);
            return false;
        }
        if (!kid) {
            kid = pnode_new(p, len, P_INNER);
            pnode_add(cur, kid);
        }
        cur = kid;
        p = dot + 1;
    }
}

static bool check_path(pctx_t *c, const char *path)
{
    if (path[0] == '\0') {
        bq_error_set(c->err, 40352, "FieldPath cannot be constructed with empty string");
        return false;
    }
    for (const char *p = path;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0) {
            bq_error_set(c->err, 15998, "FieldPath field names may not be empty strings.");
            return false;
        }
        if (p[0] == '$') {
            if (len == 1 && p != path) {
                bq_error_set(c->err, 31394,
                             "As of 4.4, it's illegal to specify positional operator in the "
                             "middle of a path. Positional projection may only be used at the "
                             "end, for example: a.b.$. If the query previously used a form "
                             "like a.b.$.d, remove the parts following the '$' and the results "
                             "will be equivalent.");
                return false;
            }
            bq_error_set(c->err, 16410, "FieldPath field names may not start with '$'. "
                                        "Consider using $getField or $setField.");
            return false;
        }
        if (!dot)
            return true;
        p = dot + 1;
    }
}

static bool set_mode(pctx_t *c, const char *path, bool include)
{
    if (strcmp(path, "_id") == 0) {
        c->id = include ? 1 : -1;
        return true;
    }
    if (include && c->mode < 0) {
        bq_error_set(c->err, 31253, "Cannot do inclusion on field %s in exclusion projection",
                     path);
        return false;
    }
    if (!include && c->mode > 0) {
        bq_error_set(c->err, 31254, "Cannot do exclusion on field %s in inclusion projection",
                     path);
        return false;
    }
    c->mode = include ? 1 : -1;
    return true;
}

static bool compile_doc(pctx_t *c, const bson_t *spec, const char *prefix);

/* find's $slice: n or [skip, limit], with mongod's codes for each malformed form (the
 * caller then tries the $slice expression, as mongod does, when the hooks are there). */
static bool compile_slice(pctx_t *c, const char *path, const bson_iter_t *arg, pnode_t *n)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)arg);
    int64_t x;
    bool exact = false;
    if (bq_num_to_int64(v, &x, &exact)) {
        n->limit = x;
        return true;
    }
    if (v->value_type != BSON_TYPE_ARRAY) {
        bq_error_set(c->err, 31273,
                     "$slice only supports numbers and [skip, limit] arrays (field %s)", path);
        return false;
    }
    bson_iter_t a;
    bson_value_t xs[2];
    int k = 0;
    bson_iter_recurse(arg, &a);
    while (bson_iter_next(&a)) {
        if (k < 2)
            xs[k] = *bson_iter_value(&a);
        k++;
    }
    if (k != 2) {
        bq_error_set(c->err, 31272, "$slice array argument should be of form [skip, limit]");
        return false;
    }
    int64_t skip, limit;
    if (!bq_num_to_int64(&xs[0], &skip, NULL)) {
        bq_error_set(c->err, 31257, "$slice expects the skip argument to be a number, got %s",
                     bq_type_name(xs[0].value_type));
        return false;
    }
    if (!bq_num_to_int64(&xs[1], &limit, NULL)) {
        bq_error_set(c->err, 31258, "$slice expects the limit argument to be a number, got %s",
                     bq_type_name(xs[1].value_type));
        return false;
    }
    if (limit <= 0) {
        bq_error_set(c->err, 31259, "$slice limit must be positive, got %" PRId64, limit);
        return false;
    }
    n->has_skip = true;
    n->skip = skip;
    n->limit = limit;
    return true;
}

static void error_copy(bq_error_t *dst, const bq_error_t *src)
{
    if (dst)
        *dst = *src;
}

/* Adds a computed field: value (an operator document, a "$path" string or an array)
 * compiled by the aggregation layer's hooks. `op` says value is an operator document
 * ({$add: ...}): in an exclusion projection that is 31252, checked before the expression
 * is parsed; any other expression there is 31310, checked after (mongod's order). */
static bool compile_expr(pctx_t *c, const char *path, const bson_value_t *value, bool op)
{
    if (!expr_hooks) {
        bq_error_set(c->err, BQ_ERR_NotImplemented,
                     "projection expressions (field %s) need the aggregation layer", path);
        return false;
    }
    bq_error_t e;
    bq_error_clear(&e);
    void *compiled = expr_hooks->compile(value, c->let, &e);
    if (op && c->mode < 0 && e.code != 31325) {
        if (compiled)
            expr_hooks->destroy(compiled);
        bq_error_set(c->err, 31252,
                     "Cannot use expression other than $meta in exclusion projection");
        return false;
    }
    if (!compiled) {
        error_copy(c->err, &e);
        return false;
    }
    if (c->mode < 0) {
        expr_hooks->destroy(compiled);
        bq_error_set(c->err, 31310, "Cannot use an expression %s in an exclusion projection",
                     path);
        return false;
    }
    c->mode = 1;
    pnode_t *n = pnode_new(path, strlen(path), P_EXPR);
    n->expr = compiled;
    if (!tree_add(c, path, n)) {
        pnode_free(n);
        return false;
    }
    return true;
}

static bool compile_operator(pctx_t *c, const char *path, const bson_iter_t *it)
{
    bson_iter_t op;
    bson_iter_recurse(it, &op);
    bson_iter_next(&op);
    const char *name = bson_iter_key(&op);
    const bson_value_t *whole = bson_iter_value((bson_iter_t *)it);
    if (strcmp(name, "$slice") == 0) {
        pnode_t *n = pnode_new(path, strlen(path), P_SLICE);
        bq_error_t e, *outer = c->err;
        bq_error_clear(&e);
        c->err = &e;
        bool find_syntax = compile_slice(c, path, &op, n);
        c->err = outer;
        if (find_syntax) {
            if (!tree_add(c, path, n)) {
                pnode_free(n);
                return false;
            }
            c->slice = true;
            return true;
        }
        pnode_free(n);
        if (!expr_hooks) {
            error_copy(c->err, &e);
            return false;
        }
        /* not find's {$slice: n | [skip, limit]}: the $slice expression, as mongod tries
         * next ({$slice: ["$a", 2]}) */
        return compile_expr(c, path, whole, true);
    }
    if (strcmp(name, "$elemMatch") == 0) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&op)) {
            bq_error_set(c->err, 31274, "elemMatch: Invalid argument, object required, but got %s",
                         bq_type_name(bson_iter_type(&op)));
            return false;
        }
        if (c->p->pos_path) {
            bq_error_set(c->err, 31255, "Cannot specify positional operator and $elemMatch.");
            return false;
        }
        if (strchr(path, '.')) {
            bq_error_set(c->err, 31275, "Cannot use $elemMatch projection on a nested field.");
            return false;
        }
        bson_t q = BSON_INITIALIZER, sub;
        bson_append_document_begin(&q, path, -1, &sub);
        bson_append_value(&sub, "$elemMatch", -1, bson_iter_value(&op));
        bson_append_document_end(&q, &sub);
        pnode_t *n = pnode_new(path, strlen(path), P_ELEMMATCH);
        n->match = bq_match_compile(&q, c->err);
        bson_destroy(&q);
        if (!n->match || !tree_add(c, path, n)) {
            pnode_free(n);
            return false;
        }
        c->elem = true;
        return true;
    }
    if (strcmp(name, "$meta") == 0) {
        if (!BSON_ITER_HOLDS_UTF8(&op)) {
            bq_error_set(c->err, BQ_ERR_BadValue, "$meta requires a string argument");
            return false;
        }
        if (strcmp(bson_iter_utf8(&op, NULL), "seq") != 0) {
            bq_error_set(c->err, BQ_ERR_NotImplemented,
                         "$meta projection \"%s\" (field %s) is not supported yet",
                         bson_iter_utf8(&op, NULL), path);
            return false;
        }
        pnode_t *n = pnode_new(path, strlen(path), P_META);
        if (!tree_add(c, path, n)) {
            pnode_free(n);
            return false;
        }
        return true;
    }
    return compile_expr(c, path, whole, true);
}

static bool compile_positional(pctx_t *c, const char *path, const bson_iter_t *it)
{
    size_t len = strlen(path) - 2;
    char *arr = bson_strndup(path, len);
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    double d = 0;
    bool ok = false;
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bq_error_set(c->err, 31271,
                     "positional projection cannot be used with an expression or sub object");
    } else if (v->value_type != BSON_TYPE_BOOL && !bq_num_to_double(v, &d)) {
        bq_error_set(c->err, 31308, "positional projection cannot be used with a literal");
    } else if (c->elem) {
        bq_error_set(c->err, 31256, "Cannot specify positional operator and $elemMatch.");
    } else if (c->p->pos_path) {
        bq_error_set(c->err, 31276,
                     "Cannot specify more than one positional projection per query.");
    } else if (!(v->value_type == BSON_TYPE_BOOL ? v->value.v_bool
                                                 : bq_num_to_double(v, &d) && d != 0)) {
        bq_error_set(c->err, 31395, "positional projection cannot be used with exclusion");
    } else if (check_path(c, arr) && set_mode(c, arr, true)) {
        pnode_t *n = pnode_new(arr, len, P_POSITIONAL);
        ok = tree_add(c, arr, n);
        if (ok)
            c->p->pos_path = bson_strdup(arr);
        else
            pnode_free(n);
    }
    bson_free(arr);
    return ok;
}

static bool compile_field(pctx_t *c, const char *path, const bson_iter_t *it)
{
    size_t plen = strlen(path);
    if (plen > 2 && strcmp(path + plen - 2, ".$") == 0)
        return compile_positional(c, path, it);
    if (!check_path(c, path))
        return false;
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    double d;
    if (v->value_type == BSON_TYPE_BOOL || bq_num_to_double(v, &d)) {
        bool include = v->value_type == BSON_TYPE_BOOL ? v->value.v_bool : d != 0;
        if (bq_num_is_nan(v))
            include = true;
        if (!set_mode(c, path, include))
            return false;
        pnode_t *n = pnode_new(path, strlen(path), include ? P_INCLUDE : P_EXCLUDE);
        if (!tree_add(c, path, n)) {
            pnode_free(n);
            return false;
        }
        return true;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t sub;
        bson_iter_recurse(it, &sub);
        if (!bson_iter_next(&sub)) {
            bq_error_set(c->err, 51270,
                         "An empty sub-projection is not a valid value. Found empty object at "
                         "path");
            return false;
        }
        bson_iter_t extra = sub;
        /* {$op: arg} is an operator; with more fields it is a sub-projection whose '$'
         * field name fails below (16410), as in mongod */
        if (bson_iter_key(&sub)[0] == '$' && !bson_iter_next(&extra))
            return compile_operator(c, path, it);
        uint32_t len;
        const uint8_t *data;
        bson_t d2;
        bson_iter_document(it, &len, &data);
        bson_init_static(&d2, data, len);
        return compile_doc(c, &d2, path);
    }
    if ((v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.str[0] == '$') ||
        v->value_type == BSON_TYPE_ARRAY)
        return compile_expr(c, path, v, false);
    /* a literal: the field is set to the value (a computed field, even for _id) */
    if (c->mode < 0) {
        bq_error_set(c->err, 31310, "Cannot use an expression %s in an exclusion projection",
                     path);
        return false;
    }
    c->mode = 1;
    pnode_t *n = pnode_new(path, strlen(path), P_LITERAL);
    bson_value_copy(v, &n->lit);
    if (!tree_add(c, path, n)) {
        pnode_free(n);
        return false;
    }
    return true;
}

static bool compile_doc(pctx_t *c, const bson_t *spec, const char *prefix)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, spec))
        return true;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        char *path = prefix ? bson_strdup_printf("%s.%s", prefix, k) : bson_strdup(k);
        bool ok = compile_field(c, path, &it);
        bson_free(path);
        if (!ok)
            return false;
    }
    return true;
}

bq_project_t *bq_project_compile(const bson_t *projection, bq_error_t *err)
{
    return bq_project_compile_let(projection, NULL, err);
}

bq_project_t *bq_project_compile_let(const bson_t *projection, const bson_t *let,
                                     bq_error_t *err)
{
    bq_project_t *p = bson_malloc0(sizeof *p);
    p->root = pnode_new("", 0, P_INNER);
    if (!projection || bson_empty(projection)) {
        p->whole = true;
        return p;
    }
    pctx_t c = {.p = p, .let = let, .err = err};
    if (!compile_doc(&c, projection, NULL)) {
        bq_project_destroy(p);
        return NULL;
    }
    /* Undecided by plain fields: $elemMatch projects like an inclusion (mongod returns
     * only _id and the matched element), $slice like an exclusion (all other fields). */
    if (c.mode == 0)
        p->inclusion = c.elem || (c.id > 0 && !c.slice);
    else
        p->inclusion = c.mode > 0;
    if (p->inclusion && c.id == 0 && !pnode_find(p->root, "_id", 3))
        pnode_add(p->root, pnode_new("_id", 3, P_INCLUDE));
    return p;
}

/* ---------------------------------------------------------------- apply */

typedef struct actx {
    const bq_project_opts_t *o;
    int64_t pos;            /* matched index for P_POSITIONAL */
    const bson_t *root;     /* the whole document: what expressions see */
    bq_error_t *err;
    bool failed;            /* an expression failed (err holds the first error) */
} actx_t;

static void view(const bson_value_t *v, bson_t *b)
{
    bson_init_static(b, v->value.v_doc.data, v->value.v_doc.data_len);
}

static void append_slice(const pnode_t *n, const char *key, const bson_value_t *v, bson_t *out)
{
    if (v->value_type != BSON_TYPE_ARRAY) {
        bson_append_value(out, key, -1, v);
        return;
    }
    bson_t a;
    view(v, &a);
    int64_t len = bson_count_keys(&a), start, take;
    if (n->has_skip) {
        start = n->skip < 0 ? (len + n->skip < 0 ? 0 : len + n->skip)
                            : (n->skip > len ? len : n->skip);
        take = n->limit;
    } else if (n->limit >= 0) {
        start = 0;
        take = n->limit;
    } else {
        start = len + n->limit < 0 ? 0 : len + n->limit;
        take = len;
    }
    bson_t child;
    bson_iter_t it;
    bson_append_array_begin(out, key, -1, &child);
    bson_iter_init(&it, &a);
    int64_t i = 0;
    uint32_t k = 0;
    while (bson_iter_next(&it)) {
        if (i >= start && i - start < take) {
            char buf[16];
            const char *ks;
            bson_uint32_to_string(k++, &ks, buf, sizeof buf);
            bson_append_value(&child, ks, -1, bson_iter_value(&it));
        }
        i++;
    }
    bson_append_array_end(out, &child);
}

static void append_elemmatch(const pnode_t *n, const bson_value_t *v, bson_t *out)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return;
    bson_t a;
    bson_iter_t it;
    view(v, &a);
    bson_iter_init(&it, &a);
    while (bson_iter_next(&it)) {
        bson_t probe = BSON_INITIALIZER, arr;
        bson_append_array_begin(&probe, n->name, -1, &arr);
        bson_append_value(&arr, "0", 1, bson_iter_value(&it));
        bson_append_array_end(&probe, &arr);
        bool hit = bq_match_eval(n->match, &probe);
        bson_destroy(&probe);
        if (hit) {
            bson_t child;
            bson_append_array_begin(out, n->name, -1, &child);
            bson_append_value(&child, "0", 1, bson_iter_value(&it));
            bson_append_array_end(out, &child);
            return;
        }
    }
}

static bool is_computed(const pnode_t *n)
{
    return n->kind == P_LITERAL || n->kind == P_EXPR;
}

static bool has_literal(const pnode_t *n)
{
    if (is_computed(n))
        return true;
    for (size_t i = 0; i < n->n; i++)
        if (n->kids[i]->kind == P_INNER ? has_literal(n->kids[i]) : is_computed(n->kids[i]))
            return true;
    return false;
}

/* Appends the value of a computed field (nothing when an expression yields missing).
 * After a failed evaluation nothing more is evaluated: the apply fails with that error. */
static void append_computed(actx_t *x, const pnode_t *k, bson_t *out)
{
    if (k->kind == P_LITERAL) {
        bson_append_value(out, k->name, -1, &k->lit);
        return;
    }
    if (x->failed)
        return;
    if (!expr_hooks->append(k->expr, x->root, k->name, out, x->err))
        x->failed = true;
}

static void project_doc(actx_t *x, const pnode_t *node, bool incl, const bson_t *doc,
                        bson_t *out);

/* Projects the elements of an array reached by an inner node. */
static void project_array(actx_t *x, const pnode_t *node, bool incl,
                          const bson_value_t *v, bson_t *out)
{
    bson_t a;
    bson_iter_t it;
    view(v, &a);
    bson_iter_init(&it, &a);
    uint32_t k = 0;
    while (bson_iter_next(&it)) {
        char buf[16];
        const char *ks;
        const bson_value_t *e = bson_iter_value(&it);
        if (e->value_type == BSON_TYPE_DOCUMENT) {
            bson_t sub, child;
            view(e, &sub);
            bson_uint32_to_string(k++, &ks, buf, sizeof buf);
            bson_append_document_begin(out, ks, -1, &child);
            project_doc(x, node, incl, &sub, &child);
            bson_append_document_end(out, &child);
        } else if (e->value_type == BSON_TYPE_ARRAY) {
            bson_t child;
            bson_uint32_to_string(k++, &ks, buf, sizeof buf);
            bson_append_array_begin(out, ks, -1, &child);
            project_array(x, node, incl, e, &child);
            bson_append_array_end(out, &child);
        } else if (!incl) {
            bson_uint32_to_string(k++, &ks, buf, sizeof buf);
            bson_append_value(out, ks, -1, e);
        }
    }
}

/* Adds the literal fields under node that the document did not have. */
static void add_literals(actx_t *x, const pnode_t *node, bson_t *out)
{
    for (size_t i = 0; i < node->n; i++) {
        const pnode_t *k = node->kids[i];
        if (is_computed(k)) {
            append_computed(x, k, out);
        } else if (k->kind == P_INNER && has_literal(k)) {
            bson_t child;
            bson_append_document_begin(out, k->name, -1, &child);
            add_literals(x, k, &child);
            bson_append_document_end(out, &child);
        }
    }
}

static void project_doc(actx_t *x, const pnode_t *node, bool incl, const bson_t *doc,
                        bson_t *out)
{
    bson_iter_t it;
    bool *seen = bson_malloc0(sizeof *seen * (node->n + 1));
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        pnode_t *k = NULL;
        for (size_t i = 0; i < node->n; i++) {
            if (strcmp(node->kids[i]->name, key) == 0) {
                k = node->kids[i];
                seen[i] = true;
                break;
            }
        }
        if (!k) {
            if (!incl)
                bson_append_value(out, key, -1, v);
            continue;
        }
        switch (k->kind) {
        case P_INCLUDE:
            bson_append_value(out, key, -1, v);
            break;
        case P_EXCLUDE:
        case P_LITERAL:
        case P_EXPR:
        case P_ELEMMATCH:
        case P_META:
            break;
        case P_POSITIONAL:
            if (v->value_type == BSON_TYPE_ARRAY) {
                bson_t a, child;
                bson_iter_t e;
                char ibuf[24];
                view(v, &a);
                snprintf(ibuf, sizeof ibuf, "%lld", (long long)x->pos);
                bson_append_array_begin(out, key, -1, &child);
                if (bson_iter_init_find(&e, &a, ibuf))
                    bson_append_value(&child, "0", 1, bson_iter_value(&e));
                bson_append_array_end(out, &child);
            } else {
                bson_append_value(out, key, -1, v);
            }
            break;
        case P_SLICE:
            append_slice(k, key, v, out);
            break;
        case P_INNER:
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t sub, child;
                view(v, &sub);
                bson_append_document_begin(out, key, -1, &child);
                project_doc(x, k, incl, &sub, &child);
                bson_append_document_end(out, &child);
            } else if (v->value_type == BSON_TYPE_ARRAY) {
                bson_t child;
                bson_append_array_begin(out, key, -1, &child);
                project_array(x, k, incl, v, &child);
                bson_append_array_end(out, &child);
            } else if (!incl) {
                bson_append_value(out, key, -1, v);
            } else if (has_literal(k)) {
                /* a scalar replaced by a document holding the computed fields */
                bson_t child;
                bson_append_document_begin(out, key, -1, &child);
                add_literals(x, k, &child);
                bson_append_document_end(out, &child);
            }
            break;
        }
    }
    /* computed fields and $elemMatch come after the fields kept from the document */
    for (size_t i = 0; i < node->n; i++) {
        const pnode_t *k = node->kids[i];
        if (is_computed(k)) {
            append_computed(x, k, out);
        } else if (k->kind == P_META) {
            if (x->o && x->o->has_seq)
                bson_append_int64(out, k->name, -1, x->o->seq);
        } else if (k->kind == P_ELEMMATCH && seen[i]) {
            bson_iter_t f;
            if (bson_iter_init_find(&f, doc, k->name))
                append_elemmatch(k, bson_iter_value(&f), out);
        } else if (k->kind == P_INNER && !seen[i] && incl && has_literal(k)) {
            bson_t child;
            bson_append_document_begin(out, k->name, -1, &child);
            add_literals(x, k, &child);
            bson_append_document_end(out, &child);
        }
    }
    bson_free(seen);
}

bool bq_project_uses_positional(const bq_project_t *p)
{
    return p->pos_path != NULL;
}

bool bq_project_apply_ex(const bq_project_t *p, const bson_t *doc, const bq_project_opts_t *o,
                         bson_t *out, bq_error_t *err)
{
    if (p->whole) {
        bson_copy_to(doc, out);
        return true;
    }
    bson_init(out);
    actx_t x = {.o = o, .pos = -1, .root = doc, .err = err};
    if (p->pos_path) {
        bson_value_t v;
        /* a missing or non-array field is projected as it is, as mongod does */
        if (bq_path_get(doc, p->pos_path, &v) && v.value_type == BSON_TYPE_ARRAY &&
            !bq__positional_index(o ? o->filter : NULL, doc, p->pos_path, &x.pos)) {
            bq_error_set(err, 51246,
                         "positional operator '.$' couldn't find a matching element in the "
                         "array");
            return false;
        }
    }
    project_doc(&x, p->root, p->inclusion, doc, out);
    return !x.failed;
}

bool bq_project_apply(const bq_project_t *p, const bson_t *doc, bson_t *out, bq_error_t *err)
{
    return bq_project_apply_ex(p, doc, NULL, out, err);
}
