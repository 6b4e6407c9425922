/*
 * bq_sort.c: sort specifications and the comparator that orders documents by them
 * (bq_sort.h), with MongoDB's array rules: the sort key of a path is the smallest value
 * reached (ascending) or the largest (descending), a missing field counts as null and an
 * empty array sorts before null. Also a stable merge sort for callers that want one.
 *
 * This file owns only the sort order of whole documents; the order of two values is
 * bq_value_compare's (bq_compare.c). It never allocates per comparison except for the
 * merge sort's scratch array.
 */
#include <stdlib.h>
#include <string.h>

#include "bq.h"
#include "bq_sort.h"

typedef struct bq_sort_key {
    char *path;
    int dir;       /* 1 or -1 */
} bq_sort_key_t;

struct bq_sort {
    bq_sort_key_t *keys;
    size_t nkeys;
    int natural;   /* 0, or 1/-1 for {$natural: dir} */
    bq_collation_t *collation; /* a reference; NULL: binary string order */
};

void bq_sort_set_collation(bq_sort_t *s, const bq_collation_t *c)
{
    bq_collation_destroy(s->collation);
    s->collation = bq_collation_ref(c);
}

void bq_sort_destroy(bq_sort_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nkeys; i++)
        bson_free(s->keys[i].path);
    bson_free(s->keys);
    bq_collation_destroy(s->collation);
    bson_free(s);
}

/* Renders "a: <value>" the way mongod prints an element in 15974's message. */
static void sort_fmt_elem(const bson_iter_t *it, char *buf, size_t size)
{
    bson_t tmp = BSON_INITIALIZER;
    bson_append_value(&tmp, bson_iter_key(it), -1, bson_iter_value((bson_iter_t *)it));
    char *json = bson_as_relaxed_extended_json(&tmp, NULL);
    /* "{ "a" : "x" }" -> a: "x" */
    const char *colon = json ? strstr(json, " : ") : NULL;
    if (colon) {
        size_t vlen = strlen(colon + 3);
        if (vlen >= 2)
            vlen -= 2; /* drop the closing " }" */
        snprintf(buf, size, "%s: %.*s", bson_iter_key(it), (int)vlen, colon + 3);
    } else {
        snprintf(buf, size, "%s", bson_iter_key(it));
    }
    bson_free(json);
    bson_destroy(&tmp);
}

bq_sort_t *bq_sort_compile(const bson_t *sort, bq_error_t *err)
{
    bq_sort_t *s = bson_malloc0(sizeof *s);
    uint32_t count = sort ? bson_count_keys(sort) : 0;
    s->keys = bson_malloc0(sizeof *s->keys * (count ? count : 1));
    bson_iter_t it;
    if (!sort || !bson_iter_init(&it, sort))
        return s;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (key[0] == '\0') {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "FieldPath cannot be constructed with empty string");
            goto fail;
        }
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_t sub;
            bson_iter_recurse(&it, &sub);
            if (!bson_iter_next(&sub) || strcmp(bson_iter_key(&sub), "$meta") != 0) {
                bq_error_set(err, 17312, "$meta is the only expression supported by $sort "
                                         "right now");
                goto fail;
            }
            if (bson_iter_next(&sub)) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "Cannot have additional keys in a $meta sort specification");
                goto fail;
            }
            bq_error_set(err, BQ_ERR_NotImplemented,
                         "$meta sort (%s) is not supported yet", key);
            goto fail;
        }
        const bson_value_t *v = bson_iter_value(&it);
        double d = 0;
        if (!bq_num_to_double(v, &d)) {
            char buf[256];
            sort_fmt_elem(&it, buf, sizeof buf);
            bq_error_set(err, 15974, "Illegal key in $sort specification: %s", buf);
            goto fail;
        }
        if (d != 1.0 && d != -1.0) {
            bq_error_set(err, 15975,
                         "$sort key ordering must be 1 (for ascending) or -1 (for descending)");
            goto fail;
        }
        if (strcmp(key, "$natural") == 0) {
            s->natural = d > 0 ? 1 : -1;
            continue;
        }
        s->keys[s->nkeys].path = bson_strdup(key);
        s->keys[s->nkeys].dir = d > 0 ? 1 : -1;
        s->nkeys++;
    }
    return s;
fail:
    bq_sort_destroy(s);
    return NULL;
}

bool bq_sort_is_empty(const bq_sort_t *s)
{
    return s->nkeys == 0 && s->natural == 0;
}

bool bq_sort_is_natural(const bq_sort_t *s, int *dir)
{
    if (dir)
        *dir = s->natural;
    return s->natural != 0 && s->nkeys == 0;
}

/* ---------------------------------------------------------------- sort keys */

/* The running key of one path: the best value so far. */
typedef struct sort_acc {
    int dir;
    bool any;             /* a value (or null for a missing field) was seen */
    bool empty_array;     /* an empty array was seen */
    bson_value_t best;    /* borrowed */
} sort_acc_t;

static const bson_value_t sort_null = {.value_type = BSON_TYPE_NULL};

static void sort_acc_add(sort_acc_t *acc, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_UNDEFINED)
        v = &sort_null;
    if (!acc->any) {
        acc->best = *v;
        acc->any = true;
        return;
    }
    int c = bq_value_compare(v, &acc->best);
    if ((acc->dir > 0 && c < 0) || (acc->dir < 0 && c > 0))
        acc->best = *v;
}

static bool sort_is_index(const char *s, size_t len, uint32_t *idx)
{
    if (len == 0 || len > 9)
        return false;
    uint32_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        n = n * 10 + (uint32_t)(s[i] - '0');
    }
    if (len > 1 && s[0] == '0')
        return false;
    *idx = n;
    return true;
}

/* Walks the rest of a dotted path from v, adding what it reaches to acc (path NULL: v
 * itself; a leaf array adds its elements). */
static void sort_walk(sort_acc_t *acc, const bson_value_t *v, const char *path);

static void sort_walk_array(sort_acc_t *acc, const bson_value_t *arr, const char *path)
{
    bson_t a;
    bson_iter_t it;
    if (!bson_init_static(&a, arr->value.v_doc.data, arr->value.v_doc.data_len) ||
        !bson_iter_init(&it, &a))
        return;
    const char *dot = strchr(path, '.');
    size_t clen = dot ? (size_t)(dot - path) : strlen(path);
    uint32_t idx;
    if (sort_is_index(path, clen, &idx)) {
        /* a.0: the element at that index */
        char key[16];
        snprintf(key, sizeof key, "%u", idx);
        bson_iter_t e;
        if (bson_iter_init_find(&e, &a, key)) {
            if (dot)
                sort_walk(acc, bson_iter_value(&e), dot + 1);
            else
                sort_walk(acc, bson_iter_value(&e), NULL);
        } else {
            sort_acc_add(acc, &sort_null);
        }
        return;
    }
    bool seen = false;
    while (bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            sort_walk(acc, bson_iter_value(&it), path);
            seen = true;
        }
    }
    if (!seen)
        sort_acc_add(acc, &sort_null);
}

static void sort_walk(sort_acc_t *acc, const bson_value_t *v, const char *path)
{
    if (!path) {
        if (v->value_type == BSON_TYPE_ARRAY) {
            bson_t a;
            bson_iter_t it;
            bool any = false;
            if (bson_init_static(&a, v->value.v_doc.data, v->value.v_doc.data_len) &&
                bson_iter_init(&it, &a)) {
                while (bson_iter_next(&it)) {
                    sort_acc_add(acc, bson_iter_value(&it));
                    any = true;
                }
            }
            if (!any)
                acc->empty_array = true;
            return;
        }
        sort_acc_add(acc, v);
        return;
    }
    if (v->value_type == BSON_TYPE_ARRAY) {
        sort_walk_array(acc, v, path);
        return;
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        sort_acc_add(acc, &sort_null);
        return;
    }
    const char *dot = strchr(path, '.');
    size_t clen = dot ? (size_t)(dot - path) : strlen(path);
    bson_t d;
    bson_iter_t it;
    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        sort_acc_add(acc, &sort_null);
        return;
    }
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) == clen && memcmp(bson_iter_key(&it), path, clen) == 0) {
            sort_walk(acc, bson_iter_value(&it), dot ? dot + 1 : NULL);
            return;
        }
    }
    sort_acc_add(acc, &sort_null);
}

/* Compares the keys of one path: empty array < everything; otherwise the best values. */
static int sort_key_compare(const sort_acc_t *x, const sort_acc_t *y)
{
    bool xe = x->empty_array && !x->any, ye = y->empty_array && !y->any;
    if (xe || ye)
        return xe == ye ? 0 : (xe ? -1 : 1);
    const bson_value_t *a = x->any ? &x->best : &sort_null;
    const bson_value_t *b = y->any ? &y->best : &sort_null;
    return bq_value_compare(a, b);
}

int bq_sort_compare_values(const bq_sort_t *s, const bson_value_t *a, const bson_value_t *b)
{
    const bq_collation_t *prev = s->collation ? bq_collation_enter(s->collation) : NULL;
    int c = 0;
    for (size_t i = 0; i < s->nkeys && c == 0; i++) {
        sort_acc_t ka = {.dir = s->keys[i].dir}, kb = {.dir = s->keys[i].dir};
        sort_walk(&ka, a, s->keys[i].path);
        sort_walk(&kb, b, s->keys[i].path);
        c = sort_key_compare(&ka, &kb);
        if (s->keys[i].dir < 0)
            c = -c;
    }
    if (s->collation)
        bq_collation_leave(prev);
    return c;
}

static void sort_doc_value(const bson_t *d, bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_DOCUMENT;
    v->value.v_doc.data = (uint8_t *)bson_get_data(d);
    v->value.v_doc.data_len = d->len;
}

int bq_sort_compare(const bq_sort_t *s, const bson_t *a, const bson_t *b)
{
    bson_value_t va, vb;
    sort_doc_value(a, &va);
    sort_doc_value(b, &vb);
    return bq_sort_compare_values(s, &va, &vb);
}

bool bq_sort_docs(const bq_sort_t *s, const bson_t **docs, size_t n)
{
    if (n < 2 || s->nkeys == 0)
        return true;
    const bson_t **tmp = malloc(sizeof *tmp * n);
    if (!tmp)
        return false;
    /* bottom-up merge sort: runs of width w merged from docs into tmp, then swapped */
    const bson_t **src = docs, **dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n;
            size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = bq_sort_compare(s, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        const bson_t **t = src;
        src = dst;
        dst = t;
    }
    if (src != docs)
        memcpy(docs, src, sizeof *docs * n);
    free(tmp);
    return true;
}
