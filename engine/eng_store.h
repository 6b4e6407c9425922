/*
 * eng_store.h: the in-memory store's structures, shared by eng_store.c (which owns them),
 * eng_seq.c (the committer, the only writer) and eng_db.c (open, replay, close). Nothing
 * outside engine/ includes this header.
 */
#ifndef ENG_STORE_H
#define ENG_STORE_H

#include <pthread.h>
#include <stdatomic.h>

#include "bq_key.h"
#include "eng_db.h"
#include "eng_int.h"

#define ENG__CHUNK0 256u
#define ENG__MAX_CHUNKS 48u

/* Append-only array of 64-bit values; one writer, lock-free readers. */
typedef struct eng__vec {
    _Atomic(uint64_t *) chunks[ENG__MAX_CHUNKS];
    _Atomic uint64_t len;
} eng__vec_t;

uint64_t eng__vec_get(const eng__vec_t *v, uint64_t i);
uint64_t eng__vec_len(const eng__vec_t *v);
void eng__vec_push(eng__vec_t *v, uint64_t value);
void eng__vec_free(eng__vec_t *v);

/* One version of a document: visible for seqs in [from, to). A deletion (tombstone) has
 * `deleted` set and no body. Otherwise `data` is the body, or NULL while the version is
 * not loaded: only its metadata is in memory ([from, to), len), and the body is the `o`
 * of the op at seq `from` in the log, read back on demand (eng__version_body) and
 * published once by compare-and-swap. A version is created not loaded only by a
 * checkpoint load, and never as the newest of its slot. */
typedef struct eng__version {
    int64_t from;
    _Atomic int64_t to;
    _Atomic(const uint8_t *) data;
    uint32_t len;
    bool deleted;
    struct eng__version *older;
} eng__version_t;

/* One incarnation of a document (_id), in insertion order. */
typedef struct eng__slot {
    _Atomic(eng__version_t *) head;
    uint64_t pos;                 /* its place in the insertion order (eng__docs.slots) */
    struct eng__slot *prev_incarnation;
    uint8_t *key; /* bq_key of the _id */
    uint32_t keylen;
    uint64_t hash;
} eng__slot_t;

/* Open-addressing _id index: newest incarnation per key. Replaced, never resized in
 * place. */
typedef struct eng__idtab {
    size_t cap; /* power of two */
    _Atomic(eng__slot_t *) slots[];
} eng__idtab_t;

typedef struct eng__utab eng__utab_t; /* a unique index's keys (eng_index.c) */
typedef struct eng__ptab eng__ptab_t; /* an index's postings for lookups (eng_index.c) */

/* One secondary index definition (eng_index.c), visible in [from, to) like a collection
 * incarnation. Readers see only name, spec, from and to; the rest is the committer's. */
typedef struct eng__index {
    bson_t spec;                  /* as listIndexes reports it: {v, key, name, ...} */
    bson_t key;                   /* the key pattern */
    char *name;
    char **fields;                /* the key pattern's paths */
    size_t nfields;
    bool unique, sparse;
    bool prepare_unique;          /* new duplicates refused, existing ones tolerated */
    bq_match_t *partial;          /* partialFilterExpression, NULL when none */
    bq_collation_t *collation;    /* NULL: simple */
    int64_t from;
    _Atomic int64_t to;
    struct eng__index *next;      /* the older definitions of the same document set */
    eng__utab_t *utab;            /* unique: built on first use by the committer */
    _Atomic(eng__ptab_t *) post;  /* single-field indexes without collation or partial
                                     filter: key -> every slot that ever had the key, for
                                     readers' equality lookups; NULL otherwise */
    int64_t post_from;            /* the postings answer snapshots >= this only: versions
                                     that were not loaded when they were built are not in
                                     them (their `to` bounds it) */
} eng__index_t;

typedef struct eng__docs {
    eng__vec_t slots;             /* eng__slot_t * in insertion order */
    _Atomic(eng__idtab_t *) idx;
    size_t idx_used;              /* distinct keys (writer only) */
    _Atomic(eng__index_t *) indexes; /* secondary indexes, newest first */
} eng__docs_t;

typedef struct eng__store eng__store_t;

struct eng_coll {
    char *db, *name;
    bson_t options;
    int64_t from;
    _Atomic int64_t to;
    eng__docs_t *docs;
    bool owns_docs;
    struct eng_coll *older;      /* earlier incarnation of the same namespace */
    struct eng_coll *all_next;   /* every incarnation, for freeing */
    eng__store_t *store;
};

/* Immutable sorted array of the newest incarnation of every namespace. */
typedef struct eng__catalog {
    size_t n;
    eng_coll_t *colls[];
} eng__catalog_t;

typedef struct eng__retired {
    void *p;
    struct eng__retired *next;
} eng__retired_t;

typedef struct eng__prov {
    int64_t cause;
    int64_t *effects;
    size_t n, cap;
} eng__prov_t;

struct eng__store {
    eng_log_t *log;               /* where not loaded versions are read from (set by the
                                     open once the log is open; NULL before) */
    _Atomic(eng__catalog_t *) catalog;
    eng_coll_t *all_colls;
    eng__retired_t *retired;
    eng__vec_t cts;               /* ct of every op, (t << 32 | i), indexed by seq */
    pthread_mutex_t prov_lock;    /* guards the reverse provenance index */
    eng__prov_t *prov;            /* open addressing by cause seq */
    size_t prov_n, prov_cap;
};

/* The version of slot s visible at snap (NULL when none; `deleted`: deleted then). */
const eng__version_t *eng__slot_visible(const eng__slot_t *s, int64_t snap);

/* The body of v, a live (not deleted) version of slot s: its data, or, when it is not
 * loaded, the document read back from the log (any thread; the first reader to finish
 * publishes it, and it stays until eng_db_close). Errors: ENG_ERR_IO, ENG_ERR_CORRUPT
 * (the record is not there, fails its hash, or is not the op that wrote v). */
bool eng__version_body(eng__store_t *st, const eng__slot_t *s, const eng__version_t *v,
                       const uint8_t **data, bq_error_t *err);

void eng__store_init(eng__store_t *st);
void eng__store_cleanup(eng__store_t *st);
void eng__retire(eng__store_t *st, void *p);

/* Applies one op (already sealed in the log, or being replayed from it). Errors:
 * ENG_ERR_CORRUPT when the op cannot apply to the current state (a log that does not
 * replay). */
bool eng__store_apply(eng__store_t *st, const eng_op_t *op, bq_error_t *err);

eng_coll_t *eng__store_coll_get(eng__store_t *st, const char *db, const char *name,
                                int64_t snap);
eng_coll_t *eng__store_coll_current(eng__store_t *st, const char *db, const char *name);
size_t eng__store_list(eng__store_t *st, const char *dbname, int64_t snap,
                       eng_coll_info_t **out);
int64_t eng__store_current(eng_coll_t *c, const bson_value_t *id, eng__slot_t **slot_out);
size_t eng__store_prov_effects(eng__store_t *st, int64_t cause, int64_t snap, int64_t *out,
                               size_t max);

/* Rebuilding a store from a checkpoint (eng_ckpt.c), before any reader or the committer
 * runs. eng__docs_restore_slot appends a slot in insertion order, linking it to the
 * previous incarnation of its key (when `reincarnation`: the _id had an earlier slot) and
 * indexing it; it takes ownership of `key` (malloc'd)
 * and of the version chain `head`. eng__coll_restore installs an incarnation as the
 * newest of its namespace (so restore each namespace's incarnations oldest first). */
eng__docs_t *eng__docs_new(void);
void eng__docs_free(eng__docs_t *d);
void eng__docs_restore_slot(eng__store_t *st, eng__docs_t *d, uint8_t *key, uint32_t keylen,
                            eng__version_t *head, bool reincarnation);
/* Sizes the empty _id index of d for about n keys (a hint; it still grows as needed). */
void eng__docs_reserve(eng__docs_t *d, uint64_t n);
eng_coll_t *eng__coll_restore(eng__store_t *st, const char *db, const char *name,
                              const bson_t *options, int64_t from, int64_t to,
                              eng__docs_t *docs, bool owns_docs);
void eng__store_prov_add(eng__store_t *st, int64_t cause, int64_t effect);

/*
 * Secondary indexes (eng_index.c). Definitions hang off the document set (so they follow
 * a collection through collMod and rename) and change only by catalog ops
 * {createIndexes: coll, indexes: [spec...]} and {dropIndexes: coll, index: [names]}.
 * Unique indexes are enforced by the committer: eng__index_check runs before an insert or
 * update op is sealed, against the state that includes the earlier ops of its batch.
 */

/* A definition from its normalized spec {v, key, name, ...}; NULL with
 * CannotCreateIndex when the spec does not compile (a corrupt log or checkpoint). */
eng__index_t *eng__index_new(const bson_t *spec, int64_t from, bq_error_t *err);
void eng__index_free(eng__index_t *ix);
/* Links ix as the newest definition of d (writer only), first building its postings from
 * every version of every document of d when it is a lookup index. */
void eng__index_install(eng__store_t *st, eng__docs_t *d, eng__index_t *ix);
/* The definition named `name` live now (to == ENG_SEQ_MAX), or NULL. */
eng__index_t *eng__index_current(eng__docs_t *d, const char *name);

/* Committer checks before sealing a catalog op. create: which of `specs` (an array of
 * normalized specs) are new, into `to_create` (an array, initialized by the caller); c
 * may be NULL (the collection will be created). Errors: IndexOptionsConflict,
 * IndexKeySpecsConflict, DuplicateKey (existing documents violate a new unique index,
 * with *dup set to {keyPattern, keyValue}), CannotIndexParallelArrays. drop: resolves the
 * command's `index` argument into `names` (an array). Errors: IndexNotFound,
 * InvalidOptions (the _id index). *nbefore counts the _id index. */
bool eng__index_create_check(eng_coll_t *c, const bson_t *specs, bson_t *to_create,
                             int32_t *nbefore, bson_t **dup, bq_error_t *err);
bool eng__index_drop_check(eng_coll_t *c, const bson_value_t *index, bson_t *names,
                           int32_t *nbefore, bq_error_t *err);

/* collMod {index: mod}: finds the index (mod.name or mod.keyPattern) and writes its new
 * spec into new_spec, and the reply's <option>_old/_new fields into info. Converting to
 * unique needs prepareUnique and no duplicates. Errors: IndexNotFound,
 * AmbiguousIndexKeyPattern, InvalidOptions, CannotConvertIndexToUnique (info then holds
 * {violations: [{ids}...]}). */
bool eng__index_mod_check(eng_coll_t *c, const bson_t *mod, bson_t *new_spec, bson_t *info,
                          bq_error_t *err);

/* Would writing `doc` (with _id `id`) into c break a unique index? Errors: DuplicateKey
 * with *dup (malloc'd, the caller destroys) set to {keyPattern, keyValue};
 * CannotIndexParallelArrays. */
bool eng__index_check(eng_coll_t *c, const bson_value_t *id, const uint8_t *doc,
                      uint32_t len, bson_t **dup, bq_error_t *err);
/* Keeps the built unique tables in step with a write (old/new NULL: none). */
void eng__index_update(eng__docs_t *d, const bson_value_t *id, const uint8_t *old,
                       uint32_t oldlen, const uint8_t *new_doc, uint32_t newlen);
/* Adds slot (whose newest version is `doc`) to the postings of d's lookup indexes. */
void eng__index_post(eng__store_t *st, eng__docs_t *d, eng__slot_t *slot, const uint8_t *doc,
                     uint32_t len);

/* The database handle (eng_db.c, eng_seq.c). */
struct eng_db {
    eng_log_t *log;
    eng__store_t store;
    _Atomic int64_t committed;    /* newest seq visible to readers, -1 when none */
    _Atomic bool read_only;       /* an fsync failed */
    /* the committer (eng_seq.c) */
    pthread_t committer;
    bool committer_running;
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    eng_intent_t **queue;
    size_t qlen, qcap;
    bool stopping;
    int64_t last_ts;              /* ms of the previous batch, for monotonic ts/ct */
    /* status (eng_db_status), written by the committer after each batch */
    pthread_mutex_t status_lock;
    uint8_t status_head[ENG_HASH_SIZE];
    uint64_t status_batches, status_ops, status_max_batch;
    uint32_t last_ct_t, last_ct_i;
    /* checkpoints (eng_ckpt.c) */
    eng__ckpt_t *ckpt;
    uint64_t replayed_ops;        /* log records replayed at open */
    bool ckpt_at_close;
};

bool eng__seq_start(eng_db_t *db, bq_error_t *err);
void eng__seq_stop(eng_db_t *db);

#endif
