/*
 * bq_path.c: dotted paths ("a.b.0.c") resolved the way MongoDB's query matcher resolves
 * them.
 *
 * Owns the walk that reports every value a path reaches, with MongoDB's array rules:
 * an array in the middle of a path fans out over its documents, a numeric component both
 * indexes an array and names fields called "0", "1" ... in its documents, a leaf array is
 * reported element by element and then whole (when the caller asks), and a path that
 * cannot be followed reports "missing" so that {a: null} and $exists can see it.
 * Nothing is copied: every reported value borrows from the walked document.
 */
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

typedef struct comp {
    const char *s;
    size_t len;
    bool numeric;
} comp_t;

typedef struct walk {
    comp_t *comps;
    int ncomps;
    int flags;
    bq_path_cb cb;
    void *ctx;
} walk_t;

static bool emit(walk_t *w, const bson_value_t *v, bool in_array)
{
    bq_path_hit_t hit = {.value = v, .in_array = in_array};
    return w->cb(w->ctx, &hit);
}

/* A value at the end of the path. */
static bool emit_leaf(walk_t *w, const bson_value_t *v, bool in_array)
{
    if (v->value_type == BSON_TYPE_ARRAY && (w->flags & BQ_PATH_EXPAND_LEAF_ARRAYS)) {
        bson_iter_t it;
        if (bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
            while (bson_iter_next(&it))
                if (emit(w, bson_iter_value(&it), true))
                    return true;
        }
    }
    return emit(w, v, in_array);
}

static bool walk_array(walk_t *w, const bson_value_t *arr, int idx, bool in_array);

static bool key_is(const bson_iter_t *it, const comp_t *c)
{
    const char *k = bson_iter_key(it);
    return strlen(k) == c->len && memcmp(k, c->s, c->len) == 0;
}

/* Follows component idx inside a document (or an array seen as a document). */
static bool walk_container(walk_t *w, const bson_value_t *cont, int idx, bool in_array)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, cont->value.v_doc.data, cont->value.v_doc.data_len))
        return emit(w, NULL, in_array);
    bool found = false;
    while (bson_iter_next(&it)) {
        if (key_is(&it, &w->comps[idx])) {
            found = true;
            break;
        }
    }
    if (!found)
        return emit(w, NULL, in_array);
    const bson_value_t *v = bson_iter_value(&it);
    if (idx == w->ncomps - 1)
        return emit_leaf(w, v, in_array);
    if (v->value_type == BSON_TYPE_DOCUMENT)
        return walk_container(w, v, idx + 1, in_array);
    if (v->value_type == BSON_TYPE_ARRAY)
        return walk_array(w, v, idx + 1, in_array);
    return emit(w, NULL, in_array);
}

/* An array met with components idx.. still to follow. */
static bool walk_array(walk_t *w, const bson_value_t *arr, int idx, bool in_array)
{
    const comp_t *c = &w->comps[idx];
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len))
        return false;
    while (bson_iter_next(&it)) {
        const bson_value_t *el = bson_iter_value(&it);
        if (c->numeric && key_is(&it, c)) {
            /* Explicit index: not an implicit traversal. */
            bool stop;
            if (idx == w->ncomps - 1)
                stop = emit_leaf(w, el, in_array);
            else if (el->value_type == BSON_TYPE_DOCUMENT || el->value_type == BSON_TYPE_ARRAY)
                stop = walk_container(w, el, idx + 1, in_array);
            else
                stop = emit(w, NULL, in_array);
            if (stop)
                return true;
            el = bson_iter_value(&it);
        }
        if (el->value_type == BSON_TYPE_DOCUMENT && walk_container(w, el, idx, true))
            return true;
    }
    return false;
}

/* Splits path into components, in `stack` when they fit (most paths), else on the heap. */
static int split(const char *path, comp_t *stack, int nstack, comp_t **out)
{
    int n = 1;
    for (const char *p = path; *p; p++)
        n += *p == '.';
    comp_t *c = n <= nstack ? stack : malloc(sizeof *c * (size_t)n);
    if (!c)
        return -1;
    const char *s = path;
    for (int i = 0; i < n; i++) {
        const char *e = strchr(s, '.');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        c[i].s = s;
        c[i].len = len;
        c[i].numeric = len > 0;
        for (size_t j = 0; j < len; j++)
            if (s[j] < '0' || s[j] > '9')
                c[i].numeric = false;
        s = e ? e + 1 : s + len;
    }
    *out = c;
    return n;
}

bool bq_path_walk_value(const bson_value_t *root, const char *path, int flags,
                        bq_path_cb cb, void *ctx)
{
    comp_t stack[16];
    walk_t w = {.flags = flags, .cb = cb, .ctx = ctx};
    w.ncomps = split(path, stack, 16, &w.comps);
    if (w.ncomps < 0)
        return false;
    bool stop;
    if (root->value_type == BSON_TYPE_DOCUMENT || root->value_type == BSON_TYPE_ARRAY)
        stop = walk_container(&w, root, 0, false);
    else
        stop = emit(&w, NULL, false);
    if (w.comps != stack)
        free(w.comps);
    return stop;
}

bool bq_path_walk(const bson_t *doc, const char *path, int flags, bq_path_cb cb, void *ctx)
{
    bson_value_t root;
    root.value_type = BSON_TYPE_DOCUMENT;
    root.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    root.value.v_doc.data_len = doc->len;
    return bq_path_walk_value(&root, path, flags, cb, ctx);
}

bool bq_path_get(const bson_t *doc, const char *path, bson_value_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return false;
    const char *s = path;
    for (;;) {
        const char *e = strchr(s, '.');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        bool found = false;
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strlen(k) == len && memcmp(k, s, len) == 0) {
                found = true;
                break;
            }
        }
        if (!found)
            return false;
        if (!e) {
            *out = *bson_iter_value(&it);
            return true;
        }
        bson_type_t t = bson_iter_type(&it);
        if (t != BSON_TYPE_DOCUMENT && t != BSON_TYPE_ARRAY)
            return false;
        bson_iter_t child;
        if (!bson_iter_recurse(&it, &child))
            return false;
        it = child;
        s = e + 1;
    }
}
