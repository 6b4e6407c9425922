/*
 * eng.h: public header of engine/, the NEDB store (DESIGN.md sections 3 to 7): the op log
 * and its hash chain, the sequencer, MVCC, checkpoints, recovery, verify and provenance.
 * engine/ never includes wire/ or aggregation/, and never prints: warnings and errors are
 * handed back to the caller (bq_error_t, or the warnings text of an opened log).
 *
 * This part of the header covers the bottom of the engine:
 *
 *   eng_op_*      the op document (DESIGN.md section 4): building it from a struct and
 *                 parsing it back, with its field order and per-kind rules checked.
 *   eng_log_*     the data directory's op log: LOCK, segments, records, the BLAKE2b chain,
 *                 appends with group commit (append N times, sync once), reading a record
 *                 back by position, iterating from a seq.
 *   eng_verify*   the offline chain check used by `nedb verify` and `nedb dump`.
 *
 * Threading: one writer thread (the committer) calls eng_log_append / _flush / _sync /
 * _head. eng_log_read and log iterators may run on any thread at the same time as the
 * writer; they only see records that eng_log_flush or eng_log_sync has written out.
 */
#ifndef ENG_H
#define ENG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bq.h"

/* Error codes the engine sets, MongoDB's own: corruption found in the data directory is
 * DataCorruptionDetected; a failed open, read, write or fsync is FileStreamFailed; a data
 * directory whose LOCK another process holds is DBPathInUse, as mongod reports it. */
#define ENG_ERR_CORRUPT BQ_ERR_DataCorruptionDetected
#define ENG_ERR_IO      BQ_ERR_FileStreamFailed
#define ENG_ERR_LOCKED  BQ_ERR_DBPathInUse

/* ---------------------------------------------------------------------------------------
 * The op document
 * ------------------------------------------------------------------------------------- */

typedef enum eng_op_kind {
    ENG_OP_INSERT = 'i',   /* ns, id, o (the new document) */
    ENG_OP_UPDATE = 'u',   /* ns, id, o (the full post-image) */
    ENG_OP_DELETE = 'd',   /* ns, id */
    ENG_OP_CATALOG = 'c',  /* ns ("db.$cmd"), o (the command) */
    ENG_OP_MARKER = 'n',   /* ns and o optional */
} eng_op_kind_t;

/*
 * One op, as a struct. Every pointer is borrowed: after eng_op_parse it points into the
 * parsed bytes and is valid as long as they are; for eng_op_build the caller owns them.
 * Absent optional fields are NULL (ns, o, prov, txn) or has_id == false.
 *
 * Rules (checked by both eng_op_build and eng_op_parse):
 *   - seq >= 0; ts >= 0 (milliseconds since the epoch); ct_t == ts / 1000; ct_i >= 1.
 *   - i, u: ns, id and o required.   d: ns and id required, no o.
 *     c: ns and o required, no id.   n: no id; ns and o optional.
 *   - prov only on i and u. Its fields: caused_by (array of int64 s, 0 <= s < seq),
 *     evidence (one of user_message, inference, tool_result, correction, external),
 *     confidence (double, finite, in [0, 1]); at least one of them, nothing else.
 *   - txn, when present, is a document (its contents are not yet specified).
 * Parsed documents must hold exactly these fields in the order seq, ts, ct, op, ns, id, o,
 * prov, txn; nested documents (o, prov, txn) are not deep-validated here.
 */
typedef struct eng_op {
    int64_t seq;
    int64_t ts;            /* date: milliseconds since the epoch */
    uint32_t ct_t;         /* timestamp: seconds of ts */
    uint32_t ct_i;         /* timestamp: 1, 2, ... within that second */
    eng_op_kind_t op;
    const char *ns;        /* "db.coll" or "db.$cmd"; not NUL-terminated after parse */
    uint32_t ns_len;
    bool has_id;
    bson_value_t id;       /* the document's _id (borrowed) */
    const uint8_t *o;      /* BSON document bytes */
    uint32_t o_len;
    const uint8_t *prov;   /* BSON document bytes */
    uint32_t prov_len;
    const uint8_t *txn;    /* BSON document bytes */
    uint32_t txn_len;
} eng_op_t;

/* Builds the op document for `op` into `out`, which this function always initializes (the
 * caller bson_destroy()s it, on failure too). Returns false with BQ_ERR_BadValue when `op`
 * breaks one of the rules above; `out` is then empty. */
bool eng_op_build(const eng_op_t *op, bson_t *out, bq_error_t *err);

/* Parses op document bytes into `op` (whose pointers then borrow from `data`). Returns
 * false with BQ_ERR_InvalidBSON when the bytes are not a BSON document, or
 * BQ_ERR_FailedToParse naming the field when a type, the field order or a rule is wrong.
 * `op` is zeroed first, and its contents are unspecified on failure. */
bool eng_op_parse(const uint8_t *data, size_t len, eng_op_t *op, bq_error_t *err);

/* The seqs the op's prov names in caused_by (its causes), in their stored order: writes
 * the first `max` into out and returns how many there are (0 without prov or caused_by),
 * so a caller with too small a buffer can call again. */
size_t eng_op_caused_by(const eng_op_t *op, int64_t *out, size_t max);

/* Returns the seq of an op document cheaply, without parsing the rest (the seq field is
 * always first). Returns false when the bytes do not start that way. */
bool eng_op_peek_seq(const uint8_t *data, size_t len, int64_t *seq);

/* ---------------------------------------------------------------------------------------
 * The op log
 * ------------------------------------------------------------------------------------- */

#define ENG_HASH_SIZE 32                          /* BLAKE2b-256 */
#define ENG_LOG_SEGMENT_SIZE_DEFAULT (64u << 20)  /* a new segment every 64 MiB */
#define ENG_LOG_SEGMENT_SIZE_MIN 4096u
#define ENG_LOG_SEGMENT_SIZE_MAX (1u << 30)
#define ENG_LOG_MAX_BODY (64u << 20)              /* largest record body accepted */

typedef struct eng_log eng_log_t;

/* Where a record lives: the segment's ordinal (0 for the oldest segment file present,
 * stable as long as no segment file is removed, which NEDB never does) and the byte offset
 * of the record's length field in that file. Small enough to keep one per document
 * version in memory (DESIGN.md section 5). */
typedef struct eng_pos {
    uint32_t seg;
    uint32_t off;
} eng_pos_t;

/* One record as seen by a scan or an iterator. All pointers are borrowed and valid only
 * until the callback returns or the iterator advances. */
typedef struct eng_record {
    uint64_t seq;
    eng_pos_t pos;
    const uint8_t *body;   /* the op document (BSON), `len` bytes */
    uint32_t len;
    const uint8_t *hash;   /* ENG_HASH_SIZE bytes, as stored */
} eng_record_t;

/* Called once per verified record, in seq order. Return false (and set err) to stop. */
typedef bool (*eng_record_fn)(void *ctx, const eng_record_t *rec, bq_error_t *err);

typedef struct eng_log_options {
    /* Size after which a new segment is started; 0 means ENG_LOG_SEGMENT_SIZE_DEFAULT.
     * Must be within [ENG_LOG_SEGMENT_SIZE_MIN, ENG_LOG_SEGMENT_SIZE_MAX]. A segment is
     * larger than this only when it holds a single record larger than this. */
    uint64_t segment_size;
    /* Start of replay, for an open from a checkpoint: records before verify_from_seq are
     * not hashed (only their framing is walked, in the segment that holds them), and the
     * stored hash of record verify_from_seq - 1 must equal verify_from_hash (the
     * checkpoint's head), else the open fails with a broken link. 0 verifies everything. */
    uint64_t verify_from_seq;
    uint8_t verify_from_hash[ENG_HASH_SIZE];
    /* Called for every record from verify_from_seq on, after its hash, link and seq were
     * checked, so recovery can replay in the same pass. If the open then fails (say a bad
     * record further on), the caller must throw away whatever it built from the calls. */
    eng_record_fn on_record;
    void *on_record_ctx;
} eng_log_options_t;

/*
 * Opens (creating when missing) the data directory `dbpath` and its log:
 *   1. takes <dbpath>/LOCK with an exclusive flock; if another process or another open in
 *      this process holds it, fails with ENG_ERR_LOCKED naming the path;
 *   2. scans every segment in log/ in order, checking each record's length, hash, link to
 *      the previous record and seq continuity (see options for starting later);
 *   3. if the last record of the last segment runs past the end of its file (a torn
 *      tail), cuts the file back to the last whole record and records a warning naming the
 *      bytes dropped (eng_log_warnings); anything else wrong fails the open with
 *      ENG_ERR_CORRUPT and a message naming the seq, the segment file and the byte offset.
 * On success *out owns the log (eng_log_close it). On failure *out is NULL.
 * Errors: ENG_ERR_LOCKED, ENG_ERR_CORRUPT (also for a segment of a format version this
 * build does not read, named in the message), ENG_ERR_IO, BQ_ERR_BadValue (options),
 * whatever on_record sets.
 */
bool eng_log_open(const char *dbpath, const eng_log_options_t *opts, eng_log_t **out,
                  bq_error_t *err);

/* Flushes buffered records (not fsynced), releases LOCK and frees the log. NULL is a
 * no-op. Records not synced may be lost on a crash, exactly as before the close. */
void eng_log_close(eng_log_t *log);

/* Warnings from the open (a torn tail cut, ...), one per line; "" when none. Owned by
 * the log, valid until eng_log_close. */
const char *eng_log_warnings(const eng_log_t *log);

/* The next seq to append and the head hash (hash of the newest record, or 32 zero bytes
 * for an empty log). Writer thread only. */
void eng_log_head(const eng_log_t *log, uint64_t *next_seq, uint8_t head[ENG_HASH_SIZE]);

/*
 * Appends one record: `body` is the op document, whose seq must be the log's next seq
 * (eng_log_head). Computes hash = BLAKE2b-256(head || body), stores it in hash_out and the
 * record's position in pos_out (both may be NULL), and advances the head. The record is
 * buffered: it reaches the file at the next eng_log_flush / eng_log_sync (or earlier when
 * the buffer fills) and is durable only after eng_log_sync.
 * Errors: BQ_ERR_BadValue (wrong seq, body too large: nothing was appended), ENG_ERR_IO
 * (a write failed). After any ENG_ERR_IO the log refuses every further append, flush and
 * sync until it is closed and opened again (DESIGN.md section 3: the server stops taking
 * writes); what reached the file is then cut back as a torn tail, or kept whole.
 */
bool eng_log_append(eng_log_t *log, const bson_t *body, uint8_t hash_out[ENG_HASH_SIZE],
                    eng_pos_t *pos_out, bq_error_t *err);

/* Writes buffered records to the file (no fsync), making them readable through
 * eng_log_read and iterators. For writeConcern {j: false}. Errors: ENG_ERR_IO. */
bool eng_log_flush(eng_log_t *log, bq_error_t *err);

/* Writes buffered records and makes every appended record durable with one fdatasync
 * (plus an fsync of log/ when a segment was created since the last sync): one call per
 * commit batch. Errors: ENG_ERR_IO, after which the log refuses further writes. */
bool eng_log_sync(eng_log_t *log, bq_error_t *err);

/* Reads back the record at `pos` (from any thread). `body` is always initialized and
 * owned by the caller (bson_destroy it); hash_out may be NULL. Only flushed records can
 * be read. Errors: BQ_ERR_BadValue (no record there), ENG_ERR_CORRUPT, ENG_ERR_IO. */
bool eng_log_read(eng_log_t *log, eng_pos_t pos, bson_t *body,
                  uint8_t hash_out[ENG_HASH_SIZE], bq_error_t *err);

/* Finds where the flushed record `seq` lives (from any thread). The log keeps a seq ->
 * position index that readers fill in lazily: the first lookup into a segment walks the
 * record framing up to the record asked for (reading the length and the seq that starts
 * each body, not the bodies), later lookups are a bisection and an array read. The writer
 * never waits for it. Errors: BQ_ERR_BadValue (seq not flushed, or older than the oldest
 * segment), ENG_ERR_CORRUPT (framing or seqs wrong on the way), ENG_ERR_IO. */
bool eng_log_locate(eng_log_t *log, uint64_t seq, eng_pos_t *pos, bq_error_t *err);

/* eng_log_locate then eng_log_read: the op document of record `seq` into `body` (always
 * initialized, owned by the caller). Same errors. */
bool eng_log_read_seq(eng_log_t *log, uint64_t seq, bson_t *body, bq_error_t *err);

/* Iterator over flushed records from a seq on (from any thread; each iterator belongs to
 * one thread). Records are framed and seq-checked but not re-hashed (the open did that). */
typedef struct eng_log_iter eng_log_iter_t;

/* Returns NULL with BQ_ERR_BadValue when from_seq is past the flushed head. */
eng_log_iter_t *eng_log_iter_new(eng_log_t *log, uint64_t from_seq, bq_error_t *err);

/* Returns true with *rec filled (borrowed until the next call), or false at the end
 * (err untouched) or on an error (err set: ENG_ERR_CORRUPT, ENG_ERR_IO). Records flushed
 * after the iterator was created are seen too. */
bool eng_log_iter_next(eng_log_iter_t *it, eng_record_t *rec, bq_error_t *err);

void eng_log_iter_destroy(eng_log_iter_t *it);

/* Formats a hash as 64 lowercase hex digits and a NUL into out[65]. Returns out. */
char *eng_hash_hex(const uint8_t hash[ENG_HASH_SIZE], char out[2 * ENG_HASH_SIZE + 1]);

/* ---------------------------------------------------------------------------------------
 * Offline verification
 * ------------------------------------------------------------------------------------- */

typedef enum eng_verify_reason {
    ENG_VERIFY_OK = 0,
    ENG_VERIFY_HASH_MISMATCH,  /* the body no longer matches its sealed hash */
    ENG_VERIFY_BROKEN_LINK,    /* the stored hash itself was changed: the next record does
                                  not chain from it either (or a checkpoint head differs) */
    ENG_VERIFY_BAD_LENGTH,     /* len out of range or not the BSON document's own length */
    ENG_VERIFY_GAP,            /* a record's seq, or a segment's name, is not the next seq */
    ENG_VERIFY_TORN_TAIL,      /* only in torn_reason: the last record is cut short */
    ENG_VERIFY_BAD_HEADER,     /* a segment header is wrong, or a segment is cut short */
    ENG_VERIFY_BAD_OP,         /* the body is not a valid op document (eng_op_parse) */
} eng_verify_reason_t;

/* Returns a short stable name: "ok", "hash mismatch", "broken link", "bad length",
 * "gap in seq", "torn tail", "bad segment header", "bad op document". */
const char *eng_verify_reason_name(eng_verify_reason_t reason);

typedef struct eng_verify_report {
    bool valid;                 /* every whole record verifies (a torn tail allowed) */
    uint64_t records;           /* whole records that verified, from seq 0 */
    uint64_t segments;          /* segment files seen */
    uint64_t bytes;             /* bytes of the segments, headers included */
    uint8_t head[ENG_HASH_SIZE];/* hash of the last record that verified */
    char head_hex[2 * ENG_HASH_SIZE + 1];
    /* when !valid: the first bad record */
    eng_verify_reason_t reason;
    uint64_t bad_seq;           /* the seq expected at that place */
    char bad_segment[64];       /* file name inside log/ */
    uint64_t bad_offset;        /* byte offset in that file */
    char detail[256];           /* one human sentence */
    /* a torn tail (valid stays true): bytes a server's open would cut */
    uint64_t torn_bytes;        /* 0 when none */
    uint64_t torn_offset;       /* where the torn record starts in the last segment */
    char torn_segment[64];
} eng_verify_report_t;

typedef struct eng_verify_options {
    bool check_ops;            /* also eng_op_parse every body (default via eng_verify) */
    eng_record_fn on_record;   /* called for every verified record (nedb dump) */
    void *on_record_ctx;
} eng_verify_options_t;

/*
 * Walks the whole chain of `dbpath` from seq 0 using nothing but the files, and fills
 * `report` (always initialized). It takes <dbpath>/LOCK as a *shared* flock: several
 * verifies may run together, but a directory that a server (or another tool with an
 * exclusive lock) holds is refused with ENG_ERR_LOCKED, since a live log keeps changing
 * under the reader. It never writes to the directory (except to create an empty LOCK
 * when there is none), and it does not cut a torn tail.
 * Returns true when the walk ran (look at report->valid), false when it could not run
 * (ENG_ERR_LOCKED, ENG_ERR_IO: no such directory, unreadable file; or an error set by
 * on_record).
 */
bool eng_verify(const char *dbpath, eng_verify_report_t *report, bq_error_t *err);
bool eng_verify_ex(const char *dbpath, const eng_verify_options_t *opts,
                   eng_verify_report_t *report, bq_error_t *err);

/* The store above the log (catalog, MVCC, sequencer, provenance) is declared in eng_db.h. */
#include "eng_db.h"

#endif
