/*
 * bq_update_seed.c: what an update takes from its query (bq_update.h): the document an
 * upsert starts from (the filter's equality conditions as nested fields) and the array
 * index the positional operator "$" stands for (the first element satisfying the
 * filter's conditions on that array), shared with the positional projection.
 *
 * Both read only the top level of the filter and its $and clauses, as mongod does; the
 * matching itself is bq_match's (bq.h).
 */
#include <string.h>

#include "bq_update_int.h"

/* ---------------------------------------------------------------- positional index */

/* Adds the conditions of filter on paths at or below prefix to cond ($and searched). */
static void pos_collect(const bson_t *filter, const char *prefix, bson_t *cond, int depth)
{
    bson_iter_t it;
    size_t pl = strlen(prefix);
    if (depth > 100 || !bson_iter_init(&it, filter))
        return;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t a;
            bson_iter_recurse(&it, &a);
            while (bson_iter_next(&a)) {
                if (!BSON_ITER_HOLDS_DOCUMENT(&a))
                    continue;
                uint32_t len;
                const uint8_t *data;
                bson_t sub;
                bson_iter_document(&a, &len, &data);
                bson_init_static(&sub, data, len);
                pos_collect(&sub, prefix, cond, depth + 1);
            }
            continue;
        }
        if (strncmp(k, prefix, pl) == 0 && (k[pl] == '\0' || k[pl] == '.'))
            bson_append_value(cond, k, -1, bson_iter_value(&it));
    }
}

/* Appends {p1: {p2: ... {pn: [elem]}}} for the dotted path. */
static void pos_probe(bson_t *dst, const char *path, const bson_value_t *elem)
{
    const char *dot = strchr(path, '.');
    bson_t child;
    if (!dot) {
        bson_append_array_begin(dst, path, -1, &child);
        bson_append_value(&child, "0", 1, elem);
        bson_append_array_end(dst, &child);
        return;
    }
    bson_append_document_begin(dst, path, (int)(dot - path), &child);
    pos_probe(&child, dot + 1, elem);
    bson_append_document_end(dst, &child);
}

bool bq__positional_index(const bson_t *filter, const bson_t *doc, const char *path,
                          int64_t *index)
{
    *index = -1;
    bson_value_t arr;
    if (!path || !filter || !bq_path_get(doc, path, &arr) || arr.value_type != BSON_TYPE_ARRAY)
        return false;
    bson_t cond = BSON_INITIALIZER;
    pos_collect(filter, path, &cond, 0);
    bq_match_t *m = bson_empty(&cond) ? NULL : bq_match_compile(&cond, NULL);
    bson_destroy(&cond);
    if (!m)
        return false;
    bson_t a;
    bson_iter_t it;
    bson_init_static(&a, arr.value.v_doc.data, arr.value.v_doc.data_len);
    bson_iter_init(&it, &a);
    int64_t i = 0;
    bool found = false;
    while (!found && bson_iter_next(&it)) {
        bson_t probe = BSON_INITIALIZER;
        pos_probe(&probe, path, bson_iter_value(&it));
        if (bq_match_eval(m, &probe)) {
            *index = i;
            found = true;
        }
        bson_destroy(&probe);
        i++;
    }
    bq_match_destroy(m);
    return found;
}

bool bq_update_positional_index(const bq_update_t *u, const bson_t *filter, const bson_t *doc,
                                int64_t *index)
{
    return bq__positional_index(filter, doc, u->pos_path, index);
}

/* ---------------------------------------------------------------- upsert seed */

typedef struct seed_eq {
    const char *path;
    bson_value_t val; /* borrowed from the filter */
} seed_eq_t;

typedef struct seed {
    seed_eq_t *v;
    size_t n, cap;
} seed_t;

static void seed_add(seed_t *s, const char *path, const bson_value_t *v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = bson_realloc(s->v, sizeof *s->v * s->cap);
    }
    s->v[s->n].path = path;
    s->v[s->n].val = *v;
    s->n++;
}

static bool seed_collect(seed_t *s, const bson_t *filter, int depth, bq_error_t *err)
{
    bson_iter_t it;
    if (depth > 100 || !bson_iter_init(&it, filter))
        return true;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
                bson_iter_t a;
                bson_iter_recurse(&it, &a);
                while (bson_iter_next(&a)) {
                    if (!BSON_ITER_HOLDS_DOCUMENT(&a))
                        continue;
                    uint32_t len;
                    const uint8_t *data;
                    bson_t sub;
                    bson_iter_document(&a, &len, &data);
                    bson_init_static(&sub, data, len);
                    if (!seed_collect(s, &sub, depth + 1, err))
                        return false;
                }
            }
            continue;
        }
        if (BSON_ITER_HOLDS_REGEX(&it))
            continue;
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_t sub;
            bson_iter_recurse(&it, &sub);
            if (bson_iter_next(&sub) && bson_iter_key(&sub)[0] == '$') {
                /* operators: only $eq contributes */
                bson_iter_recurse(&it, &sub);
                while (bson_iter_next(&sub))
                    if (strcmp(bson_iter_key(&sub), "$eq") == 0)
                        seed_add(s, k, bson_iter_value(&sub));
                continue;
            }
        }
        seed_add(s, k, bson_iter_value(&it));
    }
    return true;
}

/* Builds the nested document for the collected paths into node m (prefix matched). */
static void seed_set(bq__mnode_t *root, const char *path, const bson_value_t *v)
{
    bq__mnode_t *cur = root;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        char *comp = dot ? bson_strndup(p, (size_t)(dot - p)) : bson_strdup(p);
        ssize_t i = bq__mn_find(cur, comp);
        if (!dot) {
            bq__mn_insert(cur, cur->n, bq__mn_new(comp, v));
            bson_free(comp);
            return;
        }
        if (i < 0) {
            bq__mn_insert(cur, cur->n, bq__mn_new_container(comp, BSON_TYPE_DOCUMENT));
            i = (ssize_t)cur->n - 1;
        }
        bson_free(comp);
        cur = cur->kids[i];
        p = dot + 1;
    }
}

bool bq_upsert_seed(const bson_t *filter, bson_t *out, bq_error_t *err)
{
    bson_init(out);
    seed_t s = {0};
    if (!seed_collect(&s, filter, 0, err)) {
        bson_free(s.v);
        return false;
    }
    /* two paths where one is (or is a prefix of) the other cannot both be set */
    for (size_t i = 0; i < s.n; i++) {
        for (size_t j = 0; j < i; j++) {
            const char *a = s.v[j].path, *b = s.v[i].path;
            size_t la = strlen(a), lb = strlen(b);
            if (la == lb && strcmp(a, b) == 0) {
                bq_error_set(err, BQ_ERR_NotSingleValueField,
                             "cannot infer query fields to set, path '%s' is matched twice", a);
                bson_free(s.v);
                return false;
            }
            size_t m = la < lb ? la : lb;
            if (strncmp(a, b, m) == 0 && (la < lb ? b[la] == '.' : a[lb] == '.')) {
                bq_error_set(err, BQ_ERR_NotSingleValueField,
                             "cannot infer query fields to set, both paths '%s' and '%s' are "
                             "matched",
                             b, a);
                bson_free(s.v);
                return false;
            }
        }
    }
    bq__mnode_t *root = bq__mn_new_container(NULL, BSON_TYPE_DOCUMENT);
    for (size_t i = 0; i < s.n; i++)
        if (strcmp(s.v[i].path, "_id") == 0)
            seed_set(root, s.v[i].path, &s.v[i].val);
    for (size_t i = 0; i < s.n; i++)
        if (strcmp(s.v[i].path, "_id") != 0)
            seed_set(root, s.v[i].path, &s.v[i].val);
    for (size_t i = 0; i < root->n; i++)
        bq__mn_build(root->kids[i], out, root->kids[i]->key);
    bq__mn_free(root);
    bson_free(s.v);
    return true;
}
