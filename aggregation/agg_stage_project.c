/*
 * agg_stage_project.c: $project, $addFields (and its alias $set) and $unset, MongoDB 7.0
 * semantics. All four compile their spec into one tree of paths (pnode_t) and stream:
 * one document in, one document out.
 *
 * The tree. Every node is a field name; a leaf includes, excludes or computes (an
 * expression); an inner node ("a" of "a.b") holds children in spec order. $project
 * decides once whether it is an inclusion projection (inclusions and computed fields;
 * _id kept unless excluded) or an exclusion projection (exclusions only; _id may be
 * excluded in both). $addFields is an inclusion of everything plus computed fields, and
 * $unset an exclusion.
 *
 * Applying, as mongod's projection executor does, in two phases per document level:
 *   1. projections: walk the input's fields in their order, keeping included ones and
 *      recursing into inner nodes (arrays map element by element, nested arrays too;
 *      a scalar where an inclusion expects a document is dropped, kept by an exclusion);
 *   2. expressions: the node's computed children in spec order, replacing a field in place
 *      or appending it; an inner node with computed fields below turns a missing or scalar
 *      value into a new document of those fields, and maps arrays element by element.
 * Expressions always see the whole input document as $$ROOT / $$CURRENT.
 *
 * Errors (mongod's codes): 51272 empty $project, 31253/31254 inclusion and exclusion
 * mixed, 31252 an expression in an exclusion projection, 31249/31250 path collisions,
 * 51270 an empty sub-projection, 40352/40353/15998/16410 bad field paths, 31119/31120
 * bad $unset specs, 40272 a non-object $addFields spec.
 */
#include <stdlib.h>
#include <string.h>

#include "agg_expr_int.h"
#include "agg_stage_basic_int.h"

/* ================================================================ shared helpers */

char **agg__path_split(const char *path, int *n)
{
    int cnt = 1;
    for (const char *p = path; *p; p++)
        cnt += *p == '.';
    char **parts = bson_malloc0(sizeof *parts * (size_t)cnt);
    const char *start = path;
    *n = 0;
    for (const char *p = path;; p++) {
        if (*p == '.' || *p == '\0') {
            parts[(*n)++] = bson_strndup(start, (size_t)(p - start));
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return parts;
}

void agg__path_free(char **parts, int n)
{
    for (int i = 0; i < n; i++)
        bson_free(parts[i]);
    bson_free(parts);
}

bool agg__field_path_check(const char *path, bq_error_t *err)
{
    size_t len = strlen(path);
    if (len == 0) {
        bq_error_set(err, 40352, "FieldPath cannot be constructed with empty string");
        return false;
    }
    if (path[len - 1] == '.') {
        bq_error_set(err, 40353, "FieldPath must not end with a '.'.");
        return false;
    }
    const char *start = path;
    for (const char *p = path;; p++) {
        if (*p == '.' || *p == '\0') {
            if (p == start) {
                bq_error_set(err, 15998, "FieldPath field names may not be empty strings.");
                return false;
            }
            if (*start == '$') {
                bq_error_set(err, 16410,
                             "FieldPath field names may not start with '$'. Consider using "
                             "$getField or $setField.");
                return false;
            }
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return true;
}

void agg__doc_set_path(const uint8_t *data, uint32_t len, char *const *parts, int n,
                       const bson_value_t *v, bson_t *out)
{
    bson_iter_t it;
    bool found = false;
    if (data && bson_iter_init_from_data(&it, data, len)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, parts[0]) != 0) {
                bson_append_iter(out, k, -1, &it);
                continue;
            }
            found = true;
            if (n == 1) {
                agg_value_append(out, k, -1, v);
                continue;
            }
            bson_t sub;
            bson_append_document_begin(out, k, -1, &sub);
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                uint32_t sl;
                const uint8_t *sd;
                bson_iter_document(&it, &sl, &sd);
                agg__doc_set_path(sd, sl, parts + 1, n - 1, v, &sub);
            } else {
                agg__doc_set_path(NULL, 0, parts + 1, n - 1, v, &sub);
            }
            bson_append_document_end(out, &sub);
        }
    }
    if (!found) {
        if (n == 1) {
            agg_value_append(out, parts[0], -1, v);
        } else if (v->value_type != BSON_TYPE_EOD) {
            bson_t sub;
            bson_append_document_begin(out, parts[0], -1, &sub);
            agg__doc_set_path(NULL, 0, parts + 1, n - 1, v, &sub);
            bson_append_document_end(out, &sub);
        }
    }
}

void agg__simple_close(agg_iter_t *it)
{
    agg_iter_close(it->input);
    free(it);
}

/* ================================================================ documents being built */

/* A document under construction: fields in order, values owned; an EOD value keeps the
 * field's place but is left out of the result (mongod's "missing" value). */
typedef struct pfield {
    char *key;
    bson_value_t v;
} pfield_t;

typedef struct pdoc {
    pfield_t *f;
    int n, cap;
} pdoc_t;

static void pdoc_cleanup(pdoc_t *d)
{
    for (int i = 0; i < d->n; i++) {
        bson_free(d->f[i].key);
        agg_value_cleanup(&d->f[i].v);
    }
    bson_free(d->f);
    memset(d, 0, sizeof *d);
}

/* Appends key with *v (taken: *v becomes EOD). */
static void pdoc_add(pdoc_t *d, const char *key, bson_value_t *v)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->f = bson_realloc(d->f, sizeof *d->f * (size_t)d->cap);
    }
    d->f[d->n].key = bson_strdup(key);
    d->f[d->n].v = *v;
    d->n++;
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_EOD;
}

static int pdoc_find(const pdoc_t *d, const char *key)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->f[i].key, key) == 0)
            return i;
    return -1;
}

/* Sets key to *v (taken), in place when present. */
static void pdoc_set(pdoc_t *d, const char *key, bson_value_t *v)
{
    int i = pdoc_find(d, key);
    if (i < 0) {
        pdoc_add(d, key, v);
        return;
    }
    agg_value_cleanup(&d->f[i].v);
    d->f[i].v = *v;
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_EOD;
}

static void pdoc_copy_from(pdoc_t *d, const uint8_t *data, uint32_t len)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len))
        return;
    while (bson_iter_next(&it)) {
        bson_value_t v;
        agg_value_copy(bson_iter_value(&it), &v);
        pdoc_add(d, bson_iter_key(&it), &v);
    }
}

static void pdoc_build(const pdoc_t *d, bson_t *out)
{
    for (int i = 0; i < d->n; i++)
        agg_value_append(out, d->f[i].key, -1, &d->f[i].v);
}

static void pdoc_to_value(const pdoc_t *d, bson_value_t *out)
{
    bson_t b;
    bson_init(&b);
    pdoc_build(d, &b);
    agg__set_doc_steal(out, &b);
}

/* ================================================================ the path tree */

enum { PN_INCLUDE, PN_EXCLUDE, PN_EXPR, PN_CHILD };
enum { MODE_UNKNOWN, MODE_INCLUSION, MODE_EXCLUSION, MODE_ADD };

typedef struct pnode {
    char *name;
    int kind;
    agg_expr_t *expr;        /* PN_EXPR */
    struct pnode **kids;     /* PN_CHILD, in spec order */
    int nkids, cap;
    bool has_expr;           /* PN_CHILD: some computed field below */
} pnode_t;

typedef struct proj {
    pnode_t root;
    int mode;
} proj_t;

static void pnode_free_kids(pnode_t *n)
{
    for (int i = 0; i < n->nkids; i++) {
        pnode_free_kids(n->kids[i]);
        bson_free(n->kids[i]->name);
        agg_expr_destroy(n->kids[i]->expr);
        bson_free(n->kids[i]);
    }
    bson_free(n->kids);
    n->kids = NULL;
    n->nkids = 0;
}

void agg__project_free(void *state)
{
    proj_t *p = state;
    if (!p)
        return;
    pnode_free_kids(&p->root);
    bson_free(p);
}

static pnode_t *pnode_kid(const pnode_t *n, const char *name)
{
    for (int i = 0; i < n->nkids; i++)
        if (strcmp(n->kids[i]->name, name) == 0)
            return n->kids[i];
    return NULL;
}

static pnode_t *pnode_add(pnode_t *n, const char *name, int kind)
{
    if (n->nkids == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 4;
        n->kids = bson_realloc(n->kids, sizeof *n->kids * (size_t)n->cap);
    }
    pnode_t *k = bson_malloc0(sizeof *k);
    k->name = bson_strdup(name);
    k->kind = kind;
    n->kids[n->nkids++] = k;
    return k;
}

static void pnode_remove(pnode_t *n, const char *name)
{
    for (int i = 0; i < n->nkids; i++) {
        if (strcmp(n->kids[i]->name, name) != 0)
            continue;
        pnode_t *k = n->kids[i];
        pnode_free_kids(k);
        bson_free(k->name);
        agg_expr_destroy(k->expr);
        bson_free(k);
        memmove(&n->kids[i], &n->kids[i + 1], sizeof *n->kids * (size_t)(n->nkids - i - 1));
        n->nkids--;
        return;
    }
}

/* Adds a leaf at `path` (already checked). expr is taken (freed on failure). */
static bool tree_add(pnode_t *root, const char *path, int kind, agg_expr_t *expr,
                     bq_error_t *err)
{
    int n;
    char **parts = agg__path_split(path, &n);
    pnode_t *cur = root;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        pnode_t *k = pnode_kid(cur, parts[i]);
        if (i == n - 1) {
            if (k) {
                bq_error_set(err, 31250, "Path collision at %s", path);
                ok = false;
                break;
            }
            k = pnode_add(cur, parts[i], kind);
            k->expr = expr;
            expr = NULL;
            break;
        }
        if (!k) {
            k = pnode_add(cur, parts[i], PN_CHILD);
        } else if (k->kind != PN_CHILD) {
            /* the remaining portion after the existing leaf */
            size_t off = 0;
            for (int j = 0; j <= i; j++)
                off += strlen(parts[j]) + 1;
            bq_error_set(err, 31249, "Path collision at %s remaining portion %s", path,
                         path + off);
            ok = false;
            break;
        }
        if (kind == PN_EXPR)
            k->has_expr = true;
        cur = k;
    }
    agg_expr_destroy(expr);
    agg__path_free(parts, n);
    return ok;
}

/* ================================================================ parsing */

typedef struct pparse {
    proj_t *p;
    agg_scope_t *scope;
    bool add_fields;     /* $addFields / $set */
    bool id_seen;
} pparse_t;

static bool is_numeric_or_bool(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_BOOL || bq_num_is_number(v);
}

static bool value_truthy_num(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_BOOL)
        return v->value.v_bool;
    double d = 0;
    bq_num_to_double(v, &d);
    return d != 0; /* NaN counts as true, as mongod's coerceToBool */
}

static bool parse_fields(pparse_t *pp, const bson_value_t *spec, const char *prefix,
                         bq_error_t *err);

/* One (path, value) of a $project / $addFields spec. */
static bool parse_one(pparse_t *pp, const char *path, const bson_value_t *v, bq_error_t *err)
{
    proj_t *p = pp->p;
    bool is_id = strcmp(path, "_id") == 0;
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        agg__iter_init(&it, v);
        bool empty = !bson_iter_next(&it);
        if (empty && !pp->add_fields) {
            bq_error_set(err, 51270,
                         "An empty sub-projection is not a valid value. Found empty object at "
                         "path %s",
                         path);
            return false;
        }
        if (!empty && bson_iter_key(&it)[0] != '$')
            return parse_fields(pp, v, path, err);
    }
    if (!pp->add_fields && is_numeric_or_bool(v)) {
        bool incl = value_truthy_num(v);
        if (is_id) {
            pp->id_seen = true;
            return tree_add(&p->root, path, incl ? PN_INCLUDE : PN_EXCLUDE, NULL, err);
        }
        if (incl && p->mode == MODE_EXCLUSION) {
            bq_error_set(err, 31253, "Cannot do inclusion on field %s in exclusion projection",
                         path);
            return false;
        }
        if (!incl && p->mode == MODE_INCLUSION) {
            bq_error_set(err, 31254, "Cannot do exclusion on field %s in inclusion projection",
                         path);
            return false;
        }
        p->mode = incl ? MODE_INCLUSION : MODE_EXCLUSION;
        return tree_add(&p->root, path, incl ? PN_INCLUDE : PN_EXCLUDE, NULL, err);
    }
    /* a computed field */
    if (!pp->add_fields) {
        if (p->mode == MODE_EXCLUSION) {
            bq_error_set(err, 31252,
                         "Cannot use expression other than $meta in exclusion projection");
            return false;
        }
        p->mode = MODE_INCLUSION;
        if (is_id)
            pp->id_seen = true;
    }
    agg_expr_t *e = agg_expr_compile(v, pp->scope, err);
    if (!e)
        return false;
    return tree_add(&p->root, path, PN_EXPR, e, err);
}

static bool parse_fields(pparse_t *pp, const bson_value_t *spec, const char *prefix,
                         bq_error_t *err)
{
    bson_iter_t it;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (!agg__field_path_check(key, err))
            return false;
        char *path = prefix ? bson_strdup_printf("%s.%s", prefix, key) : bson_strdup(key);
        bson_value_t v = *bson_iter_value(&it);
        bool ok = parse_one(pp, path, &v, err);
        bson_free(path);
        if (!ok)
            return false;
    }
    return true;
}

bool agg__project_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                          bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 15969, "$project specification must be an object");
        return false;
    }
    if (agg__array_len(spec) == 0) {
        bq_error_set(err, 51272,
                     "Invalid $project :: caused by :: projection specification must have at "
                     "least one field");
        return false;
    }
    proj_t *p = bson_malloc0(sizeof *p);
    pparse_t pp = {.p = p, .scope = pc->scope};
    if (!parse_fields(&pp, spec, NULL, err)) {
        bq_error_prefix(err, "Invalid $project :: caused by");
        agg__project_free(p);
        return false;
    }
    if (p->mode == MODE_UNKNOWN) {
        /* only _id was named: {_id: 0} excludes it, {_id: 1} keeps only it */
        pnode_t *id = pnode_kid(&p->root, "_id");
        p->mode = id && id->kind == PN_EXCLUDE ? MODE_EXCLUSION : MODE_INCLUSION;
    }
    pnode_t *id = pnode_kid(&p->root, "_id");
    if (p->mode == MODE_INCLUSION) {
        if (!id)
            pnode_add(&p->root, "_id", PN_INCLUDE);
        else if (id->kind == PN_EXCLUDE)
            pnode_remove(&p->root, "_id");
    } else if (id && id->kind == PN_INCLUDE) {
        pnode_remove(&p->root, "_id"); /* kept anyway */
    }
    *state = p;
    return true;
}

static bool add_fields_parse_named(const char *name, const bson_value_t *spec,
                                   agg_parse_t *pc, void **state, bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40272, "%s specification stage must be an object, got %s", name,
                     agg__type_name(spec));
        return false;
    }
    proj_t *p = bson_malloc0(sizeof *p);
    p->mode = MODE_ADD;
    pparse_t pp = {.p = p, .scope = pc->scope, .add_fields = true};
    if (!parse_fields(&pp, spec, NULL, err)) {
        bq_error_prefix(err, "Invalid %s :: caused by", name);
        agg__project_free(p);
        return false;
    }
    *state = p;
    return true;
}

bool agg__add_fields_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                             bq_error_t *err)
{
    return add_fields_parse_named("$addFields", spec, pc, state, err);
}

bool agg__set_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                      bq_error_t *err)
{
    return add_fields_parse_named("$set", spec, pc, state, err);
}

bool agg__unset_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    (void)pc;
    proj_t *p = bson_malloc0(sizeof *p);
    p->mode = MODE_EXCLUSION;
    bool ok = true;
    if (spec->value_type == BSON_TYPE_UTF8) {
        ok = agg__field_path_check(spec->value.v_utf8.str, err) &&
             tree_add(&p->root, spec->value.v_utf8.str, PN_EXCLUDE, NULL, err);
    } else if (spec->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        agg__iter_init(&it, spec);
        int n = 0;
        while (ok && bson_iter_next(&it)) {
            n++;
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, 31120,
                             "$unset specification must be a string or an array containing "
                             "only string values");
                ok = false;
                break;
            }
            const char *path = bson_iter_utf8(&it, NULL);
            ok = agg__field_path_check(path, err) &&
                 tree_add(&p->root, path, PN_EXCLUDE, NULL, err);
        }
        if (ok && n == 0) {
            bq_error_set(err, 31119,
                         "$unset specification must be a string or an array with at least "
                         "one field");
            ok = false;
        }
    } else {
        bq_error_set(err, 31120,
                     "$unset specification must be a string or an array containing only "
                     "string values");
        ok = false;
    }
    if (!ok) {
        agg__project_free(p);
        return false;
    }
    *state = p;
    return true;
}

/* ================================================================ applying */

static bool value_full(const pnode_t *n, int mode, const bson_value_t *in, agg_env_t *env,
                       bson_value_t *out, bq_error_t *err);

/* Phase 2 at one level: computed children in spec order; inner nodes with computed fields
 * below. For $addFields every inner node is visited (it only holds computed fields). */
static bool phase_expr(const pnode_t *n, int mode, pdoc_t *d, agg_env_t *env, bq_error_t *err)
{
    for (int i = 0; i < n->nkids; i++) {
        const pnode_t *k = n->kids[i];
        bson_value_t v;
        if (k->kind == PN_EXPR) {
            if (!agg_expr_eval(k->expr, env, &v, err))
                return false;
            pdoc_set(d, k->name, &v);
        } else if (k->kind == PN_CHILD && k->has_expr) {
            int at = pdoc_find(d, k->name);
            if (mode == MODE_INCLUSION && at >= 0)
                continue; /* computed with the projection of that field */
            bson_value_t missing = {.value_type = BSON_TYPE_EOD};
            if (!value_full(k, mode, at >= 0 ? &d->f[at].v : &missing, env, &v, err))
                return false;
            pdoc_set(d, k->name, &v);
        }
    }
    return true;
}

/* Phase 1 at one level (inclusion or exclusion) from the input document's fields. */
static bool phase_proj(const pnode_t *n, int mode, const uint8_t *data, uint32_t len,
                       pdoc_t *d, agg_env_t *env, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len))
        return true;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const pnode_t *k = pnode_kid(n, key);
        bson_value_t v;
        if (!k) {
            if (mode == MODE_EXCLUSION) {
                agg_value_copy(bson_iter_value(&it), &v);
                pdoc_add(d, key, &v);
            }
            continue;
        }
        if (k->kind == PN_INCLUDE) {
            agg_value_copy(bson_iter_value(&it), &v);
            pdoc_add(d, key, &v);
        } else if (k->kind == PN_CHILD) {
            if (!value_full(k, mode, bson_iter_value(&it), env, &v, err))
                return false;
            pdoc_add(d, key, &v);
        }
    }
    return true;
}

/* The value of field `in` once node n (an inner node) is applied to it. */
static bool value_full(const pnode_t *n, int mode, const bson_value_t *in, agg_env_t *env,
                       bson_value_t *out, bq_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
    if (in->value_type == BSON_TYPE_DOCUMENT) {
        pdoc_t d = {0};
        bool ok;
        if (mode == MODE_ADD) {
            pdoc_copy_from(&d, in->value.v_doc.data, in->value.v_doc.data_len);
            ok = phase_expr(n, mode, &d, env, err);
        } else {
            ok = phase_proj(n, mode, in->value.v_doc.data, in->value.v_doc.data_len, &d, env,
                            err) &&
                 (mode != MODE_INCLUSION || phase_expr(n, mode, &d, env, err));
        }
        if (ok)
            pdoc_to_value(&d, out);
        pdoc_cleanup(&d);
        return ok;
    }
    if (in->value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_init(&arr);
        uint32_t idx = 0;
        bson_iter_t it;
        agg__iter_init(&it, in);
        while (bson_iter_next(&it)) {
            bson_value_t el;
            if (!value_full(n, mode, bson_iter_value(&it), env, &el, err)) {
                bson_destroy(&arr);
                return false;
            }
            agg__array_append(&arr, &idx, &el);
            agg_value_cleanup(&el);
        }
        agg__set_array_steal(out, &arr);
        return true;
    }
    /* missing or a scalar */
    if (mode == MODE_EXCLUSION) {
        agg_value_copy(in, out);
        return true;
    }
    if (n->has_expr) {
        pdoc_t d = {0};
        bool ok = phase_expr(n, mode, &d, env, err);
        if (ok)
            pdoc_to_value(&d, out);
        pdoc_cleanup(&d);
        return ok;
    }
    return true; /* inclusion of fields below a scalar: nothing */
}

static bool proj_apply(const proj_t *p, const bson_t *doc, agg_env_t *env, bson_t *out,
                       bq_error_t *err)
{
    pdoc_t d = {0};
    bool ok;
    agg_env_set_root(env, doc);
    if (p->mode == MODE_ADD) {
        pdoc_copy_from(&d, bson_get_data(doc), doc->len);
        ok = phase_expr(&p->root, p->mode, &d, env, err);
    } else {
        ok = phase_proj(&p->root, p->mode, bson_get_data(doc), doc->len, &d, env, err) &&
             (p->mode != MODE_INCLUSION || phase_expr(&p->root, p->mode, &d, env, err));
    }
    if (ok)
        pdoc_build(&d, out);
    pdoc_cleanup(&d);
    return ok;
}

/* ================================================================ the iterator */

typedef struct proj_iter {
    agg_iter_t base;
    const proj_t *p;
} proj_iter_t;

static int proj_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    proj_iter_t *pi = (proj_iter_t *)it;
    bson_t *doc;
    int r = agg_iter_next(it->input, &doc, err);
    if (r <= 0)
        return r;
    bson_t *res = bson_new();
    bool ok = proj_apply(pi->p, doc, &it->run->env, res, err);
    bson_destroy(doc);
    if (!ok) {
        bson_destroy(res);
        return -1;
    }
    *out = res;
    return 1;
}

agg_iter_t *agg__project_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    (void)err;
    proj_iter_t *pi = calloc(1, sizeof *pi);
    if (!pi)
        abort();
    pi->base.next = proj_next;
    pi->base.close = agg__simple_close;
    pi->base.input = input;
    pi->base.run = run;
    pi->p = state;
    return &pi->base;
}

/* $addFields, $set and $unset run the same iterator and state as $project. */
agg_iter_t *agg__add_fields_open(const void *state, agg_iter_t *input, agg_run_t *run,
                                 bq_error_t *err)
{
    return agg__project_open(state, input, run, err);
}

agg_iter_t *agg__set_open(const void *state, agg_iter_t *input, agg_run_t *run,
                          bq_error_t *err)
{
    return agg__project_open(state, input, run, err);
}

agg_iter_t *agg__unset_open(const void *state, agg_iter_t *input, agg_run_t *run,
                            bq_error_t *err)
{
    return agg__project_open(state, input, run, err);
}

void agg__add_fields_free(void *state) { agg__project_free(state); }
void agg__set_free(void *state) { agg__project_free(state); }
void agg__unset_free(void *state) { agg__project_free(state); }
