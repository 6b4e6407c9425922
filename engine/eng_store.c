/*
 * eng_store.c: the in-memory store: the catalog, each collection's documents as chains of
 * versions, the _id index, and eng__store_apply(), the one function that changes any of
 * them. Both the committer (eng_seq.c) and recovery (eng_db.c) apply ops through it, so a
 * replayed log rebuilds exactly the state the server had.
 *
 * Invariants:
 *   1. Only the committer thread (or the opener, before the committer starts) writes. Any
 *      thread reads, without locks, using a snapshot S <= the published committed seq.
 *   2. A version is visible at S when from <= S < to. The writer sets an old version's
 *      `to` and links a new version at the head before publishing a committed seq >= the
 *      new `from`, so a reader at S sees a consistent state whichever of the writer's
 *      stores it observes: any change it can observe has from or to > S.
 *   3. Nothing reachable by a reader is freed before eng_db_close: replaced index tables
 *      and catalog arrays are retired to a list and freed at close (the retired space is
 *      bounded by the size of the live structures, since they grow geometrically).
 *   4. Slots (one per document incarnation) are appended in insertion order to a chunked
 *      array whose chunks never move; `nslots` is published after the slot is complete.
 *      Re-inserting a deleted _id makes a new slot that links to the old one, so time
 *      travel by _id finds the older incarnation.
 *   5. Collections are incarnations too: drop sets `to`, create makes a new incarnation
 *      linked to older ones of the same namespace. A rename ends the old incarnation and
 *      starts one under the new name that shares the same documents (eng__docs), which is
 *      correct for every snapshot since versions written after the rename have larger
 *      seqs than the old incarnation's `to`.
 *   6. Old versions may be "not loaded" (DESIGN.md section 5): a checkpoint holds only the
 *      metadata of versions older than the newest of their slot, and its load makes them
 *      with `data` NULL and `deleted` false. The newest version of a slot is always loaded
 *      (or a tombstone), so the committer never reads the log. A reader that reaches a not
 *      loaded version reads the op at its `from` back from the log (hash-checked), checks
 *      that it is the insert or update of this _id with this length, and publishes a copy
 *      of its `o` by compare-and-swap on `data`; the loser frees its copy and uses the
 *      winner's. Published bodies are freed only at eng_db_close (invariant 3), so a
 *      pointer handed out stays valid. A read that cannot load a version fails with the
 *      error (eng_scan_error, eng_coll_find_id_checked): a document is never silently
 *      missing from a snapshot.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "eng_store.h"

/* ---- retired memory ---- */

void eng__retire(eng__store_t *st, void *p)
{
    eng__retired_t *r = malloc(sizeof *r);
    if (!r)
        abort();
    r->p = p;
    r->next = st->retired;
    st->retired = r;
}

/* ---- chunked append-only arrays ---- */

/* Chunk k holds ENG__CHUNK0 << k elements; element i lives in chunk k where
 * i / ENG__CHUNK0 + 1 is in [2^k, 2^(k+1)). */
static void chunk_locate(uint64_t i, unsigned *k, uint64_t *off)
{
    uint64_t j = i / ENG__CHUNK0 + 1;
    unsigned kk = 63u - (unsigned)__builtin_clzll(j);
    *k = kk;
    *off = i - ENG__CHUNK0 * ((1ull << kk) - 1);
}

uint64_t eng__vec_get(const eng__vec_t *v, uint64_t i)
{
    unsigned k;
    uint64_t off;
    chunk_locate(i, &k, &off);
    uint64_t *chunk = atomic_load_explicit(&v->chunks[k], memory_order_acquire);
    return chunk[off];
}

uint64_t eng__vec_len(const eng__vec_t *v)
{
    return atomic_load_explicit(&v->len, memory_order_acquire);
}

void eng__vec_push(eng__vec_t *v, uint64_t value)
{
    uint64_t i = atomic_load_explicit(&v->len, memory_order_relaxed);
    unsigned k;
    uint64_t off;
    chunk_locate(i, &k, &off);
    uint64_t *chunk = atomic_load_explicit(&v->chunks[k], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(ENG__CHUNK0 << k, sizeof *chunk);
        if (!chunk)
            abort();
        atomic_store_explicit(&v->chunks[k], chunk, memory_order_release);
    }
    chunk[off] = value;
    atomic_store_explicit(&v->len, i + 1, memory_order_release);
}

void eng__vec_free(eng__vec_t *v)
{
    for (unsigned k = 0; k < ENG__MAX_CHUNKS; k++)
        free(atomic_load(&v->chunks[k]));
}

/* ---- documents of a collection ---- */

static eng__docs_t *docs_new(void)
{
    eng__docs_t *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    eng__idtab_t *t = calloc(1, sizeof *t + 16 * sizeof(t->slots[0]));
    if (!t)
        abort();
    t->cap = 16;
    atomic_init(&d->idx, t);
    return d;
}

static void docs_free(eng__docs_t *d)
{
    uint64_t n = eng__vec_len(&d->slots);
    for (uint64_t i = 0; i < n; i++) {
        eng__slot_t *s = (eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, i);
        eng__version_t *v = atomic_load(&s->head);
        while (v) {
            eng__version_t *older = v->older;
            free((void *)atomic_load(&v->data));
            free(v);
            v = older;
        }
        free(s->key);
        free(s);
    }
    eng__vec_free(&d->slots);
    free(atomic_load(&d->idx));
    eng__index_t *ix = atomic_load(&d->indexes);
    while (ix) {
        eng__index_t *next = ix->next;
        eng__index_free(ix);
        ix = next;
    }
    free(d);
}

/* Finds the newest slot whose key is `key` (any incarnation state), or NULL. */
static eng__slot_t *idx_find(const eng__docs_t *d, const uint8_t *key, size_t len,
                             uint64_t hash)
{
    const eng__idtab_t *t = atomic_load_explicit(&d->idx, memory_order_acquire);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        eng__slot_t *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!s)
            return NULL;
        if (s->hash == hash && s->keylen == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

static void idx_put_raw(eng__idtab_t *t, eng__slot_t *slot)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)slot->hash & mask;; i = (i + 1) & mask) {
        eng__slot_t *s = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (!s) {
            atomic_store_explicit(&t->slots[i], slot, memory_order_release);
            return;
        }
        if (s->hash == slot->hash && s->keylen == slot->keylen &&
            memcmp(s->key, slot->key, slot->keylen) == 0) {
            /* a newer incarnation replaces the older one in the index */
            atomic_store_explicit(&t->slots[i], slot, memory_order_release);
            return;
        }
    }
}

/* Points the index at `slot` (newest incarnation of its key), growing the table first
 * when it is half full. */
static void idx_put(eng__store_t *st, eng__docs_t *d, eng__slot_t *slot)
{
    eng__idtab_t *t = atomic_load_explicit(&d->idx, memory_order_relaxed);
    if ((d->idx_used + 1) * 2 > t->cap) {
        size_t cap = t->cap * 2;
        eng__idtab_t *nt = calloc(1, sizeof *nt + cap * sizeof(nt->slots[0]));
        if (!nt)
            abort();
        nt->cap = cap;
        for (size_t i = 0; i < t->cap; i++) {
            eng__slot_t *s = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
            if (s)
                idx_put_raw(nt, s);
        }
        atomic_store_explicit(&d->idx, nt, memory_order_release);
        eng__retire(st, t);
        t = nt;
    }
    if (!slot->prev_incarnation)
        d->idx_used++;
    idx_put_raw(t, slot);
}

/* The version of a slot visible at snap, or NULL. */
static const eng__version_t *slot_visible(const eng__slot_t *s, int64_t snap)
{
    for (const eng__version_t *v = atomic_load_explicit(&s->head, memory_order_acquire); v;
         v = v->older) {
        if (v->from <= snap && snap < atomic_load_explicit(&v->to, memory_order_acquire))
            return v;
        if (v->from <= snap)
            return NULL; /* an older version cannot be visible if a newer one started */
    }
    return NULL;
}

const eng__version_t *eng__slot_visible(const eng__slot_t *s, int64_t snap)
{
    return slot_visible(s, snap);
}

/* Reads a not loaded version back from the log and publishes it (invariant 6). */
static bool version_load(eng__store_t *st, const eng__slot_t *s, const eng__version_t *v,
                         const uint8_t **data, bq_error_t *err)
{
    bson_t body;
    eng_op_t op;
    if (!st->log) {
        bq_error_set(err, ENG_ERR_CORRUPT, "the version of seq %lld is not loaded and there "
                     "is no log to read it from", (long long)v->from);
        return false;
    }
    bool ok = eng__log_read_checked(st->log, (uint64_t)v->from, &body, err) &&
              eng_op_parse(bson_get_data(&body), body.len, &op, err);
    if (ok) {
        bq_key_t key;
        bq_key_init(&key);
        if (op.has_id)
            bq_key_build(&key, &op.id);
        ok = op.seq == v->from && (op.op == ENG_OP_INSERT || op.op == ENG_OP_UPDATE) &&
             op.o && op.o_len == v->len && op.has_id && key.len == s->keylen &&
             memcmp(key.data, s->key, key.len) == 0;
        bq_key_cleanup(&key);
        if (!ok)
            bq_error_set(err, ENG_ERR_CORRUPT, "the log record of seq %lld is not the write "
                         "of the document version the store expects there", (long long)v->from);
    }
    if (!ok) {
        bq_error_prefix(err, "reading an old document version back from the log");
        bson_destroy(&body);
        return false;
    }
    uint8_t *copy = malloc(v->len);
    if (!copy)
        abort();
    memcpy(copy, op.o, v->len);
    bson_destroy(&body);
    const uint8_t *expected = NULL;
    eng__version_t *w = (eng__version_t *)(uintptr_t)v; /* `data` is published once */
    if (!atomic_compare_exchange_strong_explicit(&w->data, &expected, copy,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        free(copy); /* another reader was first: use its copy */
        *data = expected;
    } else {
        *data = copy;
    }
    return true;
}

bool eng__version_body(eng__store_t *st, const eng__slot_t *s, const eng__version_t *v,
                       const uint8_t **data, bq_error_t *err)
{
    *data = atomic_load_explicit(&v->data, memory_order_acquire);
    if (*data || v->deleted)
        return true;
    return version_load(st, s, v, data, err);
}

/* ---- catalog ---- */

static int ns_cmp(const char *db1, const char *n1, const char *db2, const char *n2)
{
    int c = strcmp(db1, db2);
    return c ? c : strcmp(n1, n2);
}

/* Index of the namespace in the catalog array, or -(insertion point) - 1. */
static long cat_search(const eng__catalog_t *cat, const char *db, const char *name)
{
    size_t lo = 0, hi = cat->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = ns_cmp(cat->colls[mid]->db, cat->colls[mid]->name, db, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

/* Visible incarnation of db.name at snap, walking older incarnations. */
static eng_coll_t *coll_at(eng_coll_t *c, int64_t snap)
{
    for (; c; c = c->older)
        if (c->from <= snap && snap < atomic_load_explicit(&c->to, memory_order_acquire))
            return c;
    return NULL;
}

eng_coll_t *eng__store_coll_get(eng__store_t *st, const char *db, const char *name,
                                int64_t snap)
{
    const eng__catalog_t *cat = atomic_load_explicit(&st->catalog, memory_order_acquire);
    long i = cat_search(cat, db, name);
    return i >= 0 ? coll_at(cat->colls[i], snap) : NULL;
}

/* Current (writer's view) incarnation, or NULL when dropped or never created. */
eng_coll_t *eng__store_coll_current(eng__store_t *st, const char *db, const char *name)
{
    return eng__store_coll_get(st, db, name, ENG_SEQ_MAX - 1);
}

/* Installs `c` as the newest incarnation of its namespace: a new catalog array. */
static void catalog_install(eng__store_t *st, eng_coll_t *c)
{
    eng__catalog_t *cat = atomic_load_explicit(&st->catalog, memory_order_relaxed);
    long i = cat_search(cat, c->db, c->name);
    size_t n = cat->n + (i < 0 ? 1 : 0);
    eng__catalog_t *nc = malloc(sizeof *nc + n * sizeof(nc->colls[0]));
    if (!nc)
        abort();
    nc->n = n;
    if (i >= 0) {
        memcpy(nc->colls, cat->colls, cat->n * sizeof(cat->colls[0]));
        c->older = cat->colls[i];
        nc->colls[i] = c;
    } else {
        size_t at = (size_t)(-i - 1);
        memcpy(nc->colls, cat->colls, at * sizeof(cat->colls[0]));
        nc->colls[at] = c;
        memcpy(nc->colls + at + 1, cat->colls + at, (cat->n - at) * sizeof(cat->colls[0]));
    }
    atomic_store_explicit(&st->catalog, nc, memory_order_release);
    eng__retire(st, cat);
}

static eng_coll_t *coll_new(eng__store_t *st, const char *db, const char *name,
                            const bson_t *options, int64_t seq, eng__docs_t *docs)
{
    /* bson_t (the options) must keep libbson's alignment */
    eng_coll_t *c = BSON_ALIGNED_ALLOC0(eng_coll_t);
    c->db = strdup(db);
    c->name = strdup(name);
    if (!c->db || !c->name)
        abort();
    if (options)
        bson_copy_to(options, &c->options);
    else
        bson_init(&c->options);
    c->from = seq;
    atomic_init(&c->to, ENG_SEQ_MAX);
    c->docs = docs ? docs : docs_new();
    c->store = st;
    /* every incarnation is kept on one list for freeing; documents are owned by the
     * first incarnation that made them */
    c->owns_docs = docs == NULL;
    c->all_next = st->all_colls;
    st->all_colls = c;
    catalog_install(st, c);
    return c;
}

/* ---- store lifetime ---- */

void eng__store_init(eng__store_t *st)
{
    memset(st, 0, sizeof *st);
    eng__catalog_t *cat = calloc(1, sizeof *cat);
    if (!cat)
        abort();
    atomic_init(&st->catalog, cat);
    pthread_mutex_init(&st->prov_lock, NULL);
}

void eng__store_cleanup(eng__store_t *st)
{
    eng_coll_t *c = st->all_colls;
    while (c) {
        eng_coll_t *next = c->all_next;
        if (c->owns_docs)
            docs_free(c->docs);
        bson_destroy(&c->options);
        free(c->db);
        free(c->name);
        bson_free(c);
        c = next;
    }
    free(atomic_load(&st->catalog));
    while (st->retired) {
        eng__retired_t *r = st->retired;
        st->retired = r->next;
        free(r->p);
        free(r);
    }
    for (size_t i = 0; i < st->prov_cap; i++)
        free(st->prov[i].effects);
    free(st->prov);
    pthread_mutex_destroy(&st->prov_lock);
    eng__vec_free(&st->cts);
}

/* ---- reads ---- */

void eng_scan_init(eng_scan_t *scan, eng_coll_t *coll, int64_t snap, bool reverse)
{
    scan->coll = coll;
    scan->snap = snap;
    scan->reverse = reverse;
    scan->next = reverse ? eng__vec_len(&coll->docs->slots) : 0;
    bq_error_clear(&scan->err);
}

/* The document of slot s visible at the scan's snapshot into out: 1, 0 when there is
 * none, -1 when its version could not be loaded (scan->err). */
static int scan_slot(eng_scan_t *scan, const eng__slot_t *s, eng_doc_t *out)
{
    const eng__version_t *v = slot_visible(s, scan->snap);
    const uint8_t *data;
    if (!v || v->deleted)
        return 0;
    if (!eng__version_body(scan->coll->store, s, v, &data, &scan->err))
        return -1;
    *out = (eng_doc_t){data, v->len, v->from};
    return 1;
}

bool eng_scan_next(eng_scan_t *scan, eng_doc_t *out)
{
    eng__docs_t *d = scan->coll->docs;
    if (scan->err.code)
        bq_error_clear(&scan->err); /* a retry of the document that failed */
    if (scan->reverse) {
        while (scan->next > 0) {
            eng__slot_t *s = (eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, scan->next - 1);
            int r = scan_slot(scan, s, out);
            if (r < 0)
                return false; /* stays at the slot that failed */
            scan->next--;
            if (r)
                return true;
        }
        return false;
    }
    uint64_t n = eng__vec_len(&d->slots);
    while (scan->next < n) {
        eng__slot_t *s = (eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, scan->next);
        int r = scan_slot(scan, s, out);
        if (r < 0)
            return false;
        scan->next++;
        if (r)
            return true;
    }
    return false;
}

const bq_error_t *eng_scan_error(const eng_scan_t *scan)
{
    return scan->err.code ? &scan->err : NULL;
}

/* The newest incarnation's slot of _id `id`, or NULL. */
static eng__slot_t *idx_find_id(const eng__docs_t *d, const bson_value_t *id)
{
    bq_key_t key;
    bq_key_init(&key);
    bq_key_build(&key, id);
    eng__slot_t *s = idx_find(d, key.data, key.len, bq_key_hash(key.data, key.len));
    bq_key_cleanup(&key);
    return s;
}

bool eng_coll_find_id_checked(eng_coll_t *c, int64_t snap, const bson_value_t *id,
                              eng_doc_t *out, bool *found, bq_error_t *err)
{
    *found = false;
    for (eng__slot_t *s = idx_find_id(c->docs, id); s; s = s->prev_incarnation) {
        const eng__version_t *v = slot_visible(s, snap);
        const uint8_t *data;
        if (v) {
            if (v->deleted)
                return true;
            if (!eng__version_body(c->store, s, v, &data, err))
                return false;
            *out = (eng_doc_t){data, v->len, v->from};
            *found = true;
            return true;
        }
    }
    return true;
}

bool eng_coll_find_id(eng_coll_t *c, int64_t snap, const bson_value_t *id, eng_doc_t *out)
{
    bool found;
    return eng_coll_find_id_checked(c, snap, id, out, &found, NULL) && found;
}

size_t eng_coll_doc_versions(eng_coll_t *c, int64_t snap, const bson_value_t *id,
                             int64_t *out, size_t max)
{
    for (eng__slot_t *s = idx_find_id(c->docs, id); s; s = s->prev_incarnation) {
        const eng__version_t *v = slot_visible(s, snap);
        if (!v)
            continue;
        if (v->deleted)
            return 0;
        size_t n = 0;
        for (const eng__version_t *w = v; w; w = w->older)
            n++;
        /* newest first along the chain: fill from the back */
        size_t i = n;
        for (const eng__version_t *w = v; w; w = w->older) {
            i--;
            if (i < max)
                out[i] = w->from;
        }
        return n;
    }
    return 0;
}

void eng_coll_info(const eng_coll_t *c, eng_coll_info_t *info)
{
    info->db = c->db;
    info->name = c->name;
    info->options = &c->options;
    info->created_seq = c->from;
    info->coll = (eng_coll_t *)c;
}

void eng_coll_stats(eng_coll_t *c, int64_t snap, uint64_t *count, uint64_t *bytes)
{
    /* lengths are metadata: no version is loaded for this */
    const eng__docs_t *d = c->docs;
    uint64_t n = eng__vec_len(&d->slots);
    *count = *bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        const eng__slot_t *s = (const eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, i);
        const eng__version_t *v = slot_visible(s, snap);
        if (v && !v->deleted) {
            (*count)++;
            *bytes += v->len;
        }
    }
}

size_t eng__store_list(eng__store_t *st, const char *dbname, int64_t snap,
                       eng_coll_info_t **out)
{
    const eng__catalog_t *cat = atomic_load_explicit(&st->catalog, memory_order_acquire);
    eng_coll_info_t *arr = malloc((cat->n ? cat->n : 1) * sizeof *arr);
    if (!arr)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < cat->n; i++) {
        if (dbname && strcmp(cat->colls[i]->db, dbname) != 0)
            continue;
        eng_coll_t *c = coll_at(cat->colls[i], snap);
        if (c)
            eng_coll_info(c, &arr[n++]);
    }
    *out = arr;
    return n;
}

/* ---- the writer's view, for the committer's checks ---- */

/* Seq of the current version of _id in c (ENG_EXPECT_ABSENT when none), and its slot. */
int64_t eng__store_current(eng_coll_t *c, const bson_value_t *id, eng__slot_t **slot_out)
{
    eng__slot_t *s = idx_find_id(c->docs, id);
    if (slot_out)
        *slot_out = s;
    if (!s)
        return ENG_EXPECT_ABSENT;
    eng__version_t *v = atomic_load_explicit(&s->head, memory_order_relaxed);
    return v && !v->deleted ? v->from : ENG_EXPECT_ABSENT;
}

/* ---- provenance reverse index ---- */

static void prov_add(eng__store_t *st, int64_t cause, int64_t effect)
{
    pthread_mutex_lock(&st->prov_lock);
    if ((st->prov_n + 1) * 2 > st->prov_cap) {
        size_t cap = st->prov_cap ? st->prov_cap * 2 : 64;
        eng__prov_t *np = calloc(cap, sizeof *np);
        if (!np)
            abort();
        for (size_t i = 0; i < st->prov_cap; i++) {
            if (!st->prov[i].effects)
                continue;
            size_t j = (size_t)bq_key_hash((const uint8_t *)&st->prov[i].cause, 8) & (cap - 1);
            while (np[j].effects)
                j = (j + 1) & (cap - 1);
            np[j] = st->prov[i];
        }
        free(st->prov);
        st->prov = np;
        st->prov_cap = cap;
    }
    size_t j = (size_t)bq_key_hash((const uint8_t *)&cause, 8) & (st->prov_cap - 1);
    while (st->prov[j].effects && st->prov[j].cause != cause)
        j = (j + 1) & (st->prov_cap - 1);
    eng__prov_t *p = &st->prov[j];
    if (!p->effects) {
        p->cause = cause;
        p->cap = 4;
        p->effects = malloc(p->cap * sizeof *p->effects);
        if (!p->effects)
            abort();
        st->prov_n++;
    } else if (p->n == p->cap) {
        p->cap *= 2;
        int64_t *e = realloc(p->effects, p->cap * sizeof *e);
        if (!e)
            abort();
        p->effects = e;
    }
    p->effects[p->n++] = effect;
    pthread_mutex_unlock(&st->prov_lock);
}

size_t eng__store_prov_effects(eng__store_t *st, int64_t cause, int64_t snap, int64_t *out,
                               size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&st->prov_lock);
    if (st->prov_cap) {
        size_t j = (size_t)bq_key_hash((const uint8_t *)&cause, 8) & (st->prov_cap - 1);
        while (st->prov[j].effects && st->prov[j].cause != cause)
            j = (j + 1) & (st->prov_cap - 1);
        const eng__prov_t *p = &st->prov[j];
        for (size_t i = 0; p->effects && i < p->n && n < max; i++)
            if (p->effects[i] <= snap)
                out[n++] = p->effects[i];
    }
    pthread_mutex_unlock(&st->prov_lock);
    return n;
}

/* ---- applying an op ---- */

static bool ns_split(const char *ns, uint32_t len, char *db, size_t dbsize, char *coll,
                     size_t collsize)
{
    const char *dot = memchr(ns, '.', len);
    if (!dot)
        return false;
    size_t dl = (size_t)(dot - ns), cl = len - dl - 1;
    if (dl == 0 || dl >= dbsize || cl >= collsize)
        return false;
    memcpy(db, ns, dl);
    db[dl] = '\0';
    memcpy(coll, dot + 1, cl);
    coll[cl] = '\0';
    return true;
}

static void version_push(eng__store_t *st, eng_coll_t *c, const bson_value_t *id,
                         int64_t seq, const uint8_t *data, uint32_t len)
{
    eng__docs_t *d = c->docs;
    eng__slot_t *slot;
    eng__store_current(c, id, &slot);
    eng__version_t *head = slot ? atomic_load_explicit(&slot->head, memory_order_relaxed)
                                : NULL;
    /* the newest version of a slot is always loaded (invariant 6) */
    const uint8_t *head_data = head ? atomic_load_explicit(&head->data, memory_order_relaxed)
                                    : NULL;
    bool head_live = head && !head->deleted;
    assert(!head_live || head_data);
    if (atomic_load_explicit(&d->indexes, memory_order_relaxed))
        eng__index_update(d, id, head_live ? head_data : NULL, head_live ? head->len : 0, data,
                          len);
    uint8_t *copy = NULL;
    if (data) {
        copy = malloc(len);
        if (!copy)
            abort();
        memcpy(copy, data, len);
    }
    eng__version_t *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    v->from = seq;
    atomic_init(&v->to, ENG_SEQ_MAX);
    atomic_init(&v->data, copy);
    v->len = len;
    v->deleted = data == NULL;

    if (slot && head_live) {
        /* update or delete of a live document: a new version in the same slot */
        v->older = head;
        atomic_store_explicit(&head->to, seq, memory_order_release);
        atomic_store_explicit(&slot->head, v, memory_order_release);
        if (data && atomic_load_explicit(&d->indexes, memory_order_relaxed))
            eng__index_post(st, d, slot, data, len);
        return;
    }
    if (!data) { /* delete of a missing document: nothing to record */
        free(v);
        return;
    }
    /* insert: a new slot (a new incarnation if the _id existed before) */
    eng__slot_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    bq_key_t key;
    bq_key_init(&key);
    bq_key_build(&key, id);
    s->key = malloc(key.len ? key.len : 1);
    if (!s->key)
        abort();
    memcpy(s->key, key.data, key.len);
    s->keylen = (uint32_t)key.len;
    s->hash = bq_key_hash(key.data, key.len);
    bq_key_cleanup(&key);
    s->prev_incarnation = slot;
    atomic_init(&s->head, v);
    s->pos = eng__vec_len(&d->slots);
    eng__vec_push(&d->slots, (uint64_t)(uintptr_t)s);
    idx_put(st, d, s);
    if (atomic_load_explicit(&d->indexes, memory_order_relaxed))
        eng__index_post(st, d, s, data, len);
}

/* {createIndexes: coll, indexes: [spec...]}: each spec becomes a definition from this
 * seq. A name that is already live is replaced (the committer never writes that). */
static bool apply_create_indexes(eng__store_t *st, const eng_op_t *op, const bson_t *cmd,
                                 const char *db, const char *coll, bq_error_t *err)
{
    (void)st;
    eng_coll_t *c = eng__store_coll_current(st, db, coll);
    bson_iter_t it, specs;
    if (!c) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: createIndexes on missing %s.%s",
                     (long long)op->seq, db, coll);
        return false;
    }
    if (!bson_iter_init_find(&it, cmd, "indexes") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &specs)) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: createIndexes without indexes",
                     (long long)op->seq);
        return false;
    }
    while (bson_iter_next(&specs)) {
        uint32_t len;
        const uint8_t *data;
        bson_t spec;
        bq_error_t ierr;
        if (!BSON_ITER_HOLDS_DOCUMENT(&specs))
            continue;
        bson_iter_document(&specs, &len, &data);
        bson_init_static(&spec, data, len);
        eng__index_t *ix = eng__index_new(&spec, op->seq, &ierr);
        if (!ix) {
            bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: bad index spec: %s",
                         (long long)op->seq, ierr.message);
            return false;
        }
        eng__index_t *old = eng__index_current(c->docs, ix->name);
        if (old)
            atomic_store_explicit(&old->to, op->seq, memory_order_release);
        eng__index_install(st, c->docs, ix);
    }
    return true;
}

/* {collMod: coll, index: {name, spec}}: the named index gets a new definition (its new
 * spec) from this seq; the old one ends here. */
static bool apply_index_mod(eng__store_t *st, const eng_op_t *op, const bson_t *cmd,
                            const char *db, const char *coll, bq_error_t *err)
{
    eng_coll_t *c = eng__store_coll_current(st, db, coll);
    bson_iter_t it, f;
    uint32_t len;
    const uint8_t *data;
    bson_t spec;
    bq_error_t ierr;
    if (!c)
        return true;
    if (!bson_iter_init_find(&it, cmd, "index") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &f) || !bson_iter_find(&f, "spec") ||
        !BSON_ITER_HOLDS_DOCUMENT(&f)) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: collMod index without a spec",
                     (long long)op->seq);
        return false;
    }
    bson_iter_document(&f, &len, &data);
    bson_init_static(&spec, data, len);
    eng__index_t *ix = eng__index_new(&spec, op->seq, &ierr);
    if (!ix) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: bad index spec: %s", (long long)op->seq,
                     ierr.message);
        return false;
    }
    eng__index_t *old = eng__index_current(c->docs, ix->name);
    if (old) {
        atomic_store_explicit(&old->to, op->seq, memory_order_release);
        /* the unique table stays valid: same key, same documents */
        if (ix->unique || ix->prepare_unique) {
            ix->utab = old->utab;
            old->utab = NULL;
        }
    }
    eng__index_install(st, c->docs, ix);
    return true;
}

static bool apply_catalog(eng__store_t *st, const eng_op_t *op, const char *db,
                          bq_error_t *err)
{
    bson_t cmd;
    bson_iter_t it;
    if (!op->o || !bson_init_static(&cmd, op->o, op->o_len) || !bson_iter_init(&it, &cmd) ||
        !bson_iter_next(&it)) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: catalog op without a command",
                     (long long)op->seq);
        return false;
    }
    const char *verb = bson_iter_key(&it);
    const char *arg = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;

    if (strcmp(verb, "create") == 0 && arg) {
        if (eng__store_coll_current(st, db, arg)) {
            bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: create of existing %s.%s",
                         (long long)op->seq, db, arg);
            return false;
        }
        /* options: the command less its first field */
        bson_t opts = BSON_INITIALIZER;
        while (bson_iter_next(&it))
            bson_append_iter(&opts, bson_iter_key(&it), -1, &it);
        coll_new(st, db, arg, &opts, op->seq, NULL);
        bson_destroy(&opts);
        return true;
    }
    if (strcmp(verb, "drop") == 0 && arg) {
        eng_coll_t *c = eng__store_coll_current(st, db, arg);
        if (c)
            atomic_store_explicit(&c->to, op->seq, memory_order_release);
        return true;
    }
    if (strcmp(verb, "dropDatabase") == 0) {
        const eng__catalog_t *cat = atomic_load_explicit(&st->catalog, memory_order_relaxed);
        for (size_t i = 0; i < cat->n; i++) {
            eng_coll_t *c = cat->colls[i];
            if (strcmp(c->db, db) == 0 && atomic_load(&c->to) == ENG_SEQ_MAX)
                atomic_store_explicit(&c->to, op->seq, memory_order_release);
        }
        return true;
    }
    if (strcmp(verb, "collMod") == 0 && arg && bson_has_field(&cmd, "index"))
        return apply_index_mod(st, op, &cmd, db, arg, err);
    if (strcmp(verb, "collMod") == 0 && arg) {
        eng_coll_t *c = eng__store_coll_current(st, db, arg);
        if (!c)
            return true;
        /* a new incarnation with the merged options, sharing the documents */
        bson_t opts = BSON_INITIALIZER;
        bson_iter_t o;
        bson_iter_init(&o, &c->options);
        while (bson_iter_next(&o))
            if (!bson_has_field(&cmd, bson_iter_key(&o)))
                bson_append_iter(&opts, bson_iter_key(&o), -1, &o);
        while (bson_iter_next(&it))
            bson_append_iter(&opts, bson_iter_key(&it), -1, &it);
        atomic_store_explicit(&c->to, op->seq, memory_order_release);
        eng_coll_t *nc = coll_new(st, db, arg, &opts, op->seq, c->docs);
        (void)nc;
        bson_destroy(&opts);
        return true;
    }
    if (strcmp(verb, "renameCollection") == 0 && arg) {
        char fdb[64], fcoll[ENG_NS_MAX + 1], tdb[64], tcoll[ENG_NS_MAX + 1];
        bson_iter_t to;
        if (!ns_split(arg, (uint32_t)strlen(arg), fdb, sizeof fdb, fcoll, sizeof fcoll) ||
            !bson_iter_init_find(&to, &cmd, "to") || !BSON_ITER_HOLDS_UTF8(&to) ||
            !ns_split(bson_iter_utf8(&to, NULL), (uint32_t)strlen(bson_iter_utf8(&to, NULL)),
                      tdb, sizeof tdb, tcoll, sizeof tcoll)) {
            bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: bad renameCollection",
                         (long long)op->seq);
            return false;
        }
        eng_coll_t *from = eng__store_coll_current(st, fdb, fcoll);
        if (!from)
            return true;
        eng_coll_t *target = eng__store_coll_current(st, tdb, tcoll);
        if (target)
            atomic_store_explicit(&target->to, op->seq, memory_order_release);
        atomic_store_explicit(&from->to, op->seq, memory_order_release);
        coll_new(st, tdb, tcoll, &from->options, op->seq, from->docs);
        return true;
    }
    if (strcmp(verb, "createIndexes") == 0 && arg)
        return apply_create_indexes(st, op, &cmd, db, arg, err);
    if (strcmp(verb, "dropIndexes") == 0 && arg) {
        eng_coll_t *c = eng__store_coll_current(st, db, arg);
        bson_iter_t names;
        if (!c)
            return true;
        if (bson_iter_init_find(&it, &cmd, "index") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &names)) {
            while (bson_iter_next(&names)) {
                eng__index_t *ix = BSON_ITER_HOLDS_UTF8(&names)
                                       ? eng__index_current(c->docs,
                                                            bson_iter_utf8(&names, NULL))
                                       : NULL;
                if (ix)
                    atomic_store_explicit(&ix->to, op->seq, memory_order_release);
            }
        }
        return true;
    }
    bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: unknown catalog op '%s'",
                 (long long)op->seq, verb);
    return false;
}

bool eng__store_apply(eng__store_t *st, const eng_op_t *op, bq_error_t *err)
{
    char db[64], coll[ENG_NS_MAX + 1];
    if (!op->ns || !ns_split(op->ns, op->ns_len, db, sizeof db, coll, sizeof coll)) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: bad namespace", (long long)op->seq);
        return false;
    }
    eng__vec_push(&st->cts, (uint64_t)op->ct_t << 32 | op->ct_i);

    switch (op->op) {
    case ENG_OP_CATALOG:
        return apply_catalog(st, op, db, err);
    case ENG_OP_MARKER:
        return true;
    case ENG_OP_INSERT:
    case ENG_OP_UPDATE:
    case ENG_OP_DELETE:
        break;
    default:
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: unknown op kind", (long long)op->seq);
        return false;
    }
    eng_coll_t *c = eng__store_coll_current(st, db, coll);
    if (!c) {
        bq_error_set(err, ENG_ERR_CORRUPT, "seq %lld: write to missing collection %s.%s",
                     (long long)op->seq, db, coll);
        return false;
    }
    version_push(st, c, &op->id, op->seq, op->op == ENG_OP_DELETE ? NULL : op->o,
                 op->op == ENG_OP_DELETE ? 0 : op->o_len);

    if (op->prov) {
        bson_t prov;
        bson_iter_t it, arr;
        if (bson_init_static(&prov, op->prov, op->prov_len) &&
            bson_iter_init_find(&it, &prov, "caused_by") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr))
                if (BSON_ITER_HOLDS_INT64(&arr))
                    prov_add(st, bson_iter_int64(&arr), op->seq);
        }
    }
    return true;
}

/* ---- restoring from a checkpoint (eng_ckpt.c), before the committer starts ---- */

eng__docs_t *eng__docs_new(void)
{
    return docs_new();
}

void eng__docs_free(eng__docs_t *d)
{
    docs_free(d);
}

void eng__docs_reserve(eng__docs_t *d, uint64_t n)
{
    eng__idtab_t *t = atomic_load_explicit(&d->idx, memory_order_relaxed);
    size_t cap = t->cap;
    while (cap < 2 * n + 2 && cap < ((size_t)1 << 40))
        cap *= 2;
    if (cap == t->cap || d->idx_used)
        return;
    eng__idtab_t *nt = calloc(1, sizeof *nt + cap * sizeof(nt->slots[0]));
    if (!nt)
        abort();
    nt->cap = cap;
    atomic_store_explicit(&d->idx, nt, memory_order_release);
    free(t);
}

void eng__docs_restore_slot(eng__store_t *st, eng__docs_t *d, uint8_t *key, uint32_t keylen,
                            eng__version_t *head, bool reincarnation)
{
    eng__slot_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->key = key;
    s->keylen = keylen;
    s->hash = bq_key_hash(key, keylen);
    s->prev_incarnation = reincarnation ? idx_find(d, key, keylen, s->hash) : NULL;
    atomic_init(&s->head, head);
    s->pos = eng__vec_len(&d->slots);
    eng__vec_push(&d->slots, (uint64_t)(uintptr_t)s);
    idx_put(st, d, s);
}

eng_coll_t *eng__coll_restore(eng__store_t *st, const char *db, const char *name,
                              const bson_t *options, int64_t from, int64_t to,
                              eng__docs_t *docs, bool owns_docs)
{
    eng_coll_t *c = coll_new(st, db, name, options, from, docs);
    c->owns_docs = owns_docs;
    atomic_store(&c->to, to);
    return c;
}

void eng__store_prov_add(eng__store_t *st, int64_t cause, int64_t effect)
{
    prov_add(st, cause, effect);
}
