/*
 * eng_db.h: the NEDB store above the op log: the catalog, documents as chains of
 * versions (MVCC), snapshots, and the sequencer that turns write intents into ops
 * (DESIGN.md sections 3, 5 and 7). Included by eng.h.
 *
 * Seqs. Ops are numbered 0, 1, 2, ... A snapshot is the newest committed seq S (or -1 for
 * an empty store) and sees exactly the effects of ops 0..S. Every version of a document
 * and every incarnation of a collection carries the range [from, to) of seqs in which it
 * is the visible one (to = ENG_SEQ_MAX while it is current).
 *
 * Threads. Any number of reader threads call the read functions with a snapshot taken by
 * eng_db_snapshot(); they never take a lock the committer holds for long and never wait
 * for an fsync. One committer thread, owned by the db, applies write intents in order,
 * appends their ops to the log, fsyncs once per batch, publishes the new committed seq,
 * and then calls each intent's done callback (on the committer thread: the callback must
 * only hand the intent back to its owner's thread).
 *
 * Memory. Documents and versions live until eng_db_close(): a pointer handed out by a
 * read stays valid for the life of the db, so a cursor may keep one across getMores.
 * Versions older than the newest of a document may not be in memory after an open from a
 * checkpoint (DESIGN.md section 5): the first read that reaches one reads it back from
 * the log. That read can fail (I/O, a log record changed on disk): eng_scan_next stops
 * with the error in eng_scan_error, eng_coll_find_id_checked returns it. The unchecked
 * eng_coll_find_id cannot tell such a failure from a missing document.
 */
#ifndef ENG_DB_H
#define ENG_DB_H

#include <stdbool.h>
#include <stdint.h>

#include "bq.h"

#define ENG_SEQ_MAX INT64_MAX
#define ENG_NS_MAX 255 /* longest "db.coll" namespace, as MongoDB's limit */

typedef struct eng_db eng_db_t;
typedef struct eng_coll eng_coll_t;

#define ENG_CKPT_OPS_DEFAULT 100000  /* a checkpoint every 100,000 ops ... */
#define ENG_CKPT_SECONDS_DEFAULT 60   /* ... or every minute that saw a write */

/* Zero-initialized options are the defaults. */
typedef struct eng_db_options {
    uint64_t segment_size;       /* 0: default (64 MiB) */
    int64_t checkpoint_ops;      /* checkpoint after this many new ops; 0: default, <0: never */
    int64_t checkpoint_seconds;  /* ... or this many seconds after the last one, when there
                                    are new ops; 0: default, <0: never */
    bool no_close_checkpoint;    /* do not write one at eng_db_close */
    bool ignore_checkpoints;     /* open by replaying the whole log */
    /* Called on the thread that wrote (or failed to write) a checkpoint, after it is
     * durable (or abandoned): the seq it covers, how long it took, and NULL or the
     * error. For the server's log (DESIGN.md section 11); NULL: nobody is told. */
    void (*checkpoint_done)(void *arg, int64_t seq, double ms, const bq_error_t *err);
    void *checkpoint_arg;
} eng_db_options_t;

/* Opens the data directory (creating it and its log when missing) with `opts` (NULL: every
 * default), loads the newest valid checkpoint and replays the log after it (or all of the
 * log) into memory, and starts the committer and the checkpointer (DESIGN.md section 6).
 * A checkpoint that fails its
 * checksum, does not parse, or whose head is not the log's record at its seq is skipped
 * with a warning, and the previous one (or a full replay) is used. *warnings gets a
 * malloc'd string of recovery warnings ("" when none; free it). Errors: whatever
 * eng_log_open reports (DBPathInUse, corruption naming seq/segment/offset, I/O), or an op
 * the store cannot apply. */
bool eng_db_open(const char *dbpath, const eng_db_options_t *opts, eng_db_t **out,
                 char **warnings, bq_error_t *err);

/* Lets queued intents finish, stops the committer and the checkpointer, writes a last
 * checkpoint when there are ops since the newest one (unless no_close_checkpoint), closes
 * the log and frees everything. NULL is a no-op. */
void eng_db_close(eng_db_t *db);

/* Writes a checkpoint of the committed seq now, on the calling thread (readers and the
 * committer go on), unless the newest checkpoint already covers it. Returns false with
 * ENG_ERR_IO (or ENG_ERR_CORRUPT when the log cannot be read back at that seq). */
bool eng_db_checkpoint(eng_db_t *db, bq_error_t *err);

/* The newest committed seq (-1 when nothing was ever written): a snapshot. */
int64_t eng_db_snapshot(const eng_db_t *db);

/* The cluster time (ct) of the op at seq `snap` (0, 0 for -1). */
void eng_db_cluster_time(const eng_db_t *db, int64_t snap, uint32_t *t, uint32_t *i);

/* The snapshot of the last op whose ct is at or before (t, i): for atClusterTime. */
int64_t eng_db_snapshot_at(const eng_db_t *db, uint32_t t, uint32_t i);

/* Figures for serverStatus (DESIGN.md section 11). */
typedef struct eng_db_status {
    int64_t committed;           /* newest committed seq, -1 when none */
    char head_hex[65];           /* hash of that op's record, hex ("" when none) */
    uint64_t batches;            /* commit batches (one fdatasync each) since open */
    uint64_t batched_ops;        /* ops appended in those batches */
    uint64_t max_batch;          /* most ops in one batch */
    bool read_only;
    /* recovery and checkpoints */
    uint64_t replayed_ops;       /* log records replayed at open (after the checkpoint) */
    int64_t checkpoint_seq;      /* seq the newest checkpoint covers, -1 when none */
    uint64_t checkpoints;        /* checkpoints written since open */
    uint64_t checkpoint_failures;
    double checkpoint_ms;        /* how long the last one took to write */
    char checkpoint_error[256];  /* why the last attempt failed ("" when it did not) */
} eng_db_status_t;

void eng_db_status(eng_db_t *db, eng_db_status_t *out);

/* True once an fsync failed: the server takes no more writes until restarted. */
bool eng_db_read_only(const eng_db_t *db);

/* Walks the chain of the open database up to the committed seq, re-hashing every record,
 * while the server keeps running (the offline tool, eng_verify, cannot: the server holds
 * LOCK). Fills rep like eng_verify. Errors: I/O reading the log. */
struct eng_verify_report;
bool eng_db_verify(eng_db_t *db, struct eng_verify_report *rep, bq_error_t *err);

/* ---- catalog ---- */

typedef struct eng_coll_info {
    const char *db;        /* borrowed, valid for the life of the db */
    const char *name;
    const bson_t *options; /* the options given to create (never NULL) */
    int64_t created_seq;
    eng_coll_t *coll;
} eng_coll_info_t;

/* The collection db.name as of snapshot `snap`, or NULL when it did not exist then. */
eng_coll_t *eng_coll_get(eng_db_t *db, const char *dbname, const char *name, int64_t snap);

/* Fills a malloc'd array with the collections of `dbname` (NULL: every database) that
 * exist at `snap`, sorted by database then name. Returns how many; free(*out). */
size_t eng_catalog_list(eng_db_t *db, const char *dbname, int64_t snap, eng_coll_info_t **out);

/* Fills info for one collection. */
void eng_coll_info(const eng_coll_t *c, eng_coll_info_t *info);

/* The secondary index specs of c visible at snap ({v, key, name, ...} as listIndexes
 * reports them; the _id index is not among them), oldest first, into a malloc'd array of
 * borrowed documents valid until eng_db_close. Returns how many; free(*out). */
size_t eng_coll_indexes(eng_coll_t *c, int64_t snap, const bson_t ***out);

/* Number of documents and their total BSON size at snap. */
void eng_coll_stats(eng_coll_t *c, int64_t snap, uint64_t *count, uint64_t *bytes);

/* ---- documents ---- */

/* One document version, borrowed (valid until eng_db_close). */
typedef struct eng_doc {
    const uint8_t *data;
    uint32_t len;
    int64_t seq;           /* the op that wrote this version */
} eng_doc_t;

/* A scan in insertion ("natural") order at a snapshot. Plain struct: copy it to keep a
 * cursor's place. */
typedef struct eng_scan {
    eng_coll_t *coll;
    int64_t snap;
    uint64_t next;         /* next slot to look at */
    bool reverse;
    bq_error_t err;        /* why the last eng_scan_next returned false (code 0: the end) */
} eng_scan_t;

void eng_scan_init(eng_scan_t *scan, eng_coll_t *coll, int64_t snap, bool reverse);
/* The next visible document, or false at the end or when the next visible document could
 * not be read back from the log (see eng_scan_error). */
bool eng_scan_next(eng_scan_t *scan, eng_doc_t *out);

/* After eng_scan_next returned false: NULL at the end, or the error that stopped the scan
 * (ENG_ERR_IO, ENG_ERR_CORRUPT), which stays at the document that failed (a later
 * eng_scan_next tries it again). Borrowed from the scan. */
const bq_error_t *eng_scan_error(const eng_scan_t *scan);

/* The document with this _id at snap: returns true with *found (and *out when found), or
 * false with ENG_ERR_IO / ENG_ERR_CORRUPT when its version could not be read back from
 * the log. */
bool eng_coll_find_id_checked(eng_coll_t *c, int64_t snap, const bson_value_t *id,
                              eng_doc_t *out, bool *found, bq_error_t *err);

/* The document with this _id at snap, or false when there is none, or when it could not
 * be read (use eng_coll_find_id_checked to tell the two apart). */
bool eng_coll_find_id(eng_coll_t *c, int64_t snap, const bson_value_t *id, eng_doc_t *out);

/* Values an index lookup can take: not null or undefined (they also match a missing
 * field), not an array (it also matches itself whole), not a regex (a pattern). */
bool eng_index_value_ok(const bson_value_t *v);

/* Equality lookup through a single-field index on `path` (one without collation or
 * partial filter) that existed at snap: fills a malloc'd array with the documents visible
 * at snap that hold one of the `nvalues` values at path as an index key (the value
 * itself, or an element of an array there; numbers by value), each document once, in
 * natural order, and returns true (free(*out)); *entries (may be NULL) gets the number of
 * index entries that matched (a document holding two of the values counts twice).
 * False, with nothing allocated, when no index can answer or a value is not
 * eng_index_value_ok. An index answers only snapshots its postings cover: after an open
 * from a checkpoint, not those before it (old versions were not in memory to post); a
 * scan answers those. A version that cannot be read back from the log makes it answer
 * false too, so that the caller's scan reports the error. */
bool eng_coll_index_lookup(eng_coll_t *c, int64_t snap, const char *path,
                           const bson_value_t *values, size_t nvalues, eng_doc_t **out,
                           size_t *n, size_t *entries);

/* The seqs of the ops that wrote the versions of the document with _id `id` in c, as of
 * snap: the versions of its incarnation visible at snap, oldest first (a deleted and
 * re-inserted _id is a new document; none when no document has this _id at snap).
 * Writes the first `max` into out and returns how many there are. */
size_t eng_coll_doc_versions(eng_coll_t *c, int64_t snap, const bson_value_t *id,
                             int64_t *out, size_t max);

/* ---- provenance ---- */

/* Writes into `out` (at most `max` of them) the seqs of ops whose prov names `cause` in
 * caused_by, as of snap (the reverse index: the effects of `cause`), in seq order, and
 * returns how many it wrote; a return of `max` may mean there are more. */
size_t eng_prov_effects(eng_db_t *db, int64_t cause, int64_t snap, int64_t *out, size_t max);

/* The op with this seq as of snapshot snap (DESIGN.md section 4), for provenance in the
 * backward direction and for the document version an op wrote. The store keeps versions,
 * not ops (deletes, catalog changes and prov are only in the log), so this reads the log
 * record through the log's seq index (eng_log_locate): no scan per call, and no lock the
 * committer takes for more than a moment. `body` is always initialized and owned by the
 * caller (bson_destroy it); on success `op` is parsed from it and borrows from it: ns
 * (not NUL-terminated), o (for i and u: the document version the op wrote; the command
 * for c), prov (see eng_op_caused_by). Errors: BQ_ERR_BadValue when seq < 0 or seq > snap
 * (an op after the snapshot is invisible), ENG_ERR_CORRUPT, ENG_ERR_IO. */
struct eng_op;
bool eng_db_op_read(eng_db_t *db, int64_t snap, int64_t seq, bson_t *body, struct eng_op *op,
                    bq_error_t *err);

/* ---- writes ---- */

/* What a write op expects to find when the committer applies it (optimistic concurrency:
 * ops are computed on an I/O thread from a snapshot and re-checked in seq order). */
#define ENG_EXPECT_NONE (-2)   /* no check */
#define ENG_EXPECT_ABSENT (-1) /* no document with this _id (insert, upsert) */
/* >= 0: the current version of the document was written by this seq */

typedef enum eng_wop_kind {
    ENG_WOP_INSERT = 'i',
    ENG_WOP_UPDATE = 'u',      /* full post-image */
    ENG_WOP_DELETE = 'd',
    ENG_WOP_CREATE = 'C',      /* create a collection; doc = options */
    ENG_WOP_DROP = 'D',        /* drop a collection */
    ENG_WOP_DROP_DATABASE = 'X',
    ENG_WOP_RENAME = 'R',      /* rename to (to_db, to_name); drop_target in doc */
    ENG_WOP_COLLMOD = 'M',     /* record new options; doc = the collMod command */
    ENG_WOP_CREATE_INDEXES = 'I', /* doc = {indexes: [normalized spec...]}; creates the
                                     collection when missing */
    ENG_WOP_DROP_INDEXES = 'J',   /* doc = {index: name | key pattern | [names] | "*"} */
    ENG_WOP_INDEX_MOD = 'K',      /* collMod of one index; doc = {index: {name | keyPattern,
                                     hidden?, expireAfterSeconds?, prepareUnique?, unique?}} */
} eng_wop_kind_t;

typedef struct eng_wop {
    eng_wop_kind_t kind;
    char db[64];
    char coll[ENG_NS_MAX + 1];
    bson_t doc;                /* owned: i/u the document, C the options, M the command */
    bson_value_t id;           /* owned copy of _id (i, u, d) */
    int64_t expect;            /* ENG_EXPECT_* or a seq */
    bson_t prov;               /* owned: {caused_by, evidence, confidence} or empty */
    char to_db[64];            /* R */
    char to_coll[ENG_NS_MAX + 1];
    bool drop_target;          /* R */
    /* results, filled by the committer */
    int64_t seq;               /* the op's seq, -1 when not applied (and for a
                                  createIndexes that found every index existing) */
    bq_error_t err;            /* why not applied (err.code 0 when applied) */
    bson_t *dup_key;           /* DuplicateKey on a secondary index: {keyPattern,
                                  keyValue} (owned; NULL otherwise) */
    int32_t nindexes_before;   /* I, J: indexes (with _id) before the op */
    int32_t nindexes_after;    /* I: after it */
    bool created_coll;         /* I: the collection was created by it */
    bson_t *info;              /* K: the reply's <option>_old/_new fields, or the
                                  violations of a failed unique conversion (owned) */
} eng_wop_t;

typedef struct eng_intent eng_intent_t;
typedef void (*eng_intent_done_fn)(eng_intent_t *intent);

struct eng_intent {
    eng_wop_t *ops;
    size_t nops;
    bool ordered;      /* stop at the first op that fails */
    bool all_or_none;  /* if any op's expectation fails, apply none (conflict) */
    bool durable;      /* reply after fsync (j: true, the default); false: after write */
    eng_intent_done_fn done;
    void *owner;       /* for the done callback */
    /* results */
    bool conflict;     /* all_or_none and an expectation failed: recompute and resubmit */
    size_t applied;    /* ops applied */
    bq_error_t err;    /* a failure of the whole intent (I/O, read-only): none applied
                          durably */
    int64_t first_seq, last_seq; /* seqs produced, -1 when none */
};

/* Initializes an op of `kind` for db.coll; the caller fills doc/id/expect/prov. */
void eng_wop_init(eng_wop_t *op, eng_wop_kind_t kind, const char *db, const char *coll);
void eng_wop_cleanup(eng_wop_t *op);

/* Queues an intent for the committer. Returns at once; intent->done is called later on
 * the committer thread. The intent and its ops must stay alive until then. */
void eng_submit(eng_db_t *db, eng_intent_t *intent);

/* Validates and normalizes provenance fields of a document about to be written
 * (DESIGN.md section 7): _caused_by (int64 seqs < next seq, or {coll, _id[, db]} refs
 * resolved against snap in database `dbname`), _evidence, _confidence. Fills `prov`
 * (initialized by the callee) with the sealed form, and `out` with the document where
 * _caused_by refs were replaced by seqs and _confidence is a double. Returns false with
 * BQ_ERR_BadValue naming the field and the rule. has_prov says whether any field was set. */
bool eng_prov_prepare(eng_db_t *db, const char *dbname, int64_t snap, const bson_t *doc,
                      bson_t *out, bson_t *prov, bool *has_prov, bq_error_t *err);

#endif
