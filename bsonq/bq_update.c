/*
 * bq_update.c: MongoDB update documents (bq_update.h). Owns parsing of operator and
 * replacement updates and array filters into the update tree, the walk that applies the
 * tree to a document, the scalar operators ($set, $unset, $inc, $mul, $min, $max,
 * $rename, $currentDate, $setOnInsert), _id immutability and the apply entry points. Array operators ($push, $addToSet, $pop, $pull, $pullAll) and $bit live in
 * bq_update_arr.c, the mutable document in bq_update_doc.c, the upsert seed and the
 * positional index in bq_update_seed.c.
 *
 * How an update runs, as MongoDB 5.0+ does it: every path of every operator is inserted
 * into one tree (a conflict when a path meets a leaf or ends on an existing node); the
 * children of each node are sorted (names in byte order, numeric names numerically); the
 * apply walks the tree and the document together, so new fields are appended in that
 * order. Whether anything changed is decided by comparing the output with the input.
 *
 * Must not: do I/O, keep pointers into the input after returning, or edit bq.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bq_update_int.h"

/* ---------------------------------------------------------------- update tree */

static void unode_free(bq__unode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        unode_free(n->kids[i]);
    bson_free(n->kids);
    bson_free(n->name);
    bson_free(n->path);
    bson_free(n->from);
    if (n->op != BQ__U_INNER)
        bson_value_destroy(&n->arg);
    bq_sort_destroy(n->sort);
    bq_match_destroy(n->match);
    bson_free(n);
}

void bq_update_destroy(bq_update_t *u)
{
    if (!u)
        return;
    if (u->repl)
        bson_destroy(u->repl);
    bson_free(u->pos_path);
    unode_free(u->root);
    for (size_t i = 0; i < u->nfilters; i++) {
        bson_free(u->filters[i].ident);
        bq_match_destroy(u->filters[i].match);
    }
    bson_free(u->filters);
    bson_free(u);
}

static bq__unode_t *unode_new(const char *name, size_t len)
{
    bq__unode_t *n = bson_malloc0(sizeof *n);
    n->name = bson_strndup(name, len);
    if (strcmp(n->name, "$") == 0)
        n->comp = BQ__C_POSITIONAL;
    else if (strcmp(n->name, "$[]") == 0)
        n->comp = BQ__C_ALL;
    else if (len > 3 && name[0] == '$' && name[1] == '[' && name[len - 1] == ']')
        n->comp = BQ__C_FILTER;
    else
        n->comp = BQ__C_FIELD;
    return n;
}

static bq__unode_t *unode_child(const bq__unode_t *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->nkids; i++)
        if (strlen(n->kids[i]->name) == len && memcmp(n->kids[i]->name, name, len) == 0)
            return n->kids[i];
    return NULL;
}

static void unode_add(bq__unode_t *parent, bq__unode_t *kid)
{
    parent->kids = bson_realloc(parent->kids, sizeof *parent->kids * (parent->nkids + 1));
    parent->kids[parent->nkids++] = kid;
}

static bool is_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* MongoDB 5.0+ field order: numeric names numerically, others byte-wise; array update
 * components after named ones. */
static int unode_order(const void *pa, const void *pb)
{
    const bq__unode_t *a = *(bq__unode_t *const *)pa, *b = *(bq__unode_t *const *)pb;
    if ((a->comp == BQ__C_FIELD) != (b->comp == BQ__C_FIELD))
        return a->comp == BQ__C_FIELD ? -1 : 1;
    if (is_digits(a->name) && is_digits(b->name)) {
        const char *x = a->name, *y = b->name;
        while (*x == '0' && x[1])
            x++;
        while (*y == '0' && y[1])
            y++;
        size_t lx = strlen(x), ly = strlen(y);
        if (lx != ly)
            return lx < ly ? -1 : 1;
        int c = strcmp(x, y);
        if (c)
            return c;
    }
    return strcmp(a->name, b->name);
}

static void unode_sort(bq__unode_t *n)
{
    if (n->nkids > 1)
        qsort(n->kids, n->nkids, sizeof *n->kids, unode_order);
    for (size_t i = 0; i < n->nkids; i++)
        unode_sort(n->kids[i]);
}

/* Checks a path and inserts a leaf for it. Returns the leaf or NULL with err set. */
static bq__unode_t *tree_insert(bq_update_t *u, const char *path, enum bq__uop op,
                                bq_error_t *err)
{
    if (path[0] == '\0') {
        bq_error_set(err, BQ_ERR_EmptyFieldName, "An empty update path is not valid.");
        return NULL;
    }
    /* validate components */
    size_t npos = 0, ncomp = 0;
    for (const char *p = path;; ncomp++) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0) {
            bq_error_set(err, BQ_ERR_EmptyFieldName,
                         "The update path '%s' contains an empty field name, which is not "
                         "allowed.",
                         path);
            return NULL;
        }
        if (len == 1 && p[0] == '$') {
            npos++;
            if (ncomp == 0) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "Cannot have positional (i.e. '$') element in the first position "
                             "in path '%s'",
                             path);
                return NULL;
            }
        } else if (len >= 3 && p[0] == '$' && p[1] == '[' && p[len - 1] == ']' && ncomp == 0) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "Cannot have array filter identifier (i.e. '$[<id>]') element in the "
                         "first position in path '%s'",
                         path);
            return NULL;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    if (npos > 1) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Too many positional (i.e. '$') elements found in path '%s'", path);
        return NULL;
    }
    if (npos) {
        u->positional = true;
        if (!u->pos_path) {
            const char *q = strstr(path, ".$.");
            if (!q) {
                size_t pl = strlen(path);
                q = pl >= 2 && strcmp(path + pl - 2, ".$") == 0 ? path + pl - 2 : NULL;
            }
            if (q)
                u->pos_path = bson_strndup(path, (size_t)(q - path));
        }
    }

    bq__unode_t *cur = u->root;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        bq__unode_t *kid = unode_child(cur, p, len);
        if (!dot) {
            if (kid) {
                bq_error_set(err, BQ_ERR_ConflictingUpdateOperators,
                             "Updating the path '%s' would create a conflict at '%s'", path,
                             path);
                return NULL;
            }
            kid = unode_new(p, len);
            kid->op = op;
            kid->path = bson_strdup(path);
            unode_add(cur, kid);
            break;
        }
        if (kid && kid->op != BQ__U_INNER) {
            bq_error_set(err, BQ_ERR_ConflictingUpdateOperators,
                         "Updating the path '%s' would create a conflict at '%.*s'", path,
                         (int)(dot - path), path);
            return NULL;
        }
        if (!kid) {
            kid = unode_new(p, len);
            unode_add(cur, kid);
        }
        cur = kid;
        p = dot + 1;
    }
    cur = cur->kids[cur->nkids - 1];
    /* resolve array filter identifiers */
    for (const char *q = path; (q = strstr(q, "$[")) != NULL; q += 2) {
        const char *end = strchr(q, ']');
        if (!end || end == q + 2)
            continue;
        size_t ilen = (size_t)(end - q - 2);
        bool found = false;
        for (size_t i = 0; i < u->nfilters; i++) {
            if (strlen(u->filters[i].ident) == ilen &&
                memcmp(u->filters[i].ident, q + 2, ilen) == 0) {
                u->filters[i].used = true;
                found = true;
            }
        }
        if (!found) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "No array filter found for identifier '%.*s' in path '%s'", (int)ilen,
                         q + 2, path);
            return NULL;
        }
    }
    return cur;
}

static void tree_bind_filters(bq_update_t *u, bq__unode_t *n)
{
    if (n->comp == BQ__C_FILTER) {
        size_t ilen = strlen(n->name) - 3;
        for (size_t i = 0; i < u->nfilters; i++)
            if (strlen(u->filters[i].ident) == ilen &&
                memcmp(u->filters[i].ident, n->name + 2, ilen) == 0)
                n->filter = i;
    }
    for (size_t i = 0; i < n->nkids; i++)
        tree_bind_filters(u, n->kids[i]);
}

/* ---------------------------------------------------------------- compile */

static const struct {
    const char *name;
    enum bq__uop op;
} upd_ops[] = {
    {"$set", BQ__U_SET},         {"$unset", BQ__U_UNSET},
    {"$inc", BQ__U_INC},         {"$mul", BQ__U_MUL},
    {"$min", BQ__U_MIN},         {"$max", BQ__U_MAX},
    {"$rename", BQ__U_RENAME},   {"$currentDate", BQ__U_CURRENTDATE},
    {"$setOnInsert", BQ__U_SETONINSERT},
    {"$push", BQ__U_PUSH},       {"$addToSet", BQ__U_ADDTOSET},
    {"$pop", BQ__U_POP},         {"$pull", BQ__U_PULL},
    {"$pullAll", BQ__U_PULLALL}, {"$bit", BQ__U_BIT},
};

static bool compile_rename(bq_update_t *u, const bson_iter_t *it, bq_error_t *err)
{
    const char *from = bson_iter_key(it);
    char vb[256];
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        bq__upd_fmt_value(bson_iter_value((bson_iter_t *)it), vb, sizeof vb);
        bq_error_set(err, BQ_ERR_BadValue, "The 'to' field for $rename must be a string: %s: %s",
                     from, vb);
        return false;
    }
    const char *to = bson_iter_utf8(it, NULL);
    if (strcmp(from, to) == 0) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "The source and target field for $rename must differ: %s: \"%s\"", from,
                     to);
        return false;
    }
    size_t fl = strlen(from), tl = strlen(to);
    if ((fl < tl && strncmp(from, to, fl) == 0 && to[fl] == '.') ||
        (tl < fl && strncmp(from, to, tl) == 0 && from[tl] == '.')) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "The source and target field for $rename must not be on the same path: "
                     "%s: \"%s\"",
                     from, to);
        return false;
    }
    if (strchr(from, '$') && (strstr(from, ".$") || from[0] == '$')) {
        bq_error_set(err, BQ_ERR_BadValue, "The source field for $rename may not be dynamic: %s",
                     from);
        return false;
    }
    if (strchr(to, '$') && (strstr(to, ".$") || to[0] == '$')) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "The destination field for $rename may not be dynamic: %s", to);
        return false;
    }
    bq__unode_t *src = tree_insert(u, from, BQ__U_RENAME_SRC, err);
    if (!src)
        return false;
    bson_value_copy(bson_iter_value((bson_iter_t *)it), &src->arg);
    bq__unode_t *dst = tree_insert(u, to, BQ__U_RENAME, err);
    if (!dst)
        return false;
    bson_value_copy(bson_iter_value((bson_iter_t *)it), &dst->arg);
    dst->from = bson_strdup(from);
    return true;
}

static bool compile_leaf(bq__unode_t *n, const bson_iter_t *it, bq_error_t *err)
{
    bson_value_copy(bson_iter_value((bson_iter_t *)it), &n->arg);
    char vb[256];
    switch (n->op) {
    case BQ__U_INC:
    case BQ__U_MUL:
        if (!bq_num_is_number(&n->arg)) {
            bq__upd_fmt_value(&n->arg, vb, sizeof vb);
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "Cannot %s with non-numeric argument: {%s: %s}",
                         n->op == BQ__U_INC ? "increment" : "multiply", bson_iter_key(it), vb);
            return false;
        }
        return true;
    case BQ__U_CURRENTDATE:
        if (n->arg.value_type == BSON_TYPE_BOOL)
            return true;
        if (n->arg.value_type == BSON_TYPE_DOCUMENT) {
            bson_iter_t sub;
            bson_iter_recurse(it, &sub);
            bool ok = false;
            while (bson_iter_next(&sub)) {
                if (strcmp(bson_iter_key(&sub), "$type") != 0) {
                    bq_error_set(err, BQ_ERR_BadValue,
                                 "Unrecognized $currentDate option: %s", bson_iter_key(&sub));
                    return false;
                }
                const char *t = BSON_ITER_HOLDS_UTF8(&sub) ? bson_iter_utf8(&sub, NULL) : "";
                if (strcmp(t, "timestamp") == 0) {
                    n->ts = true;
                    ok = true;
                } else if (strcmp(t, "date") == 0) {
                    ok = true;
                } else {
                    bq_error_set(err, BQ_ERR_BadValue,
                                 "The '$type' string field is required to be 'date' or "
                                 "'timestamp': {$currentDate: {field : {$type: 'date'}}}");
                    return false;
                }
            }
            if (!ok) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "The '$type' string field is required to be 'date' or "
                             "'timestamp': {$currentDate: {field : {$type: 'date'}}}");
                return false;
            }
            return true;
        }
        bq_error_set(err, BQ_ERR_BadValue,
                     "%s is not valid type for $currentDate. Please use a boolean ('true') or "
                     "a $type expression ({$type: 'timestamp/date'}).",
                     bq_type_name(n->arg.value_type));
        return false;
    case BQ__U_PUSH:
    case BQ__U_ADDTOSET:
    case BQ__U_POP:
    case BQ__U_PULL:
    case BQ__U_PULLALL:
    case BQ__U_BIT:
        return bq__upd_compile_array_op(n, it, err);
    default:
        return true;
    }
}

/* Parses arrayFilters: [{i: cond}, {"j.x": cond, "j.y": cond}, ...]. */
static bool compile_filters(bq_update_t *u, const bson_t *af, bq_error_t *err)
{
    bson_iter_t it;
    if (!af || !bson_iter_init(&it, af))
        return true;
    uint32_t n = bson_count_keys(af);
    u->filters = bson_malloc0(sizeof *u->filters * (n ? n : 1));
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch, "Each array filter must be an object");
            return false;
        }
        uint32_t len;
        const uint8_t *data;
        bson_t f;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&f, data, len);
        bson_iter_t k;
        bson_iter_init(&k, &f);
        char *ident = NULL;
        while (bson_iter_next(&k)) {
            const char *key = bson_iter_key(&k);
            if (key[0] == '$') {
                /* $and/$or/... : the identifier comes from inside; MongoDB requires one */
                continue;
            }
            const char *dot = strchr(key, '.');
            size_t il = dot ? (size_t)(dot - key) : strlen(key);
            if (!ident) {
                ident = bson_strndup(key, il);
            } else if (strlen(ident) != il || memcmp(ident, key, il) != 0) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "Error parsing array filter :: caused by :: Expected a single "
                             "top-level field name, found '%s' and '%.*s'",
                             ident, (int)il, key);
                bson_free(ident);
                return false;
            }
        }
        if (!ident) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Cannot use an expression without a top-level field name in "
                         "arrayFilters");
            return false;
        }
        bool ok = ident[0] >= 'a' && ident[0] <= 'z';
        for (const char *c = ident; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9')))
                ok = false;
        if (!ok) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "Error parsing array filter :: caused by :: The top-level field name "
                         "must be an alphanumeric string beginning with a lowercase letter, "
                         "found '%s'",
                         ident);
            bson_free(ident);
            return false;
        }
        for (size_t i = 0; i < u->nfilters; i++) {
            if (strcmp(u->filters[i].ident, ident) == 0) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "Found multiple array filters with the same top-level field name "
                             "%s",
                             ident);
                bson_free(ident);
                return false;
            }
        }
        bq_match_t *m = bq_match_compile(&f, err);
        if (!m) {
            bq_error_prefix(err, "Error parsing array filter");
            bson_free(ident);
            return false;
        }
        u->filters[u->nfilters].ident = ident;
        u->filters[u->nfilters].match = m;
        u->nfilters++;
    }
    return true;
}

static bool compile_replacement(bq_update_t *u, const bson_t *doc, bq_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            bq_error_set(err, BQ_ERR_DollarPrefixedFieldName,
                         "The dollar ($) prefixed field '%s' in '%s' is not allowed in the "
                         "context of an update's replacement document. Consider using an "
                         "aggregation pipeline with $replaceWith.",
                         k, k);
            return false;
        }
        if (strcmp(k, "_id") == 0 &&
            (BSON_ITER_HOLDS_ARRAY(&it) || BSON_ITER_HOLDS_REGEX(&it) ||
             BSON_ITER_HOLDS_UNDEFINED(&it))) {
            bq_error_set(err, BQ_ERR_InvalidIdField, "The '_id' value cannot be of type %s",
                         bq_type_name(bson_iter_type(&it)));
            return false;
        }
    }
    u->replacement = true;
    u->repl = bson_copy(doc);
    return true;
}

bq_update_t *bq_update_compile(const bson_t *update, const bson_t *array_filters,
                               bq_error_t *err)
{
    bq_update_t *u = bson_malloc0(sizeof *u);
    u->root = unode_new("", 0);
    bson_iter_t it;
    if (!bson_iter_init(&it, update)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "invalid update document");
        goto fail;
    }
    if (!bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        if (array_filters && !bson_empty(array_filters)) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "arrayFilters may not be specified for replacement-style updates");
            goto fail;
        }
        if (!compile_replacement(u, update, err))
            goto fail;
        return u;
    }
    if (!compile_filters(u, array_filters, err))
        goto fail;
    bson_iter_init(&it, update);
    while (bson_iter_next(&it)) {
        const char *opname = bson_iter_key(&it);
        enum bq__uop op = BQ__U_INNER;
        for (size_t i = 0; i < sizeof upd_ops / sizeof upd_ops[0]; i++)
            if (strcmp(upd_ops[i].name, opname) == 0)
                op = upd_ops[i].op;
        if (op == BQ__U_INNER) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Unknown modifier: %s. Expected a valid update modifier or "
                         "pipeline-style update specified as an array",
                         opname);
            goto fail;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            char vb[256];
            bq__upd_fmt_value(bson_iter_value(&it), vb, sizeof vb);
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Modifiers operate on fields but we found type %s instead. For "
                         "example: {$mod: {<field>: ...}} not {%s: %s}",
                         bq_type_name(bson_iter_type(&it)), opname, vb);
            goto fail;
        }
        bson_iter_t f;
        bson_iter_recurse(&it, &f);
        bool any = false;
        while (bson_iter_next(&f)) {
            any = true;
            if (op == BQ__U_RENAME) {
                if (!compile_rename(u, &f, err))
                    goto fail;
                continue;
            }
            bq__unode_t *leaf = tree_insert(u, bson_iter_key(&f), op, err);
            if (!leaf || !compile_leaf(leaf, &f, err))
                goto fail;
        }
        if (!any) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "'%s' is empty. You must specify a field like so: {%s: {<field>: "
                         "...}}",
                         opname, opname);
            goto fail;
        }
    }
    for (size_t i = 0; i < u->nfilters; i++) {
        if (!u->filters[i].used) {
            char *json = bson_as_relaxed_extended_json(update, NULL);
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "The array filter for identifier '%s' was not used in the update %s",
                         u->filters[i].ident, json ? json : "");
            bson_free(json);
            goto fail;
        }
    }
    unode_sort(u->root);
    tree_bind_filters(u, u->root);
    return u;
fail:
    bq_update_destroy(u);
    return NULL;
}

bq_update_t *bq_update_compile_pipeline(const bson_t *pipeline, const bson_t *array_filters,
                                        bq_error_t *err)
{
    (void)pipeline;
    (void)array_filters;
    bq_error_set(err, BQ_ERR_NotImplemented,
                 "pipeline-style updates are not supported yet");
    return NULL;
}

bool bq_update_is_replacement(const bq_update_t *u)
{
    return u->replacement;
}

bool bq_update_uses_positional(const bq_update_t *u)
{
    return u->positional;
}

/* ---------------------------------------------------------------- apply: scalar ops */

/* Same type and same bytes: MongoDB's "no-op" test for $set. */
static bool value_identical(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != b->value_type)
        return false;
    bson_t x = BSON_INITIALIZER, y = BSON_INITIALIZER;
    bson_append_value(&x, "", 0, a);
    bson_append_value(&y, "", 0, b);
    bool same = x.len == y.len && memcmp(bson_get_data(&x), bson_get_data(&y), x.len) == 0;
    bson_destroy(&x);
    bson_destroy(&y);
    return same;
}

static bool node_identical(const bq__mnode_t *m, const bson_value_t *v)
{
    bson_t scratch;
    bson_value_t cur;
    bq__mn_value(m, &scratch, &cur);
    bool same = value_identical(&cur, v);
    bson_destroy(&scratch);
    return same;
}

static int64_t now_ms(const bq__uctx_t *c)
{
    if (c->opts.now_ms)
        return c->opts.now_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool immutable_check(bq__uctx_t *c, const char *path)
{
    if (!c->had_id)
        return true;
    if (strncmp(path, "_id", 3) == 0 && (path[3] == '\0' || path[3] == '.')) {
        bq_error_set(c->err, BQ_ERR_ImmutableField,
                     "Performing an update on the path '%s' would modify the immutable field "
                     "'_id'",
                     path);
        return false;
    }
    return true;
}

static bool rename_find_source(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t **parent,
                               size_t *pos);

/* Computes the value a creating leaf writes into a missing field. */
static bool leaf_new_value(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m, bool *noop)
{
    *noop = false;
    switch (n->op) {
    case BQ__U_SET:
    case BQ__U_SETONINSERT:
    case BQ__U_MIN:
    case BQ__U_MAX:
    case BQ__U_INC:
        bq__mn_set(m, &n->arg);
        return true;
    case BQ__U_MUL: {
        bson_value_t zero = {.value_type = BSON_TYPE_INT32}, r;
        if (!bq_num_mul(&n->arg, &zero, &r, c->err))
            return false;
        bq__mn_set(m, &r);
        return true;
    }
    case BQ__U_CURRENTDATE: {
        bson_value_t v = {0};
        int64_t ms = now_ms(c);
        if (n->ts) {
            v.value_type = BSON_TYPE_TIMESTAMP;
            v.value.v_timestamp.timestamp = (uint32_t)(ms / 1000);
            v.value.v_timestamp.increment = 1;
        } else {
            v.value_type = BSON_TYPE_DATE_TIME;
            v.value.v_datetime = ms;
        }
        bq__mn_set(m, &v);
        return true;
    }
    case BQ__U_PUSH:
    case BQ__U_ADDTOSET:
    case BQ__U_BIT:
        return bq__upd_apply_array_op(c, n, m, true, noop);
    case BQ__U_RENAME: {
        bq__mnode_t *sp;
        size_t spos;
        if (!rename_find_source(c, n, &sp, &spos))
            return false;
        if (!sp) {
            *noop = true;
            return true;
        }
        if (!immutable_check(c, n->from))
            return false;
        bq__mnode_t *moved = bq__mn_detach(sp, spos);
        /* move the source's contents into the fresh node m */
        bq__mn_clear_kids(m);
        m->val = moved->val;
        m->expanded = moved->expanded;
        m->kids = moved->kids;
        m->n = moved->n;
        m->cap = moved->cap;
        moved->kids = NULL;
        moved->n = moved->cap = 0;
        bq__mn_free(moved);
        return true;
    }
    default:
        *noop = true;
        return true;
    }
}

static bool op_creates(enum bq__uop op)
{
    switch (op) {
    case BQ__U_UNSET:
    case BQ__U_POP:
    case BQ__U_PULL:
    case BQ__U_PULLALL:
    case BQ__U_RENAME_SRC:
        return false;
    default:
        return true;
    }
}

static bool subtree_creates(const bq__unode_t *n, const bq__uctx_t *c)
{
    if (n->op != BQ__U_INNER) {
        if (n->op == BQ__U_SETONINSERT && !c->opts.is_upsert_insert)
            return false;
        return op_creates(n->op);
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (subtree_creates(n->kids[i], c))
            return true;
    return false;
}

/* Finds the rename source (plain path, no arrays) in the document; NULL if missing.
 * *parent and *pos locate it. Fails on a path through an array. */
static bool rename_find_source(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t **parent,
                               size_t *pos)
{
    bq__mnode_t *cur = c->root;
    const char *p = n->from;
    *parent = NULL;
    for (;;) {
        const char *dot = strchr(p, '.');
        char comp[256];
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len >= sizeof comp)
            len = sizeof comp - 1;
        memcpy(comp, p, len);
        comp[len] = '\0';
        if (cur->val.value_type == BSON_TYPE_ARRAY) {
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "The source field cannot be an array element, '%s' in doc with %s",
                         n->from, "an array on its path");
            return false;
        }
        if (cur->val.value_type != BSON_TYPE_DOCUMENT)
            return true;
        bq__mn_expand(cur);
        ssize_t i = bq__mn_find(cur, comp);
        if (i < 0)
            return true;
        if (!dot) {
            if (cur->val.value_type == BSON_TYPE_ARRAY) {
                bq_error_set(c->err, BQ_ERR_BadValue,
                             "The source field cannot be an array element, '%s'", n->from);
                return false;
            }
            *parent = cur;
            *pos = (size_t)i;
            return true;
        }
        cur = cur->kids[i];
        p = dot + 1;
    }
}

/* Applies leaf n to the existing node m (child `pos` of `parent`). */
static bool leaf_apply_existing(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *parent,
                                size_t pos, bq__mnode_t *m, const char *path)
{
    char vb[256], idb[300];
    bool noop = false;
    bq__mnode_t tmp;
    switch (n->op) {
    case BQ__U_SETONINSERT:
        if (!c->opts.is_upsert_insert)
            return true;
        /* fall through */
    case BQ__U_SET:
        if (node_identical(m, &n->arg))
            return true;
        if (!immutable_check(c, path))
            return false;
        bq__mn_set(m, &n->arg);
        return true;
    case BQ__U_UNSET:
        if (!immutable_check(c, path))
            return false;
        if (parent->val.value_type == BSON_TYPE_ARRAY) {
            bson_value_t null = {.value_type = BSON_TYPE_NULL};
            bq__mn_set(m, &null);
        } else {
            bq__mn_free(bq__mn_detach(parent, pos));
        }
        return true;
    case BQ__U_INC:
    case BQ__U_MUL: {
        if (m->expanded || !bq_num_is_number(&m->val)) {
            bq__upd_fmt_id(c, idb, sizeof idb);
            bq_error_set(c->err, BQ_ERR_TypeMismatch,
                         "Cannot apply %s to a value of non-numeric type. %s has the field "
                         "'%s' of non-numeric type %s",
                         n->op == BQ__U_INC ? "$inc" : "$mul", idb,
                         m->key ? m->key : n->name, bq_type_name(m->val.value_type));
            return false;
        }
        bson_value_t r;
        bool ok = n->op == BQ__U_INC ? bq_num_add(&m->val, &n->arg, &r, c->err)
                                     : bq_num_mul(&m->val, &n->arg, &r, c->err);
        if (!ok)
            return false;
        bool ints = (m->val.value_type == BSON_TYPE_INT32 ||
                     m->val.value_type == BSON_TYPE_INT64) &&
                    (n->arg.value_type == BSON_TYPE_INT32 ||
                     n->arg.value_type == BSON_TYPE_INT64);
        if (ints && r.value_type == BSON_TYPE_DOUBLE) {
            /* int64 overflow: mongod's SafeNum has no wider integer and refuses */
            bq__upd_fmt_id(c, idb, sizeof idb);
            bq__upd_fmt_value(&m->val, vb, sizeof vb);
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "Failed to apply %s operations to current value (%s%s) for document "
                         "%s",
                         n->op == BQ__U_INC ? "$inc" : "$mul",
                         m->val.value_type == BSON_TYPE_INT64 ? "(NumberLong)" : "(NumberInt)",
                         vb, idb);
            return false;
        }
        if (value_identical(&r, &m->val))
            return true;
        if (!immutable_check(c, path))
            return false;
        bq__mn_set(m, &r);
        return true;
    }
    case BQ__U_MIN:
    case BQ__U_MAX: {
        bson_t scratch;
        bson_value_t cur;
        bq__mn_value(m, &scratch, &cur);
        int cmp = bq_value_compare(&n->arg, &cur);
        bson_destroy(&scratch);
        if ((n->op == BQ__U_MIN && cmp >= 0) || (n->op == BQ__U_MAX && cmp <= 0))
            return true;
        if (!immutable_check(c, path))
            return false;
        bq__mn_set(m, &n->arg);
        return true;
    }
    case BQ__U_CURRENTDATE:
        if (!immutable_check(c, path))
            return false;
        memset(&tmp, 0, sizeof tmp);
        if (!leaf_new_value(c, n, &tmp, &noop))
            return false;
        bq__mn_set(m, &tmp.val);
        return true;
    case BQ__U_RENAME_SRC:
        return true;
    case BQ__U_RENAME: {
        bq__mnode_t *sp;
        size_t spos;
        if (!rename_find_source(c, n, &sp, &spos))
            return false;
        if (!sp)
            return true;
        if (parent->val.value_type == BSON_TYPE_ARRAY) {
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "The destination field cannot be an array element, '%s' in doc "
                         "with an array on its path",
                         n->path);
            return false;
        }
        if (!immutable_check(c, n->from) || !immutable_check(c, path))
            return false;
        bq__mnode_t *moved = bq__mn_detach(sp, spos);
        /* the detach may have shifted our own position when both share a parent */
        if (sp == parent && spos < pos)
            pos--;
        bson_free(moved->key);
        moved->key = bson_strdup(parent->kids[pos]->key);
        bq__mn_free(parent->kids[pos]);
        parent->kids[pos] = moved;
        return true;
    }
    default:
        (void)vb;
        return bq__upd_apply_array_op(c, n, m, false, &noop);
    }
}

/* ---------------------------------------------------------------- apply: the walk */

static bool walk(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *target, const char *path,
                 bool created);

static bool parse_index(const char *s, size_t *out)
{
    if (!is_digits(s) || strlen(s) > 9)
        return false;
    *out = (size_t)strtoul(s, NULL, 10);
    return true;
}

static char *join_path(const char *a, const char *b)
{
    return a[0] ? bson_strdup_printf("%s.%s", a, b) : bson_strdup(b);
}

/* Applies kid to element `pos` of target (existing). */
static bool apply_to_existing(bq__uctx_t *c, const bq__unode_t *kid, bq__mnode_t *target,
                              size_t pos, const char *kpath)
{
    bq__mnode_t *m = target->kids[pos];
    if (kid->op != BQ__U_INNER)
        return leaf_apply_existing(c, kid, target, pos, m, kpath);
    if (bq__mn_is_container(m)) {
        bq__mn_expand(m);
        return walk(c, kid, m, kpath, false);
    }
    /* a scalar on the way: only non-creating operators may pass (as no-ops) */
    if (!subtree_creates(kid, c))
        return true;
    const bq__unode_t *next = kid->kids[0];
    char eb[400];
    bq__upd_fmt_node(m, m->key ? m->key : kid->name, eb, sizeof eb);
    if (next->comp == BQ__C_ALL || next->comp == BQ__C_FILTER) {
        bq_error_set(c->err, BQ_ERR_BadValue,
                     "Cannot apply array updates to non-array element %s", eb);
        return false;
    }
    if (next->comp == BQ__C_POSITIONAL && c->opts.positional_index < 0) {
        bq_error_set(c->err, BQ_ERR_BadValue,
                     "The positional operator did not find the match needed from the query.");
        return false;
    }
    char ibuf[24];
    snprintf(ibuf, sizeof ibuf, "%lld", (long long)c->opts.positional_index);
    bq_error_set(c->err, BQ_ERR_PathNotViable, "Cannot create field '%s' in element %s",
                 next->comp == BQ__C_POSITIONAL ? ibuf : next->name, eb);
    return false;
}

/* Applies kid to a missing field `name` of target (a document or an array). */
static bool apply_to_missing(bq__uctx_t *c, const bq__unode_t *kid, bq__mnode_t *target,
                             const char *name, const char *kpath)
{
    if (!subtree_creates(kid, c))
        return true;
    bool arr = target->val.value_type == BSON_TYPE_ARRAY;
    size_t idx = 0;
    if (arr && !parse_index(name, &idx)) {
        char eb[400];
        bq__upd_fmt_node(target, target->key ? target->key : "", eb, sizeof eb);
        bq_error_set(c->err, BQ_ERR_PathNotViable, "Cannot create field '%s' in element %s",
                     name, eb);
        return false;
    }
    bq__mnode_t *m;
    bool noop = false;
    if (kid->op != BQ__U_INNER) {
        m = bq__mn_new(arr ? NULL : name, NULL);
        if (!leaf_new_value(c, kid, m, &noop)) {
            bq__mn_free(m);
            return false;
        }
    } else {
        m = bq__mn_new_container(arr ? NULL : name, BSON_TYPE_DOCUMENT);
        if (!walk(c, kid, m, kpath, true)) {
            bq__mn_free(m);
            return false;
        }
        noop = m->n == 0;
    }
    if (noop) {
        bq__mn_free(m);
        return true;
    }
    if (arr) {
        bson_value_t null = {.value_type = BSON_TYPE_NULL};
        while (target->n < idx)
            bq__mn_insert(target, target->n, bq__mn_new(NULL, &null));
    }
    bq__mn_insert(target, target->n, m);
    return true;
}

static bool array_kid_applies(bq__uctx_t *c, const bq__unode_t *kid, bq__mnode_t *elem)
{
    if (kid->comp == BQ__C_ALL)
        return true;
    const bq__afilter_t *f = &c->u->filters[kid->filter];
    bson_t wrap = BSON_INITIALIZER, scratch;
    bson_value_t v;
    bq__mn_value(elem, &scratch, &v);
    bson_append_value(&wrap, f->ident, -1, &v);
    bool r = bq_match_eval(f->match, &wrap);
    bson_destroy(&wrap);
    bson_destroy(&scratch);
    return r;
}

static void merged_free(bq__unode_t *n)
{
    if (!n || !n->merged)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        merged_free(n->kids[i]);
    bson_free(n->kids);
    bson_free(n);
}

/* Merges inner nodes a and b that reach the same element (as mongod merges "a.0.x" and
 * "a.$[].y"): the union of their children, sorted; a name both end on is a conflict. */
static bq__unode_t *merge_nodes(bq__uctx_t *c, const bq__unode_t *a, const bq__unode_t *b,
                                const char *path)
{
    bq__unode_t *m = bson_malloc0(sizeof *m);
    m->merged = true;
    m->name = a->name;
    m->kids = bson_malloc0(sizeof *m->kids * (a->nkids + b->nkids + 1));
    for (size_t i = 0; i < a->nkids; i++)
        m->kids[m->nkids++] = a->kids[i];
    for (size_t j = 0; j < b->nkids; j++) {
        bq__unode_t *bk = b->kids[j];
        size_t i;
        for (i = 0; i < m->nkids; i++)
            if (strcmp(m->kids[i]->name, bk->name) == 0)
                break;
        if (i == m->nkids) {
            m->kids[m->nkids++] = bk;
            continue;
        }
        char *kpath = join_path(path, bk->name);
        bq__unode_t *mk = NULL;
        if (m->kids[i]->op == BQ__U_INNER && bk->op == BQ__U_INNER)
            mk = merge_nodes(c, m->kids[i], bk, kpath);
        else
            bq_error_set(c->err, BQ_ERR_ConflictingUpdateOperators,
                         "Update created a conflict at '%s'", kpath);
        bson_free(kpath);
        if (!mk) {
            merged_free(m);
            return NULL;
        }
        merged_free(m->kids[i]);
        m->kids[i] = mk;
    }
    qsort(m->kids, m->nkids, sizeof *m->kids, unode_order);
    return m;
}

static bool walk_kid(bq__uctx_t *c, const bq__unode_t *kid, bq__mnode_t *target,
                     const char *path, bool created);

/* Applies the children of n to an array: every existing element gets the children that
 * reach it (merged when several do), in index order; then missing indexes are created. */
static bool walk_array(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *target,
                       const char *path)
{
    size_t len = target->n;
    /* reach[i * nkids + k]: kid k reaches element i */
    bool *reach = bson_malloc0(sizeof *reach * (len * n->nkids + 1));
    bool ok = true;
    for (size_t k = 0; ok && k < n->nkids; k++) {
        const bq__unode_t *kid = n->kids[k];
        if (kid->comp == BQ__C_ALL || kid->comp == BQ__C_FILTER) {
            for (size_t i = 0; i < len; i++)
                reach[i * n->nkids + k] = array_kid_applies(c, kid, target->kids[i]);
            continue;
        }
        size_t idx;
        if (kid->comp == BQ__C_POSITIONAL) {
            if (c->opts.positional_index < 0) {
                bq_error_set(c->err, BQ_ERR_BadValue,
                             "The positional operator did not find the match needed from the "
                             "query.");
                ok = false;
                break;
            }
            idx = (size_t)c->opts.positional_index;
        } else if (!parse_index(kid->name, &idx)) {
            idx = SIZE_MAX;
        }
        if (idx < len)
            reach[idx * n->nkids + k] = true;
    }
    for (size_t i = 0; ok && i < len; i++) {
        const bq__unode_t *one = NULL;
        bq__unode_t *merged = NULL;
        size_t count = 0;
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        char *kpath = join_path(path, idx);
        for (size_t k = 0; ok && k < n->nkids; k++) {
            if (!reach[i * n->nkids + k])
                continue;
            const bq__unode_t *kid = n->kids[k];
            if (count++ == 0) {
                one = kid;
                continue;
            }
            if (one->op != BQ__U_INNER || kid->op != BQ__U_INNER) {
                bq_error_set(c->err, BQ_ERR_ConflictingUpdateOperators,
                             "Update created a conflict at '%s'", kpath);
                ok = false;
                break;
            }
            bq__unode_t *m = merge_nodes(c, one, kid, kpath);
            merged_free(merged);
            merged = m;
            one = m;
            ok = m != NULL;
        }
        if (ok && one)
            ok = apply_to_existing(c, one, target, i, kpath);
        merged_free(merged);
        bson_free(kpath);
    }
    bson_free(reach);
    /* fields past the end (a.5 of a 2-element array) or not indexes (a.b): create */
    for (size_t k = 0; ok && k < n->nkids; k++) {
        const bq__unode_t *kid = n->kids[k];
        size_t idx;
        if (kid->comp != BQ__C_FIELD || (parse_index(kid->name, &idx) && idx < len))
            continue;
        ok = walk_kid(c, kid, target, path, false);
    }
    return ok;
}

static bool walk_kid(bq__uctx_t *c, const bq__unode_t *kid, bq__mnode_t *target,
                     const char *path, bool created)
{
    bool arr = target->val.value_type == BSON_TYPE_ARRAY;
    const char *name = kid->name;
    char ibuf[24];
    if (kid->comp == BQ__C_POSITIONAL) {
        if (c->opts.positional_index < 0 || !arr) {
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "The positional operator did not find the match needed from the "
                         "query.");
            return false;
        }
        snprintf(ibuf, sizeof ibuf, "%lld", (long long)c->opts.positional_index);
        name = ibuf;
    }
    if (kid->comp == BQ__C_ALL || kid->comp == BQ__C_FILTER) {
        if (created) {
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "The path '%s' must exist in the document in order to apply array "
                         "updates.",
                         path);
            return false;
        }
        if (!arr) {
            char eb[400];
            bq__upd_fmt_node(target, target->key ? target->key : path, eb, sizeof eb);
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "Cannot apply array updates to non-array element %s", eb);
            return false;
        }
        for (size_t i = 0; i < target->n; i++) {
            if (!array_kid_applies(c, kid, target->kids[i]))
                continue;
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            char *kpath = join_path(path, idx);
            bool ok = apply_to_existing(c, kid, target, i, kpath);
            bson_free(kpath);
            if (!ok)
                return false;
        }
        return true;
    }
    char *kpath = join_path(path, name);
    bool ok;
    if (arr) {
        size_t idx;
        if (parse_index(name, &idx) && idx < target->n)
            ok = apply_to_existing(c, kid, target, idx, kpath);
        else
            ok = apply_to_missing(c, kid, target, name, kpath);
    } else {
        ssize_t i = bq__mn_find(target, name);
        ok = i >= 0 ? apply_to_existing(c, kid, target, (size_t)i, kpath)
                    : apply_to_missing(c, kid, target, name, kpath);
    }
    bson_free(kpath);
    return ok;
}

static bool walk(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *target, const char *path,
                 bool created)
{
    if (target->val.value_type == BSON_TYPE_ARRAY && !created)
        return walk_array(c, n, target, path);
    bool ok = true;
    for (size_t k = 0; ok && k < n->nkids; k++)
        ok = walk_kid(c, n->kids[k], target, path, created);
    return ok;
}

/* ---------------------------------------------------------------- apply */

static bool apply_replacement(const bq_update_t *u, const bson_t *doc, bson_t *out,
                              bq_error_t *err)
{
    bson_iter_t old_id, new_id;
    bool had = bson_iter_init_find(&old_id, doc, "_id");
    bool has = bson_iter_init_find(&new_id, u->repl, "_id");
    if (had && has && !bq_value_equal(bson_iter_value(&old_id), bson_iter_value(&new_id))) {
        char vb[256];
        bq__upd_fmt_value(bson_iter_value(&new_id), vb, sizeof vb);
        bq_error_set(err, BQ_ERR_ImmutableField,
                     "After applying the update, the (immutable) field '_id' was found to "
                     "have been altered to _id: %s",
                     vb);
        return false;
    }
    if (had && !has)
        bson_append_value(out, "_id", 3, bson_iter_value(&old_id));
    bson_iter_t it;
    bson_iter_init(&it, u->repl);
    while (bson_iter_next(&it))
        bson_append_value(out, bson_iter_key(&it), -1, bson_iter_value(&it));
    return true;
}

bool bq_update_apply_ex(const bq_update_t *u, const bson_t *doc, const bq_update_opts_t *opts,
                        bson_t *out, bool *changed, bq_error_t *err)
{
    bson_init(out);
    if (changed)
        *changed = false;
    bq_update_opts_t o = {.positional_index = -1};
    if (opts)
        o = *opts;
    if (!o.has_positional)
        o.positional_index = -1;
    if (u->replacement) {
        if (!apply_replacement(u, doc, out, err)) {
            bson_reinit(out);
            return false;
        }
    } else {
        bq__uctx_t c = {.u = u, .opts = o, .doc = doc, .err = err};
        bson_iter_t it;
        c.had_id = bson_iter_init_find(&it, doc, "_id");
        bson_value_t dv = {.value_type = BSON_TYPE_DOCUMENT};
        dv.value.v_doc.data = (uint8_t *)bson_get_data(doc);
        dv.value.v_doc.data_len = doc->len;
        c.root = bq__mn_new(NULL, &dv);
        bq__mn_expand(c.root);
        bool ok = walk(&c, u->root, c.root, "", false);
        if (ok) {
            if (o.is_upsert_insert) {
                ssize_t i = bq__mn_find(c.root, "_id");
                if (i > 0)
                    bq__mn_insert(c.root, 0, bq__mn_detach(c.root, (size_t)i));
            }
            for (size_t i = 0; i < c.root->n; i++)
                bq__mn_build(c.root->kids[i], out, c.root->kids[i]->key);
        }
        bq__mn_free(c.root);
        if (!ok) {
            bson_reinit(out);
            return false;
        }
    }
    if (changed)
        *changed = out->len != doc->len ||
                   memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
    return true;
}

bool bq_update_apply(const bq_update_t *u, const bson_t *doc, bool is_upsert_insert,
                     bson_t *out, bool *changed, bq_error_t *err)
{
    bq_update_opts_t o = {.is_upsert_insert = is_upsert_insert, .positional_index = -1};
    return bq_update_apply_ex(u, doc, &o, out, changed, err);
}
