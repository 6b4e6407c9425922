/*
 * eng_index.c: secondary index definitions and unique-key enforcement.
 *
 * An index is a catalog object: createIndexes and dropIndexes are catalog ops in the log
 * ({createIndexes: coll, indexes: [spec...]}, {dropIndexes: coll, index: [names]}), applied
 * by eng_store.c, which links each definition to the collection's document set with the
 * seq range [from, to) in which it exists, so listIndexes as of any seq sees the indexes of
 * that moment. The wire layer validates and normalizes specs ({v: 2, key, name, options});
 * this file compiles them, decides which are new or conflict, and enforces `unique`.
 *
 * Keys (MongoDB's rules): each field of the key pattern is resolved with the query path
 * rules; an array at the leaf contributes each element (an empty array indexes as
 * undefined), a missing field indexes as null; at most one field of a compound key may
 * reach an array (else CannotIndexParallelArrays, 171). A key is the concatenation of the
 * fields' bq_key bytes (collated when the index has a collation), each prefixed by its
 * length. A sparse index skips documents that have none of the fields; a partial index
 * skips documents its filter does not match.
 *
 * Invariants:
 *   1. Only the committer (or the opener, before the committer starts) reads or writes a
 *      unique table (eng__utab_t). Readers use only a definition's spec, name, from, to.
 *   2. A unique table, once built, maps every key of every current document that the
 *      index covers to the _id key of that document: eng__index_update runs for every
 *      insert, update and delete applied while it exists. Tables are built lazily (the
 *      first check after an open or a create), so replay and checkpoint loads pay nothing.
 *   3. The check runs before an op is sealed: a write that would duplicate a key never
 *      reaches the log, and the tables never hold two owners for one key.
 *   4. Postings (single-field indexes without collation or partial filter) are for readers:
 *      key -> every slot that held the key in any version since the index was built, built
 *      from every version at install and appended to by every write while the index is
 *      live, so a reader at any snapshot in [from, to) finds a superset of the slots with
 *      the key and keeps those whose visible version has it. Only the committer appends;
 *      key nodes and list nodes never move or go away before eng_db_close, and a grown
 *      table replaces the old one, which is retired (freed at close). The install posts
 *      only versions in memory: after an open from a checkpoint, older versions are not
 *      loaded (eng_store.c invariant 6), so the postings answer only snapshots from
 *      `post_from` (the latest end of a version left out) on; lookups before it answer
 *      "no index" and the caller scans.
 *
 * collMod {index: ...} (hidden, expireAfterSeconds, prepareUnique, unique) replaces a
 * definition by a new one from the op's seq; prepareUnique makes the committer refuse new
 * duplicates while tolerating existing ones, and the conversion to unique is refused
 * (CannotConvertIndexToUnique, with the groups of _ids) while duplicates remain.
 */
#include <stdlib.h>
#include <string.h>

#include "eng_store.h"

/* ---- unique tables: key bytes -> owner (_id key bytes) ---- */

typedef struct uent {
    uint64_t hash;
    uint32_t klen, olen;
    struct uent *next;
    uint8_t bytes[]; /* key then owner */
} uent_t;

struct eng__utab {
    uent_t **b;
    size_t cap, n;
};

static eng__utab_t *utab_new(void)
{
    eng__utab_t *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->cap = 64;
    t->b = calloc(t->cap, sizeof *t->b);
    if (!t->b)
        abort();
    return t;
}

static void utab_free(eng__utab_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        uent_t *e = t->b[i];
        while (e) {
            uent_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->b);
    free(t);
}

static uent_t *utab_find(const eng__utab_t *t, const uint8_t *k, size_t klen, uint64_t h)
{
    for (uent_t *e = t->b[h & (t->cap - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == klen && memcmp(e->bytes, k, klen) == 0)
            return e;
    return NULL;
}

static void utab_put(eng__utab_t *t, const uint8_t *k, size_t klen, uint64_t h,
                     const uint8_t *owner, size_t olen)
{
    if ((t->n + 1) > t->cap) {
        size_t cap = t->cap * 2;
        uent_t **nb = calloc(cap, sizeof *nb);
        if (!nb)
            abort();
        for (size_t i = 0; i < t->cap; i++) {
            uent_t *e = t->b[i];
            while (e) {
                uent_t *next = e->next;
                e->next = nb[e->hash & (cap - 1)];
                nb[e->hash & (cap - 1)] = e;
                e = next;
            }
        }
        free(t->b);
        t->b = nb;
        t->cap = cap;
    }
    uent_t *e = malloc(sizeof *e + klen + olen);
    if (!e)
        abort();
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->olen = (uint32_t)olen;
    memcpy(e->bytes, k, klen);
    memcpy(e->bytes + klen, owner, olen);
    e->next = t->b[h & (t->cap - 1)];
    t->b[h & (t->cap - 1)] = e;
    t->n++;
}

/* Removes key k when its owner is `owner`. */
static void utab_del(eng__utab_t *t, const uint8_t *k, size_t klen, uint64_t h,
                     const uint8_t *owner, size_t olen)
{
    for (uent_t **pe = &t->b[h & (t->cap - 1)]; *pe; pe = &(*pe)->next) {
        uent_t *e = *pe;
        if (e->hash == h && e->klen == klen && memcmp(e->bytes, k, klen) == 0) {
            if (e->olen == olen && memcmp(e->bytes + klen, owner, olen) == 0) {
                *pe = e->next;
                free(e);
                t->n--;
            }
            return;
        }
    }
}

/* ---- postings: key -> slots, read by any thread (invariant 4) ---- */

typedef struct pnode {
    eng__slot_t *slot;
    struct pnode *next;
} pnode_t;

typedef struct pkey {
    uint64_t hash;
    uint32_t klen;
    _Atomic(pnode_t *) list;  /* newest first */
    uint8_t key[];
} pkey_t;

struct eng__ptab {
    size_t cap, used;         /* used: writer only */
    _Atomic(pkey_t *) slots[];
};

static eng__ptab_t *ptab_alloc(size_t cap)
{
    eng__ptab_t *t = calloc(1, sizeof *t + cap * sizeof(t->slots[0]));
    if (!t)
        abort();
    t->cap = cap;
    return t;
}

static void ptab_free(eng__ptab_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        pkey_t *k = atomic_load(&t->slots[i]);
        if (!k)
            continue;
        pnode_t *n = atomic_load(&k->list);
        while (n) {
            pnode_t *next = n->next;
            free(n);
            n = next;
        }
        free(k);
    }
    free(t);
}

static pkey_t *ptab_find(const eng__ptab_t *t, const uint8_t *key, size_t len, uint64_t h)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        pkey_t *k = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!k)
            return NULL;
        if (k->hash == h && k->klen == len && memcmp(k->key, key, len) == 0)
            return k;
    }
}

static void ptab_put_raw(eng__ptab_t *t, pkey_t *k)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)k->hash & mask;; i = (i + 1) & mask) {
        if (!atomic_load_explicit(&t->slots[i], memory_order_relaxed)) {
            atomic_store_explicit(&t->slots[i], k, memory_order_release);
            return;
        }
    }
}

/* Adds slot under key (writer only); grows the table by replacing it (the old one is
 * retired: readers may still be probing it). */
static void post_add(eng__store_t *st, eng__index_t *ix, const uint8_t *key, size_t len,
                     eng__slot_t *slot)
{
    eng__ptab_t *t = atomic_load_explicit(&ix->post, memory_order_relaxed);
    uint64_t h = bq_key_hash(key, len);
    pkey_t *k = ptab_find(t, key, len, h);
    if (!k) {
        if ((t->used + 1) * 2 > t->cap) {
            eng__ptab_t *nt = ptab_alloc(t->cap * 2);
            for (size_t i = 0; i < t->cap; i++) {
                pkey_t *o = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
                if (o)
                    ptab_put_raw(nt, o);
            }
            nt->used = t->used;
            atomic_store_explicit(&ix->post, nt, memory_order_release);
            if (st)
                eng__retire(st, t);
            else
                free(t);
            t = nt;
        }
        k = calloc(1, sizeof *k + len);
        if (!k)
            abort();
        k->hash = h;
        k->klen = (uint32_t)len;
        memcpy(k->key, key, len);
        ptab_put_raw(t, k);
        t->used++;
    }
    pnode_t *head = atomic_load_explicit(&k->list, memory_order_relaxed);
    if (head && head->slot == slot)
        return; /* the slot's previous version had the key too */
    pnode_t *n = malloc(sizeof *n);
    if (!n)
        abort();
    n->slot = slot;
    n->next = head;
    atomic_store_explicit(&k->list, n, memory_order_release);
}

/* ---- definitions ---- */

eng__index_t *eng__index_new(const bson_t *spec, int64_t from, bq_error_t *err)
{
    eng__index_t *ix = BSON_ALIGNED_ALLOC0(eng__index_t); /* embeds bson_t */
    bson_copy_to(spec, &ix->spec);
    bson_init(&ix->key);
    ix->from = from;
    atomic_init(&ix->to, ENG_SEQ_MAX);
    bson_iter_t it;
    bool have_key = false;
    bson_iter_init(&it, &ix->spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t kd;
            if (bson_init_static(&kd, data, len)) {
                bson_reinit(&ix->key);
                bson_concat(&ix->key, &kd);
                have_key = true;
            }
        } else if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            free(ix->name);
            ix->name = strdup(bson_iter_utf8(&it, NULL));
            if (!ix->name)
                abort();
        } else if (strcmp(k, "unique") == 0) {
            ix->unique = bson_iter_as_bool(&it);
        } else if (strcmp(k, "sparse") == 0) {
            ix->sparse = bson_iter_as_bool(&it);
        } else if (strcmp(k, "prepareUnique") == 0) {
            ix->prepare_unique = bson_iter_as_bool(&it);
        } else if (strcmp(k, "partialFilterExpression") == 0 &&
                   BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t f;
            bson_init_static(&f, data, len);
            bq_match_destroy(ix->partial);
            ix->partial = bq_match_compile(&f, err);
            if (!ix->partial)
                goto fail;
        } else if (strcmp(k, "collation") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t cd;
            bson_init_static(&cd, data, len);
            bq_collation_destroy(ix->collation);
            ix->collation = NULL;
            if (!bq_collation_new(&cd, &ix->collation, err))
                goto fail;
        }
    }
    if (!have_key || !ix->name || bson_count_keys(&ix->key) == 0) {
        bq_error_set(err, BQ_ERR_CannotCreateIndex, "index spec without a key or a name");
        goto fail;
    }
    ix->nfields = bson_count_keys(&ix->key);
    ix->fields = calloc(ix->nfields, sizeof *ix->fields);
    if (!ix->fields)
        abort();
    bson_iter_init(&it, &ix->key);
    for (size_t i = 0; bson_iter_next(&it); i++) {
        ix->fields[i] = strdup(bson_iter_key(&it));
        if (!ix->fields[i])
            abort();
    }
    return ix;
fail:
    eng__index_free(ix);
    return NULL;
}

void eng__index_free(eng__index_t *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->nfields; i++)
        free(ix->fields[i]);
    free(ix->fields);
    free(ix->name);
    bq_match_destroy(ix->partial);
    bq_collation_destroy(ix->collation);
    utab_free(ix->utab);
    ptab_free(atomic_load(&ix->post));
    bson_destroy(&ix->spec);
    bson_destroy(&ix->key);
    bson_free(ix);
}

static void post_build(eng__store_t *st, eng__docs_t *d, eng__index_t *ix);

void eng__index_install(eng__store_t *st, eng__docs_t *d, eng__index_t *ix)
{
    post_build(st, d, ix);
    ix->next = atomic_load_explicit(&d->indexes, memory_order_relaxed);
    atomic_store_explicit(&d->indexes, ix, memory_order_release);
}

eng__index_t *eng__index_current(eng__docs_t *d, const char *name)
{
    for (eng__index_t *ix = atomic_load_explicit(&d->indexes, memory_order_acquire); ix;
         ix = ix->next)
        if (atomic_load_explicit(&ix->to, memory_order_acquire) == ENG_SEQ_MAX &&
            strcmp(ix->name, name) == 0)
            return ix;
    return NULL;
}

/* ---- keys of a document ---- */

/* The values one field of the key pattern reaches in a document: shallow copies that
 * borrow the document's bytes (the walk's own values live on its stack). */
typedef struct fvals {
    bson_value_t *v;
    bool *missing;           /* true: the path was missing there (indexes as null) */
    size_t n, cap;
    bool present;            /* some hit was not missing */
} fvals_t;

static void fvals_add(fvals_t *f, const bson_value_t *v)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4;
        f->v = realloc(f->v, f->cap * sizeof *f->v);
        f->missing = realloc(f->missing, f->cap * sizeof *f->missing);
        if (!f->v || !f->missing)
            abort();
    }
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    f->missing[f->n] = v == NULL;
    f->v[f->n++] = v ? *v : null_value;
}

static bool on_hit(void *p, const bq_path_hit_t *hit)
{
    fvals_t *f = p;
    if (!hit->value) {
        fvals_add(f, NULL);
        return false;
    }
    f->present = true;
    if (hit->value->value_type != BSON_TYPE_ARRAY) {
        fvals_add(f, hit->value);
        return false;
    }
    bson_t arr;
    bson_iter_t it;
    size_t before = f->n;
    if (bson_init_static(&arr, hit->value->value.v_doc.data, hit->value->value.v_doc.data_len) &&
        bson_iter_init(&it, &arr)) {
        while (bson_iter_next(&it))
            fvals_add(f, bson_iter_value(&it));
    }
    if (f->n == before) { /* an empty array indexes as undefined */
        static const bson_value_t undefined_value = {.value_type = BSON_TYPE_UNDEFINED};
        fvals_add(f, &undefined_value);
    }
    return false;
}

/* All (field combination) keys of a document for an index. */
typedef struct keyset {
    size_t n;                /* keys */
    bq_key_t *keys;          /* compound key bytes */
    const bson_value_t **vals; /* n * nfields values */
    fvals_t *f;
    size_t nfields;
} keyset_t;

static void keyset_cleanup(keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        bq_key_cleanup(&ks->keys[i]);
    free(ks->keys);
    free(ks->vals);
    for (size_t i = 0; i < ks->nfields; i++) {
        free(ks->f[i].v);
        free(ks->f[i].missing);
    }
    free(ks->f);
    memset(ks, 0, sizeof *ks);
}

static void key_append(bq_key_t *k, const uint8_t *p, size_t len)
{
    if (k->len + len > k->cap) {
        size_t cap = (k->len + len) * 2;
        uint8_t *nd = malloc(cap);
        if (!nd)
            abort();
        memcpy(nd, k->data, k->len);
        if (k->data != k->inline_buf)
            free(k->data);
        k->data = nd;
        k->cap = cap;
    }
    memcpy(k->data + k->len, p, len);
    k->len += len;
}

/* Fills ks with the keys of doc. Returns false (covered set to false, no keys) when the
 * index does not cover doc; false with err set on parallel arrays. */
static bool doc_keys(const eng__index_t *ix, const bson_t *doc, keyset_t *ks, bool *covered,
                     bq_error_t *err)
{
    memset(ks, 0, sizeof *ks);
    *covered = false;
    if (ix->partial && !bq_match_eval(ix->partial, doc))
        return true;
    ks->nfields = ix->nfields;
    ks->f = calloc(ix->nfields, sizeof *ks->f);
    if (!ks->f)
        abort();
    bool any = false;
    size_t multi = SIZE_MAX;
    for (size_t i = 0; i < ix->nfields; i++) {
        bq_path_walk(doc, ix->fields[i], 0, on_hit, &ks->f[i]);
        if (ks->f[i].n == 0)
            fvals_add(&ks->f[i], NULL);
        any = any || ks->f[i].present;
        if (ks->f[i].n > 1) {
            if (multi != SIZE_MAX) {
                bq_error_set(err, BQ_ERR_CannotIndexParallelArrays,
                             "cannot index parallel arrays [%s] [%s]", ix->fields[i],
                             ix->fields[multi]);
                keyset_cleanup(ks);
                return false;
            }
            multi = i;
        }
    }
    if (ix->sparse && !any) {
        keyset_cleanup(ks);
        return true;
    }
    *covered = true;
    size_t n = multi == SIZE_MAX ? 1 : ks->f[multi].n;
    ks->keys = calloc(n, sizeof *ks->keys);
    ks->vals = calloc(n * ix->nfields, sizeof *ks->vals);
    if (!ks->keys || !ks->vals)
        abort();
    bq_key_t part;
    bq_key_init(&part);
    for (size_t k = 0; k < n; k++) {
        bq_key_t *key = &ks->keys[ks->n];
        bq_key_init(key);
        for (size_t i = 0; i < ix->nfields; i++) {
            const bson_value_t *v = &ks->f[i].v[i == multi ? k : 0];
            ks->vals[ks->n * ix->nfields + i] = v;
            bq_key_build_collated(&part, v, ix->collation);
            uint8_t lenb[4] = {(uint8_t)part.len, (uint8_t)(part.len >> 8),
                               (uint8_t)(part.len >> 16), (uint8_t)(part.len >> 24)};
            key_append(key, lenb, 4);
            key_append(key, part.data, part.len);
        }
        /* the same key twice in one document (an array with repeats) counts once */
        bool seen = false;
        for (size_t j = 0; j < ks->n && !seen; j++)
            seen = ks->keys[j].len == key->len &&
                   memcmp(ks->keys[j].data, key->data, key->len) == 0;
        if (seen)
            bq_key_cleanup(key);
        else
            ks->n++;
    }
    bq_key_cleanup(&part);
    return true;
}

static void id_key(const bson_value_t *id, bq_key_t *k)
{
    bq_key_init(k);
    bq_key_build(k, id);
}

/* Renders one value as mongod prints it in a dup key message. */
static void value_str(const bson_value_t *v, char *out, size_t size)
{
    bson_t tmp = BSON_INITIALIZER;
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    bson_append_value(&tmp, "0", 1, v ? v : &null_value);
    char *json = bson_as_relaxed_extended_json(&tmp, NULL);
    /* { "0" : <value> } */
    const char *p = json ? strstr(json, " : ") : NULL;
    if (p) {
        p += 3;
        size_t len = strlen(p);
        if (len >= 2 && p[len - 1] == '}')
            len -= 2; /* " }" */
        snprintf(out, size, "%.*s", (int)len, p);
    } else {
        snprintf(out, size, "?");
    }
    bson_free(json);
    bson_destroy(&tmp);
}

/* The DuplicateKey error for key number k of ks, and {keyPattern, keyValue}. */
static void dup_error(eng_coll_t *c, const eng__index_t *ix, const keyset_t *ks, size_t k,
                      bson_t **dup, bq_error_t *err)
{
    char msg[400] = "{ ";
    size_t used = 2;
    bson_t *d = bson_new(), kv;
    BSON_APPEND_DOCUMENT(d, "keyPattern", &ix->key);
    BSON_APPEND_DOCUMENT_BEGIN(d, "keyValue", &kv);
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    for (size_t i = 0; i < ix->nfields; i++) {
        const bson_value_t *v = ks->vals[k * ix->nfields + i];
        bson_append_value(&kv, ix->fields[i], -1, v ? v : &null_value);
        char vs[200];
        value_str(v, vs, sizeof vs);
        if (used < sizeof msg)
            used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s: %s",
                                     i ? ", " : "", ix->fields[i], vs);
    }
    bson_append_document_end(d, &kv);
    if (used < sizeof msg)
        snprintf(msg + used, sizeof msg - used, " }");
    bq_error_set(err, BQ_ERR_DuplicateKey,
                 "E11000 duplicate key error collection: %s.%s index: %s dup key: %s", c->db,
                 c->name, ix->name, msg);
    if (dup) {
        if (*dup)
            bson_destroy(*dup);
        *dup = d;
    } else {
        bson_destroy(d);
    }
}

/* Adds the keys of one document to t. Returns false (err set) on a duplicate. */
static bool utab_add_doc(eng_coll_t *c, const eng__index_t *ix, eng__utab_t *t,
                         const bson_t *doc, bool tolerant, bson_t **dup, bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id"))
        return true;
    keyset_t ks;
    bool covered;
    if (!doc_keys(ix, doc, &ks, &covered, err))
        return false;
    bq_key_t owner;
    id_key(bson_iter_value(&it), &owner);
    bool ok = true;
    for (size_t k = 0; k < ks.n && ok; k++) {
        uint64_t h = bq_key_hash(ks.keys[k].data, ks.keys[k].len);
        uent_t *e = utab_find(t, ks.keys[k].data, ks.keys[k].len, h);
        if (e && !tolerant &&
            !(e->olen == owner.len && memcmp(e->bytes + e->klen, owner.data, owner.len) == 0)) {
            dup_error(c, ix, &ks, k, dup, err);
            ok = false;
        } else if (!e) {
            utab_put(t, ks.keys[k].data, ks.keys[k].len, h, owner.data, owner.len);
        }
    }
    bq_key_cleanup(&owner);
    keyset_cleanup(&ks);
    return ok;
}

/* Builds a unique table of the current documents of c; NULL (err set) on a duplicate,
 * unless tolerant (prepareUnique: the first owner of a key keeps it). */
static eng__utab_t *utab_build(eng_coll_t *c, const eng__index_t *ix, bool tolerant,
                               bson_t **dup, bq_error_t *err)
{
    eng__utab_t *t = utab_new();
    eng_scan_t scan;
    eng_doc_t doc;
    eng_scan_init(&scan, c, ENG_SEQ_MAX - 1, false);
    while (eng_scan_next(&scan, &doc)) {
        bson_t b;
        if (!bson_init_static(&b, doc.data, doc.len))
            continue;
        if (!utab_add_doc(c, ix, t, &b, tolerant, dup, err)) {
            utab_free(t);
            return NULL;
        }
    }
    return t;
}

/* ---- committer checks ---- */

static bool is_live(const eng__index_t *ix)
{
    return atomic_load_explicit(&ix->to, memory_order_relaxed) == ENG_SEQ_MAX;
}

bool eng__index_check(eng_coll_t *c, const bson_value_t *id, const uint8_t *data,
                      uint32_t len, bson_t **dup, bq_error_t *err)
{
    bson_t doc;
    if (!c || !bson_init_static(&doc, data, len))
        return true;
    bq_key_t owner;
    bool ok = true, owner_built = false;
    for (eng__index_t *ix = atomic_load_explicit(&c->docs->indexes, memory_order_relaxed);
         ix && ok; ix = ix->next) {
        if (!is_live(ix))
            continue;
        keyset_t ks;
        bool covered;
        if (!doc_keys(ix, &doc, &ks, &covered, err)) {
            ok = false;
            break;
        }
        if (!(ix->unique || ix->prepare_unique) || !covered) {
            keyset_cleanup(&ks);
            continue;
        }
        if (!ix->utab) {
            bq_error_t berr;
            ix->utab = utab_build(c, ix, !ix->unique, NULL, &berr);
            if (!ix->utab) /* cannot happen: creation refused duplicates */
                ix->utab = utab_new();
        }
        if (!owner_built) {
            id_key(id, &owner);
            owner_built = true;
        }
        for (size_t k = 0; k < ks.n && ok; k++) {
            uint64_t h = bq_key_hash(ks.keys[k].data, ks.keys[k].len);
            uent_t *e = utab_find(ix->utab, ks.keys[k].data, ks.keys[k].len, h);
            if (e && !(e->olen == owner.len &&
                       memcmp(e->bytes + e->klen, owner.data, owner.len) == 0)) {
                dup_error(c, ix, &ks, k, dup, err);
                ok = false;
            }
        }
        keyset_cleanup(&ks);
    }
    if (owner_built)
        bq_key_cleanup(&owner);
    return ok;
}

void eng__index_update(eng__docs_t *d, const bson_value_t *id, const uint8_t *old,
                       uint32_t oldlen, const uint8_t *new_doc, uint32_t newlen)
{
    bq_key_t owner;
    bool owner_built = false;
    for (eng__index_t *ix = atomic_load_explicit(&d->indexes, memory_order_relaxed); ix;
         ix = ix->next) {
        if (!ix->utab || !is_live(ix))
            continue;
        if (!owner_built) {
            id_key(id, &owner);
            owner_built = true;
        }
        bson_t doc;
        keyset_t ks;
        bool covered;
        if (old && bson_init_static(&doc, old, oldlen) &&
            doc_keys(ix, &doc, &ks, &covered, NULL)) {
            for (size_t k = 0; k < ks.n; k++)
                utab_del(ix->utab, ks.keys[k].data, ks.keys[k].len,
                         bq_key_hash(ks.keys[k].data, ks.keys[k].len), owner.data, owner.len);
            keyset_cleanup(&ks);
        }
        if (new_doc && bson_init_static(&doc, new_doc, newlen) &&
            doc_keys(ix, &doc, &ks, &covered, NULL)) {
            for (size_t k = 0; k < ks.n; k++) {
                uint64_t h = bq_key_hash(ks.keys[k].data, ks.keys[k].len);
                if (!utab_find(ix->utab, ks.keys[k].data, ks.keys[k].len, h))
                    utab_put(ix->utab, ks.keys[k].data, ks.keys[k].len, h, owner.data,
                             owner.len);
            }
            keyset_cleanup(&ks);
        }
    }
    if (owner_built)
        bq_key_cleanup(&owner);
}

/* Field-by-field equality of two documents, ignoring order and the fields in `skip`. */
static bool doc_same(const bson_t *a, const bson_t *b, const char *const *skip)
{
    bson_iter_t ia, ib;
    size_t na = 0, nb = 0;
    bson_iter_init(&ia, a);
    while (bson_iter_next(&ia)) {
        const char *k = bson_iter_key(&ia);
        bool skipped = false;
        for (size_t i = 0; skip[i]; i++)
            skipped = skipped || strcmp(k, skip[i]) == 0;
        if (skipped)
            continue;
        na++;
        if (!bson_iter_init_find(&ib, b, k) ||
            !bq_value_equal(bson_iter_value(&ia), bson_iter_value(&ib)))
            return false;
    }
    bson_iter_init(&ib, b);
    while (bson_iter_next(&ib)) {
        const char *k = bson_iter_key(&ib);
        bool skipped = false;
        for (size_t i = 0; skip[i]; i++)
            skipped = skipped || strcmp(k, skip[i]) == 0;
        if (!skipped)
            nb++;
    }
    return na == nb;
}

static const char *spec_name(const bson_t *spec)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : "";
}

static bool spec_key(const bson_t *spec, bson_t *key)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, spec, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(key, data, len);
}

/* Key patterns are equal when their fields, order and directions are (1 == 1.0). */
static bool key_same(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    bson_iter_init(&ia, a);
    bson_iter_init(&ib, b);
    for (;;) {
        bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
        if (!na || !nb)
            return na == nb;
        if (strcmp(bson_iter_key(&ia), bson_iter_key(&ib)) != 0 ||
            !bq_value_equal(bson_iter_value(&ia), bson_iter_value(&ib)))
            return false;
    }
}

/* Compares a requested spec with an existing one (same name or same key). Returns 0 when
 * they are the same index, else sets the conflict error. */
static bool spec_conflict(const bson_t *req, const bson_t *have, bq_error_t *err)
{
    static const char *const skip_opts[] = {"v", "key", "name", "background", NULL};
    bson_t rk, hk;
    spec_key(req, &rk);
    spec_key(have, &hk);
    const char *rn = spec_name(req), *hn = spec_name(have);
    bool same_name = strcmp(rn, hn) == 0, same_key = key_same(&rk, &hk);
    bool same_opts = doc_same(req, have, skip_opts);
    if (same_name && same_key && same_opts)
        return false;
    char *rj = bson_as_relaxed_extended_json(req, NULL);
    char *hj = bson_as_relaxed_extended_json(have, NULL);
    if (same_name && !same_key)
        bq_error_set(err, BQ_ERR_IndexKeySpecsConflict,
                     "An existing index has the same name as the requested index. When index "
                     "names are not specified, they are auto generated and can cause "
                     "conflicts. Please refer to our documentation. Requested index: %s, "
                     "existing index: %s",
                     rj ? rj : "?", hj ? hj : "?");
    else if (same_name)
        bq_error_set(err, BQ_ERR_IndexOptionsConflict,
                     "An existing index has the same name as the requested index. When index "
                     "names are not specified, they are auto generated and can cause "
                     "conflicts. Please refer to our documentation. Requested index: %s, "
                     "existing index: %s",
                     rj ? rj : "?", hj ? hj : "?");
    else
        bq_error_set(err, BQ_ERR_IndexOptionsConflict,
                     "Index already exists with a different name: %s", hn);
    bson_free(rj);
    bson_free(hj);
    return true;
}

/* The _id index as listIndexes shows it. */
static void id_spec(bson_t *out)
{
    bson_t k;
    bson_init(out);
    BSON_APPEND_INT32(out, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(out, "key", &k);
    BSON_APPEND_INT32(&k, "_id", 1);
    bson_append_document_end(out, &k);
    BSON_APPEND_UTF8(out, "name", "_id_");
}

/* Calls fn on the _id spec and every live definition of c (c may be NULL: _id only). */
static bool each_live(eng_coll_t *c, bool (*fn)(void *ctx, const bson_t *spec), void *ctx)
{
    bson_t id;
    id_spec(&id);
    bool stop = fn(ctx, &id);
    bson_destroy(&id);
    if (stop || !c)
        return stop;
    for (eng__index_t *ix = atomic_load_explicit(&c->docs->indexes, memory_order_relaxed); ix;
         ix = ix->next)
        if (is_live(ix) && fn(ctx, &ix->spec))
            return true;
    return false;
}

typedef struct create_ctx {
    const bson_t *req;
    bq_error_t *err;
    bool exists, failed;
    int32_t count;
} create_ctx_t;

static bool create_visit(void *p, const bson_t *have)
{
    create_ctx_t *x = p;
    bson_t rk, hk;
    spec_key(x->req, &rk);
    spec_key(have, &hk);
    bool same_name = strcmp(spec_name(x->req), spec_name(have)) == 0;
    /* same key under a different name is a conflict only when the options that make
     * two indexes on one key distinct (collation, partialFilterExpression) agree */
    static const char *const distinct_opts[] = {"collation", "partialFilterExpression", NULL};
    bool same_key = key_same(&rk, &hk);
    if (!same_name && same_key) {
        bson_t a = BSON_INITIALIZER, b = BSON_INITIALIZER;
        for (size_t i = 0; distinct_opts[i]; i++) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, x->req, distinct_opts[i]))
                bson_append_iter(&a, distinct_opts[i], -1, &it);
            if (bson_iter_init_find(&it, have, distinct_opts[i]))
                bson_append_iter(&b, distinct_opts[i], -1, &it);
        }
        static const char *const none[] = {NULL};
        same_key = doc_same(&a, &b, none);
        bson_destroy(&a);
        bson_destroy(&b);
    }
    if (!same_name && !same_key)
        return false;
    if (spec_conflict(x->req, have, x->err)) {
        x->failed = true;
        return true;
    }
    x->exists = true;
    return true;
}

static bool count_visit(void *p, const bson_t *spec)
{
    (void)spec;
    ((create_ctx_t *)p)->count++;
    return false;
}

bool eng__index_create_check(eng_coll_t *c, const bson_t *specs, bson_t *to_create,
                             int32_t *nbefore, bson_t **dup, bq_error_t *err)
{
    create_ctx_t cnt = {0};
    each_live(c, count_visit, &cnt);
    *nbefore = cnt.count;
    bson_iter_t it;
    uint32_t n = 0;
    bson_iter_init(&it, specs);
    while (bson_iter_next(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t spec;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            continue;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&spec, data, len);
        create_ctx_t x = {.req = &spec, .err = err};
        each_live(c, create_visit, &x);
        if (x.failed)
            return false;
        if (x.exists)
            continue;
        /* the same index twice in one request, or two that conflict */
        bson_iter_t prev;
        bson_iter_init(&prev, to_create);
        while (bson_iter_next(&prev)) {
            bson_t ps;
            bson_iter_document(&prev, &len, &data);
            bson_init_static(&ps, data, len);
            if (create_visit(&x, &ps))
                break;
        }
        if (x.failed)
            return false;
        if (x.exists)
            continue;
        /* existing documents must fit the new index */
        eng__index_t *ix = eng__index_new(&spec, 0, err);
        if (!ix)
            return false;
        if (c) {
            eng__utab_t *t = NULL;
            if (ix->unique) {
                t = utab_build(c, ix, false, dup, err);
                if (!t) {
                    eng__index_free(ix);
                    return false;
                }
            } else {
                /* parallel arrays are refused by any index */
                eng_scan_t scan;
                eng_doc_t doc;
                eng_scan_init(&scan, c, ENG_SEQ_MAX - 1, false);
                while (eng_scan_next(&scan, &doc)) {
                    bson_t b;
                    keyset_t ks;
                    bool covered;
                    if (!bson_init_static(&b, doc.data, doc.len))
                        continue;
                    if (!doc_keys(ix, &b, &ks, &covered, err)) {
                        eng__index_free(ix);
                        return false;
                    }
                    keyset_cleanup(&ks);
                }
            }
            utab_free(t);
        }
        eng__index_free(ix);
        char key[16];
        snprintf(key, sizeof key, "%u", n++);
        BSON_APPEND_DOCUMENT(to_create, key, &spec);
    }
    return true;
}

typedef struct drop_ctx {
    const bson_t *key;  /* match by key pattern */
    char found[256];    /* name of the match */
    int32_t count;
} drop_ctx_t;

static bool drop_visit(void *p, const bson_t *spec)
{
    drop_ctx_t *x = p;
    bson_t k;
    spec_key(spec, &k);
    if (key_same(&k, x->key)) {
        snprintf(x->found, sizeof x->found, "%s", spec_name(spec));
        x->count++;
    }
    return false;
}

static bool drop_one_name(eng_coll_t *c, const char *name, bson_t *names, uint32_t *n,
                          bq_error_t *err)
{
    if (strcmp(name, "_id_") == 0) {
        bq_error_set(err, BQ_ERR_InvalidOptions, "cannot drop _id index");
        return false;
    }
    if (!c || !eng__index_current(c->docs, name)) {
        bq_error_set(err, BQ_ERR_IndexNotFound, "index not found with name [%s]", name);
        return false;
    }
    char key[16];
    snprintf(key, sizeof key, "%u", (*n)++);
    BSON_APPEND_UTF8(names, key, name);
    return true;
}

bool eng__index_drop_check(eng_coll_t *c, const bson_value_t *index, bson_t *names,
                           int32_t *nbefore, bq_error_t *err)
{
    create_ctx_t cnt = {0};
    each_live(c, count_visit, &cnt);
    *nbefore = cnt.count;
    uint32_t n = 0;
    switch (index->value_type) {
    case BSON_TYPE_UTF8: {
        const char *name = index->value.v_utf8.str;
        if (strcmp(name, "*") == 0) {
            for (eng__index_t *ix = c ? atomic_load_explicit(&c->docs->indexes,
                                                             memory_order_relaxed)
                                      : NULL;
                 ix; ix = ix->next) {
                if (!is_live(ix))
                    continue;
                char key[16];
                snprintf(key, sizeof key, "%u", n++);
                BSON_APPEND_UTF8(names, key, ix->name);
            }
            return true;
        }
        return drop_one_name(c, name, names, &n, err);
    }
    case BSON_TYPE_ARRAY: {
        bson_t arr;
        bson_iter_t it;
        if (!bson_init_static(&arr, index->value.v_doc.data, index->value.v_doc.data_len) ||
            !bson_iter_init(&it, &arr))
            break;
        while (bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "dropIndexes 'index' array must contain only strings");
                return false;
            }
            if (!drop_one_name(c, bson_iter_utf8(&it, NULL), names, &n, err))
                return false;
        }
        return true;
    }
    case BSON_TYPE_DOCUMENT: {
        bson_t key;
        if (!bson_init_static(&key, index->value.v_doc.data, index->value.v_doc.data_len))
            break;
        drop_ctx_t x = {.key = &key};
        each_live(c, drop_visit, &x);
        char *kj = bson_as_relaxed_extended_json(&key, NULL);
        if (x.count == 0) {
            bq_error_set(err, BQ_ERR_IndexNotFound, "can't find index with key: %s",
                         kj ? kj : "?");
            bson_free(kj);
            return false;
        }
        if (x.count > 1) {
            bq_error_set(err, BQ_ERR_AmbiguousIndexKeyPattern,
                         "%d indexes found for key: %s, identify by name instead.", x.count,
                         kj ? kj : "?");
            bson_free(kj);
            return false;
        }
        bson_free(kj);
        if (strcmp(x.found, "_id_") == 0) {
            bq_error_set(err, BQ_ERR_InvalidOptions, "cannot drop _id index");
            return false;
        }
        BSON_APPEND_UTF8(names, "0", x.found);
        return true;
    }
    default:
        break;
    }
    bq_error_set(err, BQ_ERR_TypeMismatch,
                 "dropIndexes 'index' must be a string, a document or an array of strings");
    return false;
}

/* ---- reads ---- */

size_t eng_coll_indexes(eng_coll_t *c, int64_t snap, const bson_t ***out)
{
    size_t n = 0, cap = 0;
    const bson_t **arr = NULL;
    for (eng__index_t *ix = atomic_load_explicit(&c->docs->indexes, memory_order_acquire); ix;
         ix = ix->next) {
        if (!(ix->from <= snap && snap < atomic_load_explicit(&ix->to, memory_order_acquire)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            arr = realloc(arr, cap * sizeof *arr);
            if (!arr)
                abort();
        }
        arr[n++] = &ix->spec;
    }
    for (size_t i = 0; i < n / 2; i++) { /* newest first -> oldest first */
        const bson_t *t = arr[i];
        arr[i] = arr[n - 1 - i];
        arr[n - 1 - i] = t;
    }
    *out = arr;
    return n;
}

/* ---- collMod {index: {...}}: hidden, expireAfterSeconds, prepareUnique, unique ---- */

typedef struct idkey {
    bq_key_t key;
    bson_value_t id; /* owned copy */
} idkey_t;

static int idkey_cmp(const void *a, const void *b)
{
    const idkey_t *x = *(const idkey_t *const *)a, *y = *(const idkey_t *const *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = memcmp(x->key.data, y->key.data, n);
    if (c)
        return c;
    return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}

/* The groups of documents of c sharing a key of ix, as mongod's 359 reports them:
 * {violations: [{ids: [...]}, ...]}. Returns how many groups. */
static size_t violations(eng_coll_t *c, const eng__index_t *ix, bson_t *out)
{
    idkey_t **v = NULL;
    size_t n = 0, cap = 0;
    eng_scan_t scan;
    eng_doc_t doc;
    eng_scan_init(&scan, c, ENG_SEQ_MAX - 1, false);
    while (eng_scan_next(&scan, &doc)) {
        bson_t b;
        bson_iter_t it;
        keyset_t ks;
        bool covered;
        if (!bson_init_static(&b, doc.data, doc.len) || !bson_iter_init_find(&it, &b, "_id") ||
            !doc_keys(ix, &b, &ks, &covered, NULL))
            continue;
        for (size_t k = 0; k < ks.n; k++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                v = realloc(v, cap * sizeof *v);
                if (!v)
                    abort();
            }
            idkey_t *e = malloc(sizeof *e);
            if (!e)
                abort();
            bq_key_init(&e->key);
            key_append(&e->key, ks.keys[k].data, ks.keys[k].len);
            bson_value_copy(bson_iter_value(&it), &e->id);
            v[n++] = e;
        }
        keyset_cleanup(&ks);
    }
    if (n)
        qsort(v, n, sizeof *v, idkey_cmp);
    bson_t arr;
    size_t groups = 0;
    BSON_APPEND_ARRAY_BEGIN(out, "violations", &arr);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && idkey_cmp(&v[i], &v[j]) == 0)
            j++;
        if (j - i > 1) {
            char key[24];
            bson_t g, ids;
            snprintf(key, sizeof key, "%zu", groups++);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &g);
            BSON_APPEND_ARRAY_BEGIN(&g, "ids", &ids);
            for (size_t k = i; k < j; k++) {
                char ik[24];
                snprintf(ik, sizeof ik, "%zu", k - i);
                bson_append_value(&ids, ik, -1, &v[k]->id);
            }
            bson_append_array_end(&g, &ids);
            bson_append_document_end(&arr, &g);
        }
        i = j;
    }
    bson_append_array_end(out, &arr);
    for (size_t i = 0; i < n; i++) {
        bq_key_cleanup(&v[i]->key);
        bson_value_destroy(&v[i]->id);
        free(v[i]);
    }
    free(v);
    return groups;
}

bool eng__index_mod_check(eng_coll_t *c, const bson_t *mod, bson_t *new_spec, bson_t *info,
                          bq_error_t *err)
{
    bson_iter_t it;
    eng__index_t *ix = NULL;
    if (bson_iter_init_find(&it, mod, "name") && BSON_ITER_HOLDS_UTF8(&it)) {
        const char *name = bson_iter_utf8(&it, NULL);
        ix = c ? eng__index_current(c->docs, name) : NULL;
        if (!ix) {
            bq_error_set(err, BQ_ERR_IndexNotFound, "cannot find index %s for ns %s.%s", name,
                         c ? c->db : "?", c ? c->name : "?");
            return false;
        }
    } else if (bson_iter_init_find(&it, mod, "keyPattern") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t kp;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&kp, data, len);
        int found = 0;
        for (eng__index_t *x = c ? atomic_load_explicit(&c->docs->indexes, memory_order_relaxed)
                                 : NULL;
             x; x = x->next)
            if (is_live(x) && key_same(&x->key, &kp)) {
                ix = x;
                found++;
            }
        char *kj = bson_as_relaxed_extended_json(&kp, NULL);
        if (found != 1) {
            if (found > 1)
                bq_error_set(err, BQ_ERR_AmbiguousIndexKeyPattern,
                             "%d indexes found for key: %s, identify by name instead.", found,
                             kj ? kj : "?");
            else
                bq_error_set(err, BQ_ERR_IndexNotFound, "cannot find index %s for ns %s.%s",
                             kj ? kj : "?", c ? c->db : "?", c ? c->name : "?");
            bson_free(kj);
            return false;
        }
        bson_free(kj);
    } else {
        bq_error_set(err, BQ_ERR_InvalidOptions,
                     "must specify either index name or key pattern for collMod");
        return false;
    }
    /* the new spec: the old one with the changed options replaced */
    static const char *const opts[] = {"hidden", "expireAfterSeconds", "prepareUnique",
                                       "unique", NULL};
    bool converting = false;
    bson_iter_t o;
    if (bson_iter_init_find(&o, mod, "expireAfterSeconds") &&
        !bson_has_field(&ix->spec, "expireAfterSeconds")) {
        bq_error_set(err, BQ_ERR_InvalidOptions, "no expireAfterSeconds field to update");
        return false;
    }
    if (bson_iter_init_find(&o, mod, "unique") && bson_iter_as_bool(&o) && !ix->unique) {
        if (!ix->prepare_unique) {
            bq_error_set(err, BQ_ERR_InvalidOptions,
                         "index must have prepareUnique set to true before it can be converted "
                         "to unique");
            return false;
        }
        converting = true;
        if (violations(c, ix, info) > 0) {
            bq_error_set(err, BQ_ERR_CannotConvertIndexToUnique,
                         "Cannot convert the index to unique. Please resolve conflicting "
                         "documents before running collMod again.");
            return false;
        }
        bson_reinit(info);
    }
    bson_iter_init(&it, &ix->spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool changed = false;
        for (size_t i = 0; opts[i]; i++)
            changed = changed || (strcmp(k, opts[i]) == 0 && bson_has_field(mod, k));
        if (converting && strcmp(k, "prepareUnique") == 0)
            changed = true; /* a unique index is no longer "prepared" */
        if (!changed)
            bson_append_iter(new_spec, k, -1, &it);
    }
    for (size_t i = 0; opts[i]; i++) {
        if (!bson_iter_init_find(&o, mod, opts[i]))
            continue;
        if (strcmp(opts[i], "unique") == 0) {
            BSON_APPEND_BOOL(new_spec, "unique", true);
            if (converting)
                BSON_APPEND_BOOL(info, "unique_new", true);
            continue;
        }
        char key[64];
        bson_iter_t prev;
        snprintf(key, sizeof key, "%s_old", opts[i]);
        if (bson_iter_init_find(&prev, &ix->spec, opts[i]))
            bson_append_value(info, key, -1, bson_iter_value(&prev));
        else if (strcmp(opts[i], "expireAfterSeconds") != 0)
            BSON_APPEND_BOOL(info, key, false);
        snprintf(key, sizeof key, "%s_new", opts[i]);
        if (strcmp(opts[i], "expireAfterSeconds") == 0) {
            bson_append_iter(new_spec, opts[i], -1, &o);
            bson_append_iter(info, key, -1, &o);
        } else {
            BSON_APPEND_BOOL(new_spec, opts[i], bson_iter_as_bool(&o));
            BSON_APPEND_BOOL(info, key, bson_iter_as_bool(&o));
        }
    }
    return true;
}

/* ---- equality lookups through postings ---- */

/* Can readers look values up in ix? Single field, no collation or partial filter, not
 * hashed. */
static bool post_eligible(const eng__index_t *ix)
{
    bson_iter_t it;
    return ix->nfields == 1 && !ix->partial && !ix->collation &&
           bson_iter_init(&it, &ix->key) && bson_iter_next(&it) && BSON_ITER_HOLDS_NUMBER(&it);
}

static void post_doc(eng__store_t *st, eng__index_t *ix, eng__slot_t *slot, const uint8_t *data,
                     uint32_t len)
{
    bson_t doc;
    keyset_t ks;
    bool covered;
    if (!bson_init_static(&doc, data, len) || !doc_keys(ix, &doc, &ks, &covered, NULL))
        return;
    for (size_t k = 0; k < ks.n; k++)
        post_add(st, ix, ks.keys[k].data, ks.keys[k].len, slot);
    keyset_cleanup(&ks);
}

static void post_build(eng__store_t *st, eng__docs_t *d, eng__index_t *ix)
{
    if (!post_eligible(ix))
        return;
    atomic_store_explicit(&ix->post, ptab_alloc(64), memory_order_release);
    ix->post_from = ix->from;
    uint64_t n = eng__vec_len(&d->slots);
    for (uint64_t i = 0; i < n; i++) {
        eng__slot_t *s = (eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, i);
        /* every version: a lookup at any snapshot the index covers must find the slot.
         * One that is not loaded (an open from a checkpoint) is not read back from the
         * log here: the postings then answer only the snapshots after it ended. */
        for (const eng__version_t *v = atomic_load_explicit(&s->head, memory_order_acquire); v;
             v = v->older) {
            const uint8_t *data = atomic_load_explicit(&v->data, memory_order_acquire);
            int64_t to = atomic_load_explicit(&v->to, memory_order_acquire);
            if (data)
                post_doc(st, ix, s, data, v->len);
            else if (!v->deleted && to > ix->post_from)
                ix->post_from = to;
        }
    }
}

void eng__index_post(eng__store_t *st, eng__docs_t *d, eng__slot_t *slot, const uint8_t *doc,
                     uint32_t len)
{
    for (eng__index_t *ix = atomic_load_explicit(&d->indexes, memory_order_relaxed); ix;
         ix = ix->next)
        if (is_live(ix) && atomic_load_explicit(&ix->post, memory_order_relaxed))
            post_doc(st, ix, slot, doc, len);
}

static int slot_pos_cmp(const void *a, const void *b)
{
    const eng__slot_t *x = *(const eng__slot_t *const *)a, *y = *(const eng__slot_t *const *)b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

bool eng_index_value_ok(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_EOD:
        return false;
    default:
        return true;
    }
}

static int key_bytes_cmp(const bq_key_t *x, const bq_key_t *y)
{
    size_t n = x->len < y->len ? x->len : y->len;
    int r = n ? memcmp(x->data, y->data, n) : 0;
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* bq_key_t may point into itself (inline_buf): sort and search pointers, never move keys */
static int key_ptr_cmp(const void *a, const void *b)
{
    return key_bytes_cmp(*(const bq_key_t *const *)a, *(const bq_key_t *const *)b);
}

static int key_find_cmp(const void *key, const void *elem)
{
    return key_bytes_cmp(key, *(const bq_key_t *const *)elem);
}

bool eng_coll_index_lookup(eng_coll_t *c, int64_t snap, const char *path,
                           const bson_value_t *values, size_t nvalues, eng_doc_t **out,
                           size_t *n, size_t *entries)
{
    for (size_t i = 0; i < nvalues; i++)
        if (!eng_index_value_ok(&values[i]))
            return false;
    eng__index_t *ix = atomic_load_explicit(&c->docs->indexes, memory_order_acquire);
    eng__ptab_t *t = NULL;
    for (; ix; ix = ix->next) {
        if (ix->from <= snap && snap < atomic_load_explicit(&ix->to, memory_order_acquire) &&
            ix->nfields == 1 && strcmp(ix->fields[0], path) == 0 &&
            (t = atomic_load_explicit(&ix->post, memory_order_acquire)) &&
            snap >= ix->post_from)
            break;
    }
    if (!ix || !t)
        return false;
    /* the index keys of the values, sorted (for the bisection below), and every slot that
     * ever held one of them */
    bq_key_t *keys = calloc(nvalues ? nvalues : 1, sizeof *keys);
    const bq_key_t **sorted = calloc(nvalues ? nvalues : 1, sizeof *sorted);
    if (!keys || !sorted)
        abort();
    size_t cnt = 0, cap = 0;
    eng__slot_t **slots = NULL;
    bq_key_t part;
    bq_key_init(&part);
    for (size_t i = 0; i < nvalues; i++) {
        bq_key_init(&keys[i]);
        bq_key_build(&part, &values[i]);
        uint8_t lenb[4] = {(uint8_t)part.len, (uint8_t)(part.len >> 8),
                           (uint8_t)(part.len >> 16), (uint8_t)(part.len >> 24)};
        key_append(&keys[i], lenb, 4);
        key_append(&keys[i], part.data, part.len);
        sorted[i] = &keys[i];
        pkey_t *k = ptab_find(t, keys[i].data, keys[i].len,
                              bq_key_hash(keys[i].data, keys[i].len));
        for (pnode_t *p = k ? atomic_load_explicit(&k->list, memory_order_acquire) : NULL; p;
             p = p->next) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                slots = realloc(slots, cap * sizeof *slots);
                if (!slots)
                    abort();
            }
            slots[cnt++] = p->slot;
        }
    }
    bq_key_cleanup(&part);
    if (nvalues > 1)
        qsort(sorted, nvalues, sizeof *sorted, key_ptr_cmp);
    if (cnt > 1)
        qsort(slots, cnt, sizeof *slots, slot_pos_cmp);
    eng_doc_t *docs = malloc((cnt ? cnt : 1) * sizeof *docs);
    if (!docs)
        abort();
    size_t m = 0, hits = 0;
    bool ok = true;
    for (size_t i = 0; i < cnt && ok; i++) {
        if (i && slots[i] == slots[i - 1])
            continue;
        const eng__version_t *v = eng__slot_visible(slots[i], snap);
        const uint8_t *data;
        if (!v || v->deleted)
            continue;
        /* loaded at snapshots >= post_from, unless a reader loaded it: a failure is left to
         * the caller's scan to report */
        if (!eng__version_body(c->store, slots[i], v, &data, NULL)) {
            ok = false;
            break;
        }
        /* the slot had one of the keys in some version: which does the one visible at
         * snap have? */
        bson_t doc;
        keyset_t ks;
        bool covered;
        size_t has = 0;
        if (bson_init_static(&doc, data, v->len) && doc_keys(ix, &doc, &ks, &covered, NULL)) {
            for (size_t j = 0; j < ks.n; j++)
                has += bsearch(&ks.keys[j], sorted, nvalues, sizeof *sorted, key_find_cmp) != NULL;
            keyset_cleanup(&ks);
        }
        if (has) {
            docs[m++] = (eng_doc_t){data, v->len, v->from};
            hits += has;
        }
    }
    for (size_t i = 0; i < nvalues; i++)
        bq_key_cleanup(&keys[i]);
    free(keys);
    free(sorted);
    free(slots);
    if (!ok) {
        free(docs);
        return false;
    }
    *out = docs;
    *n = m;
    if (entries)
        *entries = hits;
    return true;
}
