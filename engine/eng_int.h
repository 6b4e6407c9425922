/*
 * eng_int.h: what engine/'s own files share and nothing outside engine/ may use (the
 * eng__ prefix): the segment file format constants, the segment list, the chain scanner
 * that both eng_log_open (recovery) and eng_verify run, and test-only fault hooks.
 * The on-disk format itself is described once, in eng_log.c.
 */
#ifndef ENG_INT_H
#define ENG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

#define ENG__SEG_MAGIC "NEDBLOG1"
#define ENG__SEG_MAGIC_LEN 8
#define ENG__SEG_HEADER_SIZE 16u
#define ENG__SEG_VERSION 1u
#define ENG__SEG_NAME_DIGITS 20
#define ENG__SEG_SUFFIX ".nlog"
#define ENG__REC_OVERHEAD (4u + ENG_HASH_SIZE) /* len field and hash around the body */

static inline uint32_t eng__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void eng__put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* One segment file. `fd` and `size` are used by the open log only (see eng_log.c). */
typedef struct eng__seg {
    uint64_t first_seq;            /* from the file name */
    uint64_t size;                 /* bytes readable: file size, or flushed for the last */
    int fd;                        /* -1 until opened */
    char name[ENG__SEG_NAME_DIGITS + sizeof ENG__SEG_SUFFIX];
} eng__seg_t;

/* Fills out[16] with a segment header. */
void eng__seg_header(uint8_t out[ENG__SEG_HEADER_SIZE]);

/* Writes "<seq, 20 digits>.nlog" into name. */
void eng__seg_name(uint64_t first_seq, char *name, size_t size);

/* Lists the *.nlog files of the directory open as logdir_fd, sorted by first seq, into a
 * malloc'd array (*segs, *n; free() it). Other files are ignored. Errors: ENG_ERR_IO,
 * ENG_ERR_CORRUPT (a .nlog file whose name is not 20 digits). */
bool eng__segments_list(int logdir_fd, const char *logdir, eng__seg_t **segs, size_t *n,
                        bq_error_t *err);

/* BLAKE2b-256(prev || body). */
void eng__hash(const uint8_t prev[ENG_HASH_SIZE], const uint8_t *body, size_t len,
               uint8_t out[ENG_HASH_SIZE]);

/* Calls sodium_init once per process; false when libsodium cannot start. */
bool eng__crypto_init(bq_error_t *err);

/* Takes <dbpath>/LOCK with flock (exclusive or shared, never waiting). Returns the fd
 * holding it, or -1 with ENG_ERR_LOCKED / ENG_ERR_IO. `create` (the writer): open LOCK
 * read-write, creating it; otherwise read-only, creating it only when missing. */
int eng__lock_take(const char *dbpath, bool exclusive, bool create, bq_error_t *err);

/*
 * The chain scanner: walks segs[] in order checking framing, hash, link and seq, and
 * stops at the first problem, which it describes in `reason` and the bad_* fields rather
 * than as an error: the caller decides whether it is fatal (open) or a report (verify).
 * It returns false only when it could not read a file or on_record failed.
 */
typedef struct eng__scan {
    /* inputs */
    int logdir_fd;
    const eng__seg_t *segs;
    size_t nsegs;
    uint64_t from_seq;             /* hash-check and report records from here */
    uint8_t from_hash[ENG_HASH_SIZE]; /* stored hash expected at from_seq - 1 */
    bool check_ops;                /* eng_op_parse every body too */
    eng_record_fn on_record;
    void *on_record_ctx;
    /* outputs */
    uint64_t next_seq;             /* one past the last whole, good record */
    uint8_t head[ENG_HASH_SIZE];   /* its stored hash (zeros when none) */
    uint64_t records;              /* whole good records walked */
    uint64_t bytes;                /* sum of segment file sizes walked */
    uint64_t tail_end;             /* end of the last good record in the last segment */
    bool torn;                     /* the last segment ends inside a record or header */
    bool torn_header;              /* ... inside its 16-byte header */
    uint64_t torn_offset, torn_bytes;
    eng_verify_reason_t reason;    /* ENG_VERIFY_OK when the walk found nothing wrong */
    uint64_t bad_seq;
    size_t bad_seg;                /* index into segs */
    uint64_t bad_off;
    char detail[256];
} eng__scan_t;

bool eng__scan_run(eng__scan_t *scan, bq_error_t *err);

/*
 * Checkpoints (eng_ckpt.c; the file format is described there). The open (eng_db.c)
 * lists them, loads the newest that verifies into a fresh store, and hands its seq and
 * head to eng_log_open so that only the tail is replayed; the checkpointer writes new
 * ones in the background once the db runs.
 */
struct eng__store;
typedef struct eng__ckpt eng__ckpt_t;

typedef struct eng__ckpt_info {
    uint64_t seq;                  /* the newest seq it covers */
    int64_t ts;                    /* ts of that op */
    uint8_t head[ENG_HASH_SIZE];   /* the stored hash of that op's log record */
} eng__ckpt_info_t;

/* The seqs of <dbpath>/checkpoint/ *.ckpt, newest first, into a malloc'd array (free it);
 * none when there is no such directory. Errors: ENG_ERR_IO. */
bool eng__ckpt_list(const char *dbpath, uint64_t **seqs, size_t *n, bq_error_t *err);

/* Checks (magic, version, BLAKE2b checksum, every entry) and loads checkpoint `seq` into
 * `st`, a freshly initialized store. On failure `st` holds part of it: clean it up.
 * Errors: ENG_ERR_CORRUPT (naming the file and what is wrong), ENG_ERR_IO. */
bool eng__ckpt_load(const char *dbpath, uint64_t seq, struct eng__store *st,
                    eng__ckpt_info_t *info, bq_error_t *err);

/* Creates db->ckpt and starts the background thread when opts ask for one (every
 * checkpoint_ops ops or checkpoint_seconds seconds). loaded_seq: the checkpoint the open
 * used (-1 when none). eng__ckpt_free stops and frees it (also after a failed start). */
bool eng__ckpt_start(eng_db_t *db, const char *dbpath, const eng_db_options_t *opts,
                     int64_t loaded_seq, bq_error_t *err);
void eng__ckpt_stop(eng_db_t *db);   /* joins the thread; eng_db_checkpoint still works */
void eng__ckpt_free(eng_db_t *db);
void eng__ckpt_status(eng_db_t *db, eng_db_status_t *out);

/* Test hook: writes a checkpoint of an older snapshot (0 <= snap <= committed), as the
 * background thread does while the committer has moved on past it. */
bool eng__ckpt_write_at(eng_db_t *db, int64_t snap, bq_error_t *err);

/* Test hook: the same in an older file format (2: every version with its body), to check
 * that such files still load. */
bool eng__ckpt_write_format(eng_db_t *db, int64_t snap, uint32_t version, bq_error_t *err);

/* eng_log_read_seq, and then the record's hash checked against the previous record's
 * (its link in the chain), so that a record changed on disk since the open is an error,
 * not a different document. For bodies read back long after the open checked the chain
 * (old document versions). Same errors; a hash that does not match is ENG_ERR_CORRUPT. */
bool eng__log_read_checked(eng_log_t *log, uint64_t seq, bson_t *body, bq_error_t *err);

/* Test hooks: make the next file write and/or sync of `log` fail with EIO. */
enum { ENG__FAULT_WRITE = 1, ENG__FAULT_SYNC = 2 };
void eng__log_inject_fault(eng_log_t *log, unsigned faults);

#endif
