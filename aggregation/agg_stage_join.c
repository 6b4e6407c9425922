/*
 * agg_stage_join.c: the join family of pipeline stages (see agg_pipeline.h): $lookup,
 * $graphLookup and $unionWith, which read other collections through run->source, and the
 * table entries of $out and $merge (parsed in agg_merge.c, written by the caller).
 *
 * What the stages do, as MongoDB 7.0 has them:
 *
 *   $lookup {from, localField, foreignField, as}
 *          Every value at localField (arrays contribute their elements; a missing path
 *          means null) is looked up as {foreignField: {$eq: value}} in `from`, with query
 *          semantics: a foreign array matches on any element, null matches null and missing.
 *          Matches come in the foreign collection's natural order, each once.
 *   $lookup {from, let, pipeline, as}
 *          The sub-pipeline runs once per input document, its `let` variables (evaluated
 *          against the input document) visible as $$name; `from` may be omitted when the
 *          pipeline starts with $documents.
 *   $lookup {from, localField, foreignField, let, pipeline, as}   (5.0+)
 *          The equality match runs first (after a leading $documents), then the pipeline.
 *   $graphLookup  breadth-first search from startWith along connectFromField ->
 *          connectToField, each foreign document visited once (by _id), optional
 *          maxDepth, depthField (a long) and restrictSearchWithMatch. The order of the `as`
 *          array is not specified by MongoDB; ours is the visiting order (by depth, then
 *          natural order).
 *   $unionWith "coll" | {coll, pipeline}   the input, then the other collection's documents
 *          through the pipeline; {pipeline} alone must start with $documents.
 *
 * Reading. Everything goes through run->source->scan with a filter document the server can
 * answer from its _id index when it is an _id equality. The equality form of $lookup and
 * $graphLookup first try to load the foreign collection once per run of the stage into a
 * hash table keyed by bq_key (foreign_index_t below); when the collection is larger than
 * the memory limit they fall back to one filtered scan per input document (per BFS level).
 * A $lookup on foreignField "_id" always scans per document: the _id index answers it.
 *
 * Collation. The aggregate's collation (agg_parse_t.collation) is the collation of every
 * comparison of these stages, as in mongod, whatever the foreign collection's own default:
 * the foreign matches ($lookup's localField/foreignField equality, $graphLookup's
 * connectFromField/connectToField equality and restrictSearchWithMatch) are compiled with
 * it, the hash table's keys are bq_key_build_collated, and no filter document goes to the
 * source (its _id and secondary indexes compare bytewise), so under a collation a $lookup
 * on "_id" uses the hash table too. Sub-pipelines parse with the same agg_parse_t and so
 * get it as well. $graphLookup's visited set stays keyed by the binary _id.
 *
 * This file must not write anything: $out and $merge only parse here.
 */
#include <stdlib.h>
#include <string.h>

#include "agg_merge.h"
#include "agg_pipeline.h"
#include "bq_key.h"

/* mongod's internalLookupStageIntermediateDocumentMaxSizeBytes and
 * internalDocumentSourceGraphLookupMaxMemoryBytes. */
#define LOOKUP_MAX_BYTES (100 * 1024 * 1024)
#define GRAPH_MAX_BYTES (100 * 1024 * 1024)

/* ================================================================ small helpers */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* Checks a field path as mongod's FieldPath does. */
bool agg__join_path_check(const char *path, bq_error_t *err)
{
    if (!*path) {
        bq_error_set(err, 40352, "FieldPath cannot be constructed with empty string");
        return false;
    }
    if (path[0] == '$') {
        bq_error_set(err, 16410,
                     "FieldPath field names may not start with '$'. Consider using $getField "
                     "or $setField.");
        return false;
    }
    size_t n = strlen(path);
    if (path[n - 1] == '.') {
        bq_error_set(err, 40353, "FieldPath must not end with a '.'.");
        return false;
    }
    for (const char *p = path; *p; p++) {
        if (*p == '.' && (p == path || p[-1] == '.')) {
            bq_error_set(err, 15998, "FieldPath field names may not be empty strings.");
            return false;
        }
        if (*p == '.' && p[1] == '$') {
            bq_error_set(err, 16410,
                         "FieldPath field names may not start with '$'. Consider using "
                         "$getField or $setField.");
            return false;
        }
    }
    return true;
}

/* Appends to out the fields of src (NULL: none) with the dotted `path` set to v, as
 * mongod's setNestedField does: existing fields keep their place, a missing or non-document
 * field on the way is replaced by a document, new fields go last. */
static void set_path_into(bson_t *out, const bson_t *src, const char *path,
                          const bson_value_t *v)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    bool done = false;
    bson_iter_t it;
    if (src && bson_iter_init(&it, src)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            uint32_t klen = bson_iter_key_len(&it);
            if (klen != len || memcmp(k, path, len) != 0) {
                bson_append_iter(out, k, (int)klen, &it);
                continue;
            }
            if (done)
                continue;
            done = true;
            if (!dot) {
                agg_value_append(out, k, (int)klen, v);
                continue;
            }
            bson_t child, sub;
            bool has_sub = false;
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                uint32_t dlen;
                const uint8_t *data;
                bson_iter_document(&it, &dlen, &data);
                has_sub = bson_init_static(&sub, data, dlen);
            }
            bson_append_document_begin(out, k, (int)klen, &child);
            set_path_into(&child, has_sub ? &sub : NULL, dot + 1, v);
            bson_append_document_end(out, &child);
        }
    }
    if (done)
        return;
    if (!dot) {
        agg_value_append(out, path, (int)len, v);
        return;
    }
    bson_t child;
    bson_append_document_begin(out, path, (int)len, &child);
    set_path_into(&child, NULL, dot + 1, v);
    bson_append_document_end(out, &child);
}

/* A new heap document: doc with path set to v. */
bson_t *agg__join_doc_with_path(const bson_t *doc, const char *path, const bson_value_t *v)
{
    bson_t *out = bson_new();
    set_path_into(out, doc, path, v);
    return out;
}

/* ---------------------------------------------------------------- values at a path */

typedef void (*value_cb)(void *ctx, const bson_value_t *v);

static void visit_trailing(const bson_iter_t *it, value_cb cb, void *ctx)
{
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t sub;
        bson_iter_recurse(it, &sub);
        while (bson_iter_next(&sub))
            cb(ctx, bson_iter_value(&sub));
    } else {
        cb(ctx, bson_iter_value((bson_iter_t *)it));
    }
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Finds the field named s[0..n) in the document or array `it` recurses into. */
static bool find_child(const bson_iter_t *parent, const char *s, size_t n, bson_iter_t *out)
{
    if (!bson_iter_recurse(parent, out))
        return false;
    while (bson_iter_next(out))
        if (bson_iter_key_len(out) == n && memcmp(bson_iter_key(out), s, n) == 0)
            return true;
    return false;
}

/* The values at a dotted path of the document `it` points into, as mongod's
 * visitAllValuesAtPath yields them: the first component is a field name; consecutive
 * numeric components index into arrays; a trailing array yields its elements; arrays met
 * before the end fan out over their document elements; missing values yield nothing. */
static void visit_path_iter(const bson_iter_t *doc_it, const char *path, value_cb cb,
                            void *ctx)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    bson_iter_t cur;
    if (!find_child(doc_it, path, len, &cur))
        return;
    if (!dot) {
        visit_trailing(&cur, cb, ctx);
        return;
    }
    const char *rest = dot + 1;
    while (*rest && BSON_ITER_HOLDS_ARRAY(&cur)) {
        const char *d = strchr(rest, '.');
        size_t n = d ? (size_t)(d - rest) : strlen(rest);
        if (!all_digits(rest, n))
            break;
        bson_iter_t el;
        if (!find_child(&cur, rest, n, &el))
            return;
        cur = el;
        rest = d ? d + 1 : rest + n;
        if (!d) {
            visit_trailing(&cur, cb, ctx);
            return;
        }
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&cur)) {
        visit_path_iter(&cur, rest, cb, ctx);
    } else if (BSON_ITER_HOLDS_ARRAY(&cur)) {
        bson_iter_t el;
        bson_iter_recurse(&cur, &el);
        while (bson_iter_next(&el))
            if (BSON_ITER_HOLDS_DOCUMENT(&el))
                visit_path_iter(&el, rest, cb, ctx);
    }
}

static void visit_path(const bson_t *doc, const char *path, value_cb cb, void *ctx)
{
    /* A document iterator positioned on a fake field holding doc, so visit_path_iter can
     * recurse into it like into any sub-document. */
    bson_t wrap = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&wrap, "d", doc);
    bson_iter_t it;
    if (bson_iter_init_find(&it, &wrap, "d"))
        visit_path_iter(&it, path, cb, ctx);
    bson_destroy(&wrap);
}

/* A growable list of owned values. */
typedef struct value_list {
    bson_value_t *v;
    size_t n, cap;
    int64_t bytes;
} value_list_t;

static void value_list_add(void *ctx, const bson_value_t *v)
{
    value_list_t *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    agg_value_copy(v, &l->v[l->n++]);
    l->bytes += 16;
    if (v->value_type == BSON_TYPE_UTF8)
        l->bytes += v->value.v_utf8.len;
    else if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY)
        l->bytes += v->value.v_doc.data_len;
}

static void value_list_clear(value_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        agg_value_cleanup(&l->v[i]);
    l->n = 0;
    l->bytes = 0;
}

static void value_list_free(value_list_t *l)
{
    value_list_clear(l);
    free(l->v);
    l->v = NULL;
    l->cap = 0;
}

static bool is_nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED ||
           v->value_type == BSON_TYPE_EOD;
}

/* ---------------------------------------------------------------- index sets */

typedef struct idx_list {
    size_t *v;
    size_t n, cap;
} idx_list_t;

static void idx_add(idx_list_t *l, size_t i)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n++] = i;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts and removes duplicates (natural order, each document once). */
static void idx_sort_unique(idx_list_t *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp_size);
    size_t w = 1;
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i] != l->v[w - 1])
            l->v[w++] = l->v[i];
    l->n = w;
}

/* ---------------------------------------------------------------- a hash set of keys */

typedef struct key_entry {
    uint64_t hash;
    uint8_t *key;
    size_t len;
    idx_list_t ids;
    struct key_entry *next;
} key_entry_t;

typedef struct key_table {
    key_entry_t **buckets;
    size_t nbuckets, n;
} key_table_t;

static void key_table_init(key_table_t *t)
{
    t->nbuckets = 64;
    t->n = 0;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets)
        abort();
}

static void key_table_cleanup(key_table_t *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        key_entry_t *e = t->buckets ? t->buckets[i] : NULL;
        while (e) {
            key_entry_t *next = e->next;
            free(e->key);
            free(e->ids.v);
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->n = 0;
}

static key_entry_t *key_table_find(const key_table_t *t, const bq_key_t *k, uint64_t h)
{
    for (key_entry_t *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->len == k->len && memcmp(e->key, k->data, k->len) == 0)
            return e;
    return NULL;
}

/* Finds or adds the entry for key k; *added tells which. */
static key_entry_t *key_table_get(key_table_t *t, const bq_key_t *k, bool *added)
{
    uint64_t h = bq_key_hash(k->data, k->len);
    key_entry_t *e = key_table_find(t, k, h);
    *added = false;
    if (e)
        return e;
    if (t->n >= t->nbuckets) {
        size_t nb = t->nbuckets * 2;
        key_entry_t **b = calloc(nb, sizeof *b);
        if (!b)
            abort();
        for (size_t i = 0; i < t->nbuckets; i++) {
            key_entry_t *x = t->buckets[i];
            while (x) {
                key_entry_t *next = x->next;
                x->next = b[x->hash & (nb - 1)];
                b[x->hash & (nb - 1)] = x;
                x = next;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->key = malloc(k->len ? k->len : 1)))
        abort();
    memcpy(e->key, k->data, k->len);
    e->len = k->len;
    e->hash = h;
    e->next = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = e;
    t->n++;
    *added = true;
    return e;
}

/* ---------------------------------------------------------------- foreign index */

/* A foreign collection loaded in memory, indexed by the values at one path the way an
 * {path: {$eq: v}} query sees them (array elements and whole arrays), with the documents
 * matching the null query kept apart. */
typedef struct foreign_index {
    bson_t **docs;
    size_t n, cap;
    key_table_t keys;
    idx_list_t nulls;
    const bq_collation_t *collation; /* the keys' (borrowed from the stage), NULL: binary */
} foreign_index_t;

static void foreign_index_free(foreign_index_t *fi)
{
    if (!fi)
        return;
    for (size_t i = 0; i < fi->n; i++)
        bson_destroy(fi->docs[i]);
    free(fi->docs);
    key_table_cleanup(&fi->keys);
    free(fi->nulls.v);
    free(fi);
}

typedef struct index_walk {
    foreign_index_t *fi;
    size_t doc;
    bq_key_t key;
} index_walk_t;

static bool index_hit(void *ctx, const bq_path_hit_t *hit)
{
    index_walk_t *w = ctx;
    if (!hit->value || is_nullish(hit->value))
        return false;
    bq_key_build_collated(&w->key, hit->value, w->fi->collation);
    bool added;
    key_entry_t *e = key_table_get(&w->fi->keys, &w->key, &added);
    if (!e->ids.n || e->ids.v[e->ids.n - 1] != w->doc)
        idx_add(&e->ids, w->doc);
    return false;
}

/* Loads db.coll (documents passing `filter`, may be NULL) and indexes it by `path`, keys
 * compared by `collation` (NULL: binary; it must outlive the index); null_match decides
 * which documents a null value finds. Returns 1 with *out, 0 when the collection is larger
 * than `limit` bytes (the caller scans instead), -1 with err. */
static int foreign_index_build(agg_run_t *run, const char *db, const char *coll,
                               const bson_t *filter_doc, const bq_match_t *filter,
                               const char *path, const bq_match_t *null_match,
                               const bq_collation_t *collation, int64_t limit,
                               foreign_index_t **out, bq_error_t *err)
{
    *out = NULL;
    /* the source's indexes compare bytewise: under a collation it gets no filter document */
    agg_iter_t *it = run->source->scan(run->source->ctx, run, db, coll,
                                       collation ? NULL : filter_doc, filter, err);
    if (!it)
        return -1;
    foreign_index_t *fi = calloc(1, sizeof *fi);
    if (!fi)
        abort();
    fi->collation = collation;
    key_table_init(&fi->keys);
    int64_t bytes = 0;
    int r;
    bson_t *d;
    while ((r = agg_iter_next(it, &d, err)) > 0) {
        bytes += d->len + 64;
        if (bytes > limit) {
            bson_destroy(d);
            agg_iter_close(it);
            foreign_index_free(fi);
            return 0;
        }
        if (fi->n == fi->cap) {
            fi->cap = fi->cap ? fi->cap * 2 : 64;
            fi->docs = realloc(fi->docs, fi->cap * sizeof *fi->docs);
            if (!fi->docs)
                abort();
        }
        fi->docs[fi->n++] = d;
    }
    agg_iter_close(it);
    if (r < 0) {
        foreign_index_free(fi);
        return -1;
    }
    index_walk_t w = {.fi = fi};
    bq_key_init(&w.key);
    for (size_t i = 0; i < fi->n; i++) {
        w.doc = i;
        bq_path_walk(fi->docs[i], path, BQ_PATH_EXPAND_LEAF_ARRAYS, index_hit, &w);
        int m = bq_match_eval_env(null_match, fi->docs[i], &run->env, err);
        if (m < 0) {
            bq_key_cleanup(&w.key);
            foreign_index_free(fi);
            return -1;
        }
        if (m)
            idx_add(&fi->nulls, i);
    }
    bq_key_cleanup(&w.key);
    *out = fi;
    return 1;
}

/* Adds to ids the documents {path: {$eq: v}} finds. */
static void foreign_index_find(const foreign_index_t *fi, const bson_value_t *v,
                               bq_key_t *scratch, idx_list_t *ids)
{
    if (is_nullish(v)) {
        for (size_t i = 0; i < fi->nulls.n; i++)
            idx_add(ids, fi->nulls.v[i]);
        return;
    }
    bq_key_build_collated(scratch, v, fi->collation);
    key_entry_t *e = key_table_find(&fi->keys, scratch, bq_key_hash(scratch->data, scratch->len));
    for (size_t i = 0; e && i < e->ids.n; i++)
        idx_add(ids, e->ids.v[i]);
}

/* ---------------------------------------------------------------- equality filters */

static bool has_regex(const value_list_t *vals)
{
    for (size_t i = 0; i < vals->n; i++)
        if (vals->v[i].value_type == BSON_TYPE_REGEX)
            return true;
    return false;
}

static void append_eq(bson_t *b, const char *key, const char *path, const bson_value_t *v)
{
    bson_t clause, cmp;
    bson_append_document_begin(b, key, -1, &clause);
    bson_append_document_begin(&clause, path, -1, &cmp);
    if (v->value_type == BSON_TYPE_UNDEFINED)
        bson_append_null(&cmp, "$eq", 3);
    else
        bson_append_value(&cmp, "$eq", 3, v);
    bson_append_document_end(&clause, &cmp);
    bson_append_document_end(b, &clause);
}

/* Builds into f the filter mongod builds for a $lookup equality: {path: {$eq: v}} for one
 * value, {path: {$in: [...]}} for several, {$or: [{path: {$eq: v}}, ...]} when a regex is
 * among them (a regex inside $in would pattern-match). Undefined is looked up as null. */
static void build_eq_filter(bson_t *f, const char *path, const value_list_t *vals)
{
    if (vals->n == 1) {
        bson_t cmp;
        bson_append_document_begin(f, path, -1, &cmp);
        if (is_nullish(&vals->v[0]))
            bson_append_null(&cmp, "$eq", 3);
        else
            bson_append_value(&cmp, "$eq", 3, &vals->v[0]);
        bson_append_document_end(f, &cmp);
        return;
    }
    char buf[16];
    const char *k;
    if (has_regex(vals)) {
        bson_t arr;
        bson_append_array_begin(f, "$or", 3, &arr);
        for (size_t i = 0; i < vals->n; i++) {
            bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
            append_eq(&arr, k, path, &vals->v[i]);
        }
        bson_append_array_end(f, &arr);
        return;
    }
    bson_t cmp, arr;
    bson_append_document_begin(f, path, -1, &cmp);
    bson_append_array_begin(&cmp, "$in", 3, &arr);
    for (size_t i = 0; i < vals->n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        if (is_nullish(&vals->v[i]))
            bson_append_null(&arr, k, -1);
        else
            bson_append_value(&arr, k, -1, &vals->v[i]);
    }
    bson_append_array_end(&cmp, &arr);
    bson_append_document_end(f, &cmp);
}

/* Compiles a filter the stage built (no $expr in it) with the stage's collation. */
static bq_match_t *match_compile(const bson_t *filter, const bq_collation_t *collation,
                                 bq_error_t *err)
{
    bq_match_opts_t opts = {.collation = collation};
    return bq_match_compile_opts(filter, &opts, err);
}

/* An iterator that keeps the documents of its input matching a filter it owns. */
typedef struct filter_iter {
    agg_iter_t base;
    bq_match_t *m;
} filter_iter_t;

static int filter_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    filter_iter_t *f = (filter_iter_t *)it;
    for (;;) {
        bson_t *d;
        int r = agg_iter_next(it->input, &d, err);
        if (r <= 0)
            return r;
        int ok = bq_match_eval_env(f->m, d, &it->run->env, err);
        if (ok > 0) {
            *out = d;
            return 1;
        }
        bson_destroy(d);
        if (ok < 0)
            return -1;
    }
}

static void filter_close(agg_iter_t *it)
{
    filter_iter_t *f = (filter_iter_t *)it;
    agg_iter_close(it->input);
    bq_match_destroy(f->m);
    free(f);
}

static agg_iter_t *filter_iter_new(agg_iter_t *input, bq_match_t *m, agg_run_t *run)
{
    filter_iter_t *f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->base.next = filter_next;
    f->base.close = filter_close;
    f->base.input = input;
    f->base.run = run;
    f->m = m;
    return &f->base;
}

/* The array value of a document built with keys "0", "1", ... (borrowed from arr). */
static bson_value_t array_value(const bson_t *arr)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_ARRAY;
    v.value.v_doc.data = (uint8_t *)bson_get_data(arr);
    v.value.v_doc.data_len = arr->len;
    return v;
}

static void array_push_doc(bson_t *arr, uint32_t *n, const bson_t *doc)
{
    char buf[16];
    const char *k;
    bson_uint32_to_string((*n)++, &k, buf, sizeof buf);
    bson_append_document(arr, k, -1, doc);
}

/* Reads the stage's sub-pipeline spec: an array (14 otherwise, as mongod's
 * parsePipelineFromBSON). */
static bool pipeline_arg(const bson_iter_t *it, bson_t *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch, "'pipeline' option must be specified as an array");
        return false;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(it, &len, &data);
    return bson_init_static(out, data, len);
}

/* Name of the first stage of a pipeline array, or "". */
static const char *first_stage_name(const bson_t *pipeline)
{
    bson_iter_t it, st;
    if (bson_iter_init(&it, pipeline) && bson_iter_next(&it) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &st) && bson_iter_next(&st))
        return bson_iter_key(&st);
    return "";
}

/* A collection name for from / coll: mongod's NamespaceString validity, roughly. */
static bool coll_name_check(const char *stage, const char *name, bq_error_t *err)
{
    if (!*name || strchr(name, '$') || name[0] == '.') {
        bq_error_set(err, BQ_ERR_InvalidNamespace, "invalid %s namespace: test.%s", stage, name);
        return false;
    }
    return true;
}

/* Parses a sub-pipeline inside a $lookup/$unionWith and refuses $out/$merge in it. */
static agg_pipeline_t *parse_sub(const bson_t *pipeline, const agg_parse_t *pc,
                                 agg_scope_t *scope, const char *coll, int refuse_code,
                                 const char *stage, bq_error_t *err)
{
    agg_parse_t sub = *pc;
    sub.in_lookup = true;
    agg_pipeline_t *p = agg_pipeline_parse_sub(pipeline, &sub, scope, coll, err);
    if (p && agg_pipeline_out(p)) {
        bq_error_set(err, refuse_code, "%s is not allowed within a %s's sub-pipeline",
                     agg_pipeline_out(p)->merge ? "$merge" : "$out", stage);
        agg_pipeline_destroy(p);
        return NULL;
    }
    return p;
}

/* ================================================================ $lookup */

typedef struct lookup_state {
    char *from;             /* NULL: no collection ($documents pipeline) */
    char *as;
    char *local, *foreign;  /* both or neither */
    agg_scope_t *scope;     /* the sub-pipeline's, with the let names */
    int nlet;
    agg_expr_t **let_exprs;
    int *let_slots;
    agg_pipeline_t *head;   /* combined form with leading $documents: that stage */
    agg_pipeline_t *pipeline; /* the sub-pipeline (rest of it for the combined form) */
    bq_match_t *null_match; /* {foreign: {$eq: null}} for the index */
    bq_collation_t *collation; /* the aggregate's (a reference), NULL: binary */
} lookup_state_t;

static void lookup_free(void *state)
{
    lookup_state_t *s = state;
    if (!s)
        return;
    agg_pipeline_destroy(s->head);
    agg_pipeline_destroy(s->pipeline);
    for (int i = 0; i < s->nlet; i++)
        agg_expr_destroy(s->let_exprs[i]);
    free(s->let_exprs);
    free(s->let_slots);
    agg_scope_destroy(s->scope);
    bq_match_destroy(s->null_match);
    bq_collation_destroy(s->collation);
    free(s->from);
    free(s->as);
    free(s->local);
    free(s->foreign);
    free(s);
}

static bool lookup_parse_let(lookup_state_t *s, const bson_iter_t *it, agg_parse_t *pc,
                             bq_error_t *err)
{
    bson_iter_t lit;
    bson_iter_recurse(it, &lit);
    int n = 0;
    while (bson_iter_next(&lit))
        n++;
    s->let_exprs = calloc((size_t)n + 1, sizeof *s->let_exprs);
    s->let_slots = calloc((size_t)n + 1, sizeof *s->let_slots);
    if (!s->let_exprs || !s->let_slots)
        abort();
    bson_iter_recurse(it, &lit);
    while (bson_iter_next(&lit)) {
        const char *name = bson_iter_key(&lit);
        if (!agg_var_name_check(name, err))
            return false;
        agg_expr_t *e = agg_expr_compile(bson_iter_value(&lit), pc->scope, err);
        if (!e)
            return false;
        s->let_exprs[s->nlet] = e;
        s->let_slots[s->nlet++] = agg_scope_define(s->scope, name);
    }
    return true;
}

static bool lookup_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                         bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "the $lookup specification must be an Object");
        return false;
    }
    lookup_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->collation = bq_collation_ref(pc->collation);
    bson_t pipeline = BSON_INITIALIZER;
    bool has_pipeline = false, has_let = false, has_from = false;
    bson_iter_t it, let_it;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "pipeline")) {
            ok = pipeline_arg(&it, &pipeline, err);
            has_pipeline = true;
        } else if (!strcmp(k, "let")) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$lookup argument 'let' must be an object, is type %s",
                             bq_type_name(bson_iter_type(&it)));
                ok = false;
            }
            let_it = it;
            has_let = true;
        } else if (!strcmp(k, "from")) {
            has_from = true;
            if (BSON_ITER_HOLDS_UTF8(&it)) {
                free(s->from);
                s->from = xstrdup(bson_iter_utf8(&it, NULL));
            } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$lookup with syntax {from: {db:<>, coll:<>},..} is not supported "
                             "for this namespace");
                ok = false;
            } else {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "$lookup 'from' field must be a string, but found %s",
                             bq_type_name(bson_iter_type(&it)));
                ok = false;
            }
        } else if (!strcmp(k, "_internalCollation")) {
            continue;
        } else if (!BSON_ITER_HOLDS_UTF8(&it)) {
            bq_error_set(err, BQ_ERR_FailedToParse, "$lookup argument '%s' must be a string, "
                         "found %s", k, bq_type_name(bson_iter_type(&it)));
            ok = false;
        } else {
            char **dst = !strcmp(k, "as")             ? &s->as
                         : !strcmp(k, "localField")   ? &s->local
                         : !strcmp(k, "foreignField") ? &s->foreign
                                                      : NULL;
            if (!dst) {
                bq_error_set(err, BQ_ERR_FailedToParse, "unknown argument to $lookup: %s", k);
                ok = false;
            } else {
                free(*dst);
                *dst = xstrdup(bson_iter_utf8(&it, NULL));
                if (!**dst) { /* mongod treats "" as not given */
                    free(*dst);
                    *dst = NULL;
                }
            }
        }
    }
    if (ok && !has_from) {
        if (!has_pipeline) {
            bq_error_set(err, BQ_ERR_FailedToParse, "must specify 'pipeline' when 'from' is empty");
            ok = false;
        } else if (strcmp(first_stage_name(&pipeline), "$documents") != 0) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$lookup stage without explicit collection must have a pipeline with "
                         "$documents as first stage");
            ok = false;
        }
    }
    if (ok && s->from)
        ok = coll_name_check("$lookup", s->from, err);
    if (ok && !s->as) {
        bq_error_set(err, BQ_ERR_FailedToParse, "must specify 'as' field for a $lookup");
        ok = false;
    }
    if (ok && has_pipeline && (s->local || s->foreign) && !(s->local && s->foreign)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$lookup requires both or neither of 'localField' and 'foreignField' to "
                     "be specified");
        ok = false;
    }
    if (ok && !has_pipeline && !(s->local && s->foreign)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$lookup requires either 'pipeline' or both 'localField' and "
                     "'foreignField' to be specified");
        ok = false;
    }
    if (ok && !has_pipeline && has_let) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$lookup with a 'let' argument must also specify 'pipeline'");
        ok = false;
    }
    ok = ok && agg__join_path_check(s->as, err);
    ok = ok && (!s->local || agg__join_path_check(s->local, err));
    ok = ok && (!s->foreign || agg__join_path_check(s->foreign, err));
    if (ok && has_pipeline) {
        s->scope = agg_scope_new(pc->scope);
        if (has_let)
            ok = lookup_parse_let(s, &let_it, pc, err);
        if (ok && s->local && !strcmp(first_stage_name(&pipeline), "$documents")) {
            /* combined form after $documents: parse that stage alone, then the rest */
            bson_t head = BSON_INITIALIZER, tail = BSON_INITIALIZER;
            bson_iter_t pit;
            bson_iter_init(&pit, &pipeline);
            for (int i = 0; bson_iter_next(&pit); i++) {
                char buf[16];
                const char *key;
                bson_uint32_to_string((uint32_t)(i ? i - 1 : 0), &key, buf, sizeof buf);
                bson_append_iter(i ? &tail : &head, key, -1, &pit);
            }
            s->head = parse_sub(&head, pc, s->scope, NULL, 51047, "$lookup", err);
            s->pipeline = s->head ? parse_sub(&tail, pc, s->scope, NULL, 51047, "$lookup", err)
                                  : NULL;
            ok = s->head && s->pipeline;
            bson_destroy(&head);
            bson_destroy(&tail);
        } else if (ok) {
            s->pipeline = parse_sub(&pipeline, pc, s->scope, s->from, 51047, "$lookup", err);
            ok = s->pipeline != NULL;
        }
    }
    if (ok && s->foreign) {
        bson_t nf = BSON_INITIALIZER, cmp;
        bson_append_document_begin(&nf, s->foreign, -1, &cmp);
        bson_append_null(&cmp, "$eq", 3);
        bson_append_document_end(&nf, &cmp);
        s->null_match = match_compile(&nf, s->collation, err);
        bson_destroy(&nf);
        ok = s->null_match != NULL;
    }
    if (!ok) {
        lookup_free(s);
        return false;
    }
    *state = s;
    return true;
}

typedef struct lookup_iter {
    agg_iter_t base;
    const lookup_state_t *s;
    agg_run_t sub;           /* the sub-pipeline's run (let values) */
    foreign_index_t *index;  /* equality form, when the foreign collection fit */
    bool index_tried;
    bq_key_t key;
    value_list_t vals;
} lookup_iter_t;

/* Equality form: appends the matching foreign documents to arr. */
static bool lookup_equality(lookup_iter_t *li, const bson_t *doc, bson_t *arr, uint32_t *n,
                            int64_t *bytes, bq_error_t *err)
{
    const lookup_state_t *s = li->s;
    agg_run_t *run = li->base.run;
    value_list_clear(&li->vals);
    visit_path(doc, s->local, value_list_add, &li->vals);
    if (li->vals.n == 0) {
        bson_value_t null = {.value_type = BSON_TYPE_NULL};
        value_list_add(&li->vals, &null);
    }
    /* on "_id" the source's _id index answers each value, unless a collation rules it out */
    if (!li->index_tried && (strcmp(s->foreign, "_id") != 0 || s->collation)) {
        li->index_tried = true;
        int64_t limit = run->memory_limit < AGG_MEMORY_LIMIT ? run->memory_limit
                                                              : AGG_MEMORY_LIMIT;
        if (foreign_index_build(run, run->db, s->from, NULL, NULL, s->foreign, s->null_match,
                                s->collation, limit, &li->index, err) < 0)
            return false;
    }
    if (li->index) {
        idx_list_t ids = {0};
        for (size_t i = 0; i < li->vals.n; i++)
            foreign_index_find(li->index, &li->vals.v[i], &li->key, &ids);
        idx_sort_unique(&ids);
        bool ok = true;
        for (size_t i = 0; ok && i < ids.n; i++) {
            const bson_t *d = li->index->docs[ids.v[i]];
            *bytes += d->len;
            if (*bytes > LOOKUP_MAX_BYTES) {
                bq_error_set(err, 4568,
                             "Total size of documents in %s matching pipeline's $lookup stage "
                             "exceeds %d bytes", s->from, LOOKUP_MAX_BYTES);
                ok = false;
            } else {
                array_push_doc(arr, n, d);
            }
        }
        free(ids.v);
        return ok;
    }
    bson_t filter = BSON_INITIALIZER;
    build_eq_filter(&filter, s->foreign, &li->vals);
    bq_match_t *m = match_compile(&filter, s->collation, err);
    agg_iter_t *it = m ? run->source->scan(run->source->ctx, run, run->db, s->from,
                                           s->collation ? NULL : &filter, m, err)
                       : NULL;
    bool ok = it != NULL;
    bson_t *d;
    int r = 0;
    while (ok && (r = agg_iter_next(it, &d, err)) > 0) {
        *bytes += d->len;
        if (*bytes > LOOKUP_MAX_BYTES) {
            bq_error_set(err, 4568,
                         "Total size of documents in %s matching pipeline's $lookup stage "
                         "exceeds %d bytes", s->from, LOOKUP_MAX_BYTES);
            ok = false;
        } else {
            array_push_doc(arr, n, d);
        }
        bson_destroy(d);
    }
    if (r < 0)
        ok = false;
    agg_iter_close(it);
    bq_match_destroy(m);
    bson_destroy(&filter);
    return ok;
}

/* Pipeline forms: runs the sub-pipeline for doc, appending its output to arr. */
static bool lookup_pipeline(lookup_iter_t *li, const bson_t *doc, bson_t *arr, uint32_t *n,
                            int64_t *bytes, bq_error_t *err)
{
    const lookup_state_t *s = li->s;
    agg_run_t *run = li->base.run;
    agg_env_set_root(&run->env, doc);
    for (int i = 0; i < s->nlet; i++) {
        bson_value_t v;
        if (!agg_expr_eval(s->let_exprs[i], &run->env, &v, err)) {
            agg_value_cleanup(&v);
            return false;
        }
        agg_env_set_var(&li->sub.env, s->let_slots[i], &v);
        agg_value_cleanup(&v);
    }
    agg_iter_t *it = NULL;
    if (s->local) {
        value_list_clear(&li->vals);
        visit_path(doc, s->local, value_list_add, &li->vals);
        if (li->vals.n == 0) {
            bson_value_t null = {.value_type = BSON_TYPE_NULL};
            value_list_add(&li->vals, &null);
        }
        bson_t filter = BSON_INITIALIZER;
        build_eq_filter(&filter, s->foreign, &li->vals);
        bq_match_t *m = match_compile(&filter, s->collation, err);
        if (m && s->head) {
            agg_iter_t *base = agg_pipeline_open(s->head, NULL, &li->sub, err);
            if (base)
                base = filter_iter_new(base, m, &li->sub);
            else
                bq_match_destroy(m);
            it = base ? agg_pipeline_open(s->pipeline, base, &li->sub, err) : NULL;
        } else if (m) {
            agg_iter_t *base = run->source->scan(run->source->ctx, &li->sub, run->db, s->from,
                                                 s->collation ? NULL : &filter, m, err);
            /* the matcher must live as long as the scan: hand it to a filter iterator */
            base = base ? filter_iter_new(base, m, &li->sub) : NULL;
            if (!base)
                bq_match_destroy(m);
            it = base ? agg_pipeline_open(s->pipeline, base, &li->sub, err) : NULL;
        }
        bson_destroy(&filter);
    } else {
        it = agg_pipeline_open(s->pipeline, NULL, &li->sub, err);
    }
    if (!it)
        return false;
    bson_t *d;
    int r;
    bool ok = true;
    while ((r = agg_iter_next(it, &d, err)) > 0) {
        *bytes += d->len;
        if (*bytes > LOOKUP_MAX_BYTES) {
            bq_error_set(err, 4568,
                         "Total size of documents in %s matching pipeline's $lookup stage "
                         "exceeds %d bytes", s->from ? s->from : "$documents", LOOKUP_MAX_BYTES);
            bson_destroy(d);
            ok = false;
            break;
        }
        array_push_doc(arr, n, d);
        bson_destroy(d);
    }
    if (r < 0)
        ok = false;
    agg_iter_close(it);
    return ok;
}

static int lookup_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    lookup_iter_t *li = (lookup_iter_t *)it;
    bson_t *doc;
    int r = agg_iter_next(it->input, &doc, err);
    if (r <= 0)
        return r;
    if (agg_run_expired(it->run, err)) {
        bson_destroy(doc);
        return -1;
    }
    bson_t arr = BSON_INITIALIZER;
    uint32_t n = 0;
    int64_t bytes = 0;
    bool ok = li->s->pipeline ? lookup_pipeline(li, doc, &arr, &n, &bytes, err)
                              : lookup_equality(li, doc, &arr, &n, &bytes, err);
    if (ok) {
        bson_value_t av = array_value(&arr);
        *out = agg__join_doc_with_path(doc, li->s->as, &av);
    }
    bson_destroy(&arr);
    bson_destroy(doc);
    return ok ? 1 : -1;
}

static void lookup_close(agg_iter_t *it)
{
    lookup_iter_t *li = (lookup_iter_t *)it;
    agg_iter_close(it->input);
    foreign_index_free(li->index);
    bq_key_cleanup(&li->key);
    value_list_free(&li->vals);
    agg_run_cleanup(&li->sub);
    free(li);
}

static agg_iter_t *lookup_open(const void *state, agg_iter_t *input, agg_run_t *run,
                               bq_error_t *err)
{
    const lookup_state_t *s = state;
    if (!run->source || !run->source->scan) {
        if (s->from) {
            agg_iter_close(input);
            bq_error_set(err, BQ_ERR_NotImplemented, "$lookup needs a collection source");
            return NULL;
        }
    }
    lookup_iter_t *li = calloc(1, sizeof *li);
    if (!li)
        abort();
    li->base.next = lookup_next;
    li->base.close = lookup_close;
    li->base.input = input;
    li->base.run = run;
    li->s = s;
    bq_key_init(&li->key);
    agg_run_init_sub(&li->sub, run);
    return &li->base;
}

/* ================================================================ $graphLookup */

typedef struct graph_state {
    char *from, *as, *from_field, *to_field, *depth_field;
    agg_expr_t *start_with;
    int64_t max_depth;       /* -1: none */
    bson_t *restrict_doc;
    bq_match_t *restrict_m;
    bq_match_t *null_match;  /* what a null frontier value finds */
    bq_collation_t *collation; /* the aggregate's (a reference), NULL: binary */
} graph_state_t;

static void graph_free(void *state)
{
    graph_state_t *s = state;
    if (!s)
        return;
    free(s->from);
    free(s->as);
    free(s->from_field);
    free(s->to_field);
    free(s->depth_field);
    agg_expr_destroy(s->start_with);
    if (s->restrict_doc)
        bson_destroy(s->restrict_doc);
    bq_match_destroy(s->restrict_m);
    bq_match_destroy(s->null_match);
    bq_collation_destroy(s->collation);
    free(s);
}

/* The clause a null frontier value becomes: {$and: [{f: {$eq: null}}, {f: {$exists:
 * true}}, {f: {$not: {$type: "undefined"}}}]} (mongod never connects to a missing field). */
static void append_null_clause(bson_t *b, const char *key, const char *f)
{
    bson_t and_doc, arr, c, op, notd;
    bson_append_document_begin(b, key, -1, &and_doc);
    bson_append_array_begin(&and_doc, "$and", 4, &arr);
    bson_append_document_begin(&arr, "0", 1, &c);
    bson_append_document_begin(&c, f, -1, &op);
    bson_append_null(&op, "$eq", 3);
    bson_append_document_end(&c, &op);
    bson_append_document_end(&arr, &c);
    bson_append_document_begin(&arr, "1", 1, &c);
    bson_append_document_begin(&c, f, -1, &op);
    bson_append_bool(&op, "$exists", 7, true);
    bson_append_document_end(&c, &op);
    bson_append_document_end(&arr, &c);
    bson_append_document_begin(&arr, "2", 1, &c);
    bson_append_document_begin(&c, f, -1, &op);
    bson_append_document_begin(&op, "$not", 4, &notd);
    bson_append_utf8(&notd, "$type", 5, "undefined", 9);
    bson_append_document_end(&op, &notd);
    bson_append_document_end(&c, &op);
    bson_append_document_end(&arr, &c);
    bson_append_array_end(&and_doc, &arr);
    bson_append_document_end(b, &and_doc);
}

static bool graph_string_arg(const bson_iter_t *it, const char *k, char **dst, bq_error_t *err)
{
    if (BSON_ITER_HOLDS_DOCUMENT(it) && strcmp(k, "from") != 0) {
        bq_error_set(err, 13111, "wrong type for field (%s) object != string", k);
        return false;
    }
    if (!BSON_ITER_HOLDS_UTF8(it) && !BSON_ITER_HOLDS_DOCUMENT(it)) {
        bq_error_set(err, 40103, "expected string as argument for %s, found: %s", k,
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$graphLookup with syntax {from: {db:<>, coll:<>},..} is not supported "
                     "for this namespace");
        return false;
    }
    free(*dst);
    *dst = xstrdup(bson_iter_utf8(it, NULL));
    return true;
}

static bool graph_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "the $graphLookup stage specification must be an object, but found %s",
                     bq_type_name(spec->value_type));
        return false;
    }
    graph_state_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->max_depth = -1;
    s->collation = bq_collation_ref(pc->collation);
    bson_iter_t it;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    bool ok = true, has_from = false;
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "startWith")) {
            agg_expr_destroy(s->start_with);
            ok = (s->start_with = agg_expr_compile(bson_iter_value(&it), pc->scope, err)) != NULL;
        } else if (!strcmp(k, "maxDepth")) {
            const bson_value_t *v = bson_iter_value(&it);
            int64_t d;
            bool exact;
            if (!bq_num_is_number(v)) {
                bq_error_set(err, 40100, "maxDepth must be numeric, found type: %s",
                             bq_type_name(v->value_type));
                ok = false;
            } else if (!bq_num_to_int64(v, &d, &exact)) {
                double x = 0;
                bq_num_to_double(v, &x);
                if (x < 0) {
                    bq_error_set(err, 40101, "maxDepth requires a nonnegative argument, "
                                             "found: %g", x);
                } else {
                    bq_error_set(err, 40102,
                                 "maxDepth could not be represented as a long long: %g", x);
                }
                ok = false;
            } else if (d < 0) {
                bq_error_set(err, 40101, "maxDepth requires a nonnegative argument, found: %lld",
                             (long long)d);
                ok = false;
            } else if (!exact) {
                bq_error_set(err, 40102, "maxDepth could not be represented as a long long: %lld",
                             (long long)d);
                ok = false;
            } else {
                s->max_depth = d;
            }
        } else if (!strcmp(k, "restrictSearchWithMatch")) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, 40185, "restrictSearchWithMatch must be an object, found %s",
                             bq_type_name(bson_iter_type(&it)));
                ok = false;
                break;
            }
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            if (s->restrict_doc)
                bson_destroy(s->restrict_doc);
            bq_match_destroy(s->restrict_m);
            s->restrict_doc = bson_new_from_data(data, len);
            bq_match_opts_t opts = {.expr_scope = pc->scope, .collation = s->collation};
            s->restrict_m = bq_match_compile_opts(s->restrict_doc, &opts, err);
            if (!s->restrict_m) {
                bq_error_prefix(err, "Failed to parse 'restrictSearchWithMatch' option to "
                                     "$graphLookup");
                ok = false;
            }
        } else if (!strcmp(k, "from")) {
            has_from = true;
            ok = graph_string_arg(&it, k, &s->from, err) &&
                 coll_name_check("$graphLookup", s->from, err);
        } else if (!strcmp(k, "as")) {
            ok = graph_string_arg(&it, k, &s->as, err);
        } else if (!strcmp(k, "connectFromField")) {
            ok = graph_string_arg(&it, k, &s->from_field, err);
        } else if (!strcmp(k, "connectToField")) {
            ok = graph_string_arg(&it, k, &s->to_field, err);
        } else if (!strcmp(k, "depthField")) {
            ok = graph_string_arg(&it, k, &s->depth_field, err) &&
                 agg__join_path_check(s->depth_field, err);
        } else {
            bq_error_set(err, 40104, "Unknown argument to $graphLookup: %s", k);
            ok = false;
        }
    }
    if (ok && !has_from) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "missing 'from' option to $graphLookup stage specification");
        ok = false;
    }
    if (ok && (!s->from || !s->as || !*s->as || !s->start_with || !s->from_field ||
               !*s->from_field || !s->to_field || !*s->to_field)) {
        bq_error_set(err, 40105, "$graphLookup requires 'from', 'as', 'startWith', "
                                 "'connectFromField', and 'connectToField' to be specified.");
        ok = false;
    }
    ok = ok && agg__join_path_check(s->as, err) && agg__join_path_check(s->from_field, err) &&
         agg__join_path_check(s->to_field, err);
    if (ok) {
        bson_t nf = BSON_INITIALIZER;
        bson_t wrap = BSON_INITIALIZER;
        append_null_clause(&wrap, "c", s->to_field);
        bson_iter_t w;
        bson_iter_init_find(&w, &wrap, "c");
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&w, &len, &data);
        bson_t inner;
        bson_init_static(&inner, data, len);
        bson_concat(&nf, &inner);
        s->null_match = match_compile(&nf, s->collation, err);
        ok = s->null_match != NULL;
        bson_destroy(&nf);
        bson_destroy(&wrap);
    }
    if (!ok) {
        graph_free(s);
        return false;
    }
    *state = s;
    return true;
}

typedef struct graph_iter {
    agg_iter_t base;
    const graph_state_t *s;
    foreign_index_t *index;
    bool index_tried;
    bq_key_t key;
} graph_iter_t;

/* The documents a frontier finds, in natural order, each once: from the index, or from a
 * scan with {$or: [{to: {$in: [...]}}, <null clause>]} and the restriction applied here. */
static bool graph_level(graph_iter_t *gi, const value_list_t *frontier, bson_t ***docs,
                        size_t *ndocs, bool *owned, bq_error_t *err)
{
    const graph_state_t *s = gi->s;
    agg_run_t *run = gi->base.run;
    *docs = NULL;
    *ndocs = 0;
    if (gi->index) {
        idx_list_t ids = {0};
        for (size_t i = 0; i < frontier->n; i++)
            if (frontier->v[i].value_type != BSON_TYPE_EOD)
                foreign_index_find(gi->index, &frontier->v[i], &gi->key, &ids);
        idx_sort_unique(&ids);
        *docs = calloc(ids.n + 1, sizeof **docs);
        if (!*docs)
            abort();
        for (size_t i = 0; i < ids.n; i++)
            (*docs)[i] = gi->index->docs[ids.v[i]];
        *ndocs = ids.n;
        *owned = false;
        free(ids.v);
        return true;
    }
    *owned = true;
    bson_t filter = BSON_INITIALIZER, or_arr, in_doc, in_arr;
    bool has_null = false;
    uint32_t nin = 0;
    bson_append_array_begin(&filter, "$or", 3, &or_arr);
    bson_append_document_begin(&or_arr, "0", 1, &in_doc);
    bson_t cmp;
    bson_append_document_begin(&in_doc, s->to_field, -1, &cmp);
    bson_append_array_begin(&cmp, "$in", 3, &in_arr);
    for (size_t i = 0; i < frontier->n; i++) {
        const bson_value_t *v = &frontier->v[i];
        if (v->value_type == BSON_TYPE_EOD)
            continue;
        /* nulls go through the null clause, regexes through $eq clauses (a regex inside
         * $in would pattern-match) */
        if (is_nullish(v)) {
            has_null = true;
            continue;
        }
        if (v->value_type == BSON_TYPE_REGEX)
            continue;
        char buf[16];
        const char *k;
        bson_uint32_to_string(nin++, &k, buf, sizeof buf);
        bson_append_value(&in_arr, k, -1, v);
    }
    bson_append_array_end(&cmp, &in_arr);
    bson_append_document_end(&in_doc, &cmp);
    bson_append_document_end(&or_arr, &in_doc);
    uint32_t nor = 1;
    for (size_t i = 0; i < frontier->n; i++) {
        if (frontier->v[i].value_type != BSON_TYPE_REGEX)
            continue;
        char buf[16];
        const char *k;
        bson_uint32_to_string(nor++, &k, buf, sizeof buf);
        append_eq(&or_arr, k, s->to_field, &frontier->v[i]);
    }
    if (has_null) {
        char buf[16];
        const char *k;
        bson_uint32_to_string(nor++, &k, buf, sizeof buf);
        append_null_clause(&or_arr, k, s->to_field);
    }
    bson_append_array_end(&filter, &or_arr);
    bq_match_t *m = match_compile(&filter, s->collation, err);
    agg_iter_t *it = m ? run->source->scan(run->source->ctx, run, run->db, s->from,
                                           s->collation ? NULL : &filter, m, err)
                       : NULL;
    bool ok = it != NULL;
    size_t cap = 0;
    bson_t *d;
    int r = 0;
    while (ok && (r = agg_iter_next(it, &d, err)) > 0) {
        int keep = s->restrict_m ? bq_match_eval_env(s->restrict_m, d, &run->env, err) : 1;
        if (keep <= 0) {
            bson_destroy(d);
            if (keep < 0)
                ok = false;
            continue;
        }
        if (*ndocs == cap) {
            cap = cap ? cap * 2 : 16;
            *docs = realloc(*docs, cap * sizeof **docs);
            if (!*docs)
                abort();
        }
        (*docs)[(*ndocs)++] = d;
    }
    if (r < 0)
        ok = false;
    agg_iter_close(it);
    bq_match_destroy(m);
    bson_destroy(&filter);
    return ok;
}

static void free_level(bson_t **docs, size_t n, bool owned)
{
    for (size_t i = 0; owned && i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
}

static bool graph_search(graph_iter_t *gi, const bson_t *input, bson_t *arr, bq_error_t *err)
{
    const graph_state_t *s = gi->s;
    agg_run_t *run = gi->base.run;
    if (!gi->index_tried) {
        gi->index_tried = true;
        if (foreign_index_build(run, run->db, s->from, s->restrict_doc, s->restrict_m,
                                s->to_field, s->null_match, s->collation, GRAPH_MAX_BYTES,
                                &gi->index, err) < 0)
            return false;
    }
    agg_env_set_root(&run->env, input);
    bson_value_t start;
    if (!agg_expr_eval(s->start_with, &run->env, &start, err)) {
        agg_value_cleanup(&start);
        return false;
    }
    value_list_t frontier = {0}, next = {0};
    if (start.value_type == BSON_TYPE_ARRAY) {
        bson_iter_t ai;
        bson_iter_init_from_data(&ai, start.value.v_doc.data, start.value.v_doc.data_len);
        while (bson_iter_next(&ai))
            value_list_add(&frontier, bson_iter_value(&ai));
    } else if (start.value_type != BSON_TYPE_EOD) {
        value_list_add(&frontier, &start);
    }
    agg_value_cleanup(&start);
    key_table_t visited;
    key_table_init(&visited);
    bq_key_t idkey;
    bq_key_init(&idkey);
    int64_t used = 0;
    uint32_t n = 0;
    bool ok = true;
    for (int64_t depth = 0; ok && frontier.n > 0; depth++) {
        if (agg_run_expired(run, err)) {
            ok = false;
            break;
        }
        bson_t **docs;
        size_t ndocs;
        bool owned;
        if (!graph_level(gi, &frontier, &docs, &ndocs, &owned, err)) {
            ok = false;
            break;
        }
        bool any_new = false;
        value_list_clear(&next);
        for (size_t i = 0; ok && i < ndocs; i++) {
            bson_iter_t idit;
            if (!bson_iter_init_find(&idit, docs[i], "_id")) {
                bq_error_set(err, 40271,
                             "Documents in the '%s.%s' namespace must contain an _id for "
                             "de-duplication in $graphLookup", run->db, s->from);
                ok = false;
                break;
            }
            bq_key_build(&idkey, bson_iter_value(&idit));
            bool added;
            key_table_get(&visited, &idkey, &added);
            if (!added)
                continue;
            any_new = true;
            bson_t *res;
            if (s->depth_field) {
                bson_value_t dv = {.value_type = BSON_TYPE_INT64};
                dv.value.v_int64 = depth;
                res = agg__join_doc_with_path(docs[i], s->depth_field, &dv);
            } else {
                res = bson_copy(docs[i]);
            }
            visit_path(res, s->from_field, value_list_add, &next);
            used += (int64_t)res->len + 32;
            if (used + next.bytes >= GRAPH_MAX_BYTES) {
                bq_error_set(err, 40099, "$graphLookup reached maximum memory consumption");
                ok = false;
            } else {
                array_push_doc(arr, &n, res);
            }
            bson_destroy(res);
        }
        free_level(docs, ndocs, owned);
        if (!any_new || (s->max_depth >= 0 && depth >= s->max_depth))
            break;
        value_list_t t = frontier;
        frontier = next;
        next = t;
    }
    value_list_free(&frontier);
    value_list_free(&next);
    key_table_cleanup(&visited);
    bq_key_cleanup(&idkey);
    return ok;
}

static int graph_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    graph_iter_t *gi = (graph_iter_t *)it;
    bson_t *doc;
    int r = agg_iter_next(it->input, &doc, err);
    if (r <= 0)
        return r;
    bson_t arr = BSON_INITIALIZER;
    bool ok = graph_search(gi, doc, &arr, err);
    if (ok) {
        bson_value_t av = array_value(&arr);
        *out = agg__join_doc_with_path(doc, gi->s->as, &av);
    }
    bson_destroy(&arr);
    bson_destroy(doc);
    return ok ? 1 : -1;
}

static void graph_close(agg_iter_t *it)
{
    graph_iter_t *gi = (graph_iter_t *)it;
    agg_iter_close(it->input);
    foreign_index_free(gi->index);
    bq_key_cleanup(&gi->key);
    free(gi);
}

static agg_iter_t *graph_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    if (!run->source || !run->source->scan) {
        agg_iter_close(input);
        bq_error_set(err, BQ_ERR_NotImplemented, "$graphLookup needs a collection source");
        return NULL;
    }
    graph_iter_t *gi = calloc(1, sizeof *gi);
    if (!gi)
        abort();
    gi->base.next = graph_next;
    gi->base.close = graph_close;
    gi->base.input = input;
    gi->base.run = run;
    gi->s = state;
    bq_key_init(&gi->key);
    return &gi->base;
}

/* ================================================================ $unionWith */

typedef struct union_state {
    agg_pipeline_t *pipeline;
} union_state_t;

static void union_free(void *state)
{
    union_state_t *s = state;
    if (s)
        agg_pipeline_destroy(s->pipeline);
    free(s);
}

static bool union_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT && spec->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "the $unionWith stage specification must be an object or string, but "
                     "found %s", bq_type_name(spec->value_type));
        return false;
    }
    char *coll = NULL;
    bson_t pipeline = BSON_INITIALIZER;
    bool has_pipeline = false, ok = true;
    if (spec->value_type == BSON_TYPE_UTF8) {
        coll = xstrdup(spec->value.v_utf8.str);
    } else {
        bson_iter_t it;
        bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
        while (ok && bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (!strcmp(k, "coll")) {
                if (!BSON_ITER_HOLDS_UTF8(&it)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$unionWith.coll' is the wrong type '%s', expected "
                                 "type 'string'", bq_type_name(bson_iter_type(&it)));
                    ok = false;
                } else {
                    free(coll);
                    coll = xstrdup(bson_iter_utf8(&it, NULL));
                }
            } else if (!strcmp(k, "pipeline")) {
                if (!BSON_ITER_HOLDS_ARRAY(&it)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$unionWith.pipeline' is the wrong type '%s', "
                                 "expected type 'array'", bq_type_name(bson_iter_type(&it)));
                    ok = false;
                } else {
                    ok = pipeline_arg(&it, &pipeline, err);
                    has_pipeline = true;
                }
            } else {
                bq_error_set(err, BQ_ERR_IDLUnknownField,
                             "BSON field '$unionWith.%s' is an unknown field.", k);
                ok = false;
            }
        }
        if (ok && !coll &&
            (!has_pipeline || strcmp(first_stage_name(&pipeline), "$documents") != 0)) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$unionWith stage without explicit collection must have a pipeline "
                         "with $documents as first stage");
            ok = false;
        }
    }
    if (ok && coll)
        ok = coll_name_check("$unionWith", coll, err);
    union_state_t *s = NULL;
    if (ok) {
        s = calloc(1, sizeof *s);
        if (!s)
            abort();
        s->pipeline = parse_sub(&pipeline, pc, pc->scope, coll, 31441, "$unionWith", err);
        ok = s->pipeline != NULL;
    }
    free(coll);
    if (!ok) {
        union_free(s);
        return false;
    }
    *state = s;
    return true;
}

typedef struct union_iter {
    agg_iter_t base;
    const union_state_t *s;
    agg_run_t sub;
    agg_iter_t *other; /* the sub-pipeline, once the input is done */
    bool done;
} union_iter_t;

static int union_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    union_iter_t *ui = (union_iter_t *)it;
    if (ui->done)
        return 0;
    if (!ui->other) {
        int r = agg_iter_next(it->input, out, err);
        if (r != 0)
            return r;
        ui->other = agg_pipeline_open(ui->s->pipeline, NULL, &ui->sub, err);
        if (!ui->other)
            return -1;
    }
    int r = agg_iter_next(ui->other, out, err);
    if (r == 0)
        ui->done = true;
    return r;
}

static void union_close(agg_iter_t *it)
{
    union_iter_t *ui = (union_iter_t *)it;
    agg_iter_close(it->input);
    agg_iter_close(ui->other);
    agg_run_cleanup(&ui->sub);
    free(ui);
}

static agg_iter_t *union_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err)
{
    (void)err;
    union_iter_t *ui = calloc(1, sizeof *ui);
    if (!ui)
        abort();
    ui->base.next = union_next;
    ui->base.close = union_close;
    ui->base.input = input;
    ui->base.run = run;
    ui->s = state;
    agg_run_init_sub(&ui->sub, run);
    return &ui->base;
}

/* ================================================================ the table */

const agg_stage_kind_t agg__stages_join[] = {
    {"$lookup", 0, lookup_parse, lookup_open, lookup_free},
    {"$graphLookup", 0, graph_parse, graph_open, graph_free},
    {"$unionWith", 0, union_parse, union_open, union_free},
    {"$out", AGG_STAGE_LAST | AGG_STAGE_NO_FACET, agg__out_parse, NULL, agg__out_free},
    {"$merge", AGG_STAGE_LAST | AGG_STAGE_NO_FACET, agg__merge_parse, NULL, agg__merge_free},
    {NULL, 0, NULL, NULL, NULL},
};
