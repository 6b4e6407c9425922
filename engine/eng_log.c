/*
 * eng_log.c: the data directory and its op log (DESIGN.md sections 4 and 6). This file
 * owns <dbpath>/LOCK and every file in <dbpath>/log/: it creates segments, appends records
 * sealed into the BLAKE2b chain, makes them durable (one fdatasync per commit batch), cuts
 * a torn tail at open, and reads records back by position or in seq order. It does not
 * know what an op means (eng_op.c builds and parses them; the sequencer and MVCC above
 * decide what to write and when), it never prints, and it never rewrites a record.
 *
 * Directory layout:
 *
 *   <dbpath>/LOCK                      flock: exclusive for a server, shared for verify/dump
 *   <dbpath>/log/<first seq>.nlog      first seq as 20 decimal digits, zero-padded
 *
 * Segment file:
 *
 *   | offset | size | field                                                   |
 *   |--------|------|---------------------------------------------------------|
 *   | 0      | 8    | magic "NEDBLOG1"                                        |
 *   | 8      | 4    | format version, little-endian u32 (1)                   |
 *   | 12     | 4    | flags, little-endian u32 (0; bit 0 will mean encrypted) |
 *   | 16     | ...  | records, back to back, up to the end of the file        |
 *
 * Record (at offset r inside a segment, r >= 16):
 *
 *   | offset  | size | field                                                     |
 *   |---------|------|-----------------------------------------------------------|
 *   | r       | 4    | len: little-endian u32 length of body, 5..ENG_LOG_MAX_BODY |
 *   | r+4     | len  | body: the op document (BSON; its own int32 length == len)  |
 *   | r+4+len | 32   | hash = BLAKE2b-256(prev || body); prev = the previous      |
 *   |         |      | record's hash, or 32 zero bytes for seq 0                 |
 *
 * Invariants:
 *   1. Records are only ever appended. Existing bytes are never rewritten; the only
 *      shrink is cutting a torn tail of the last segment at open (bytes that were never
 *      synced, hence never acknowledged).
 *   2. Seqs are 0, 1, 2, ... with no gap across all segments; a segment's name is the seq
 *      of its first record, so segment i+1 starts where segment i ends.
 *   3. Every record's hash chains from the previous record's hash, across segments too.
 *   4. Only the last segment is written. Before a new segment is created the old one is
 *      flushed and fdatasync'ed, so a crash can only tear the last segment.
 *   5. A segment exceeds segment_size only when it holds a single record that does.
 *   6. eng_log_sync returning true means every appended record is durable: its segment
 *      was fdatasync'ed and, if a segment was created since the last sync, log/ fsync'ed.
 *   7. After a write or sync failure the log is failed: every later append, flush and
 *      sync fails until the log is reopened (no partial batch is ever reported durable).
 *   8. Readers (eng_log_read, iterators) only see bytes below a segment's `size`, which
 *      is advanced under seg_mu after the bytes were written, and always ends on a record.
 *   9. The seq -> position index (eng_log_locate) holds, for each segment, the offsets of
 *      a prefix of its records, walked from the segment's header by readers only (the
 *      length and the seq at the start of each body are checked on the way; bodies are
 *      not read). Since records are never rewritten, an offset once found stays right;
 *      each record is walked once per open, however many lookups follow.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "eng.h"
#include "eng_int.h"

#define WRITE_BUF_SIZE (1u << 20)

/* One segment's part of the seq -> position index (invariant 9): off[k] is the offset of
 * the record with seq first_seq + k, for k < n; `end` is the offset after record n - 1. */
struct log_seg_index {
    uint32_t *off;
    uint64_t n, cap;
    uint64_t end;
};

struct eng_log {
    char *dbpath;
    char *logdir;
    int lock_fd;
    int logdir_fd;
    uint64_t segment_size;
    char *warnings;

    /* Shared with readers: guarded by seg_mu (invariant 8). */
    pthread_mutex_t seg_mu;
    eng__seg_t *segs;
    size_t nsegs, segs_cap;
    uint64_t flushed_next_seq;     /* seqs below this are in the files */

    /* The seq -> position index of eng_log_locate: per segment, the offsets of its
     * first records in seq order, filled in lazily by readers as far as they needed
     * (invariant 9). Guarded by idx_mu, which the writer never takes. */
    pthread_mutex_t idx_mu;
    struct log_seg_index *sidx;
    size_t nsidx;

    /* Writer thread only. */
    uint64_t next_seq;
    uint8_t head[ENG_HASH_SIZE];
    uint64_t wsize;                /* size of the last segment including buffered bytes */
    uint64_t wflushed;             /* bytes of the last segment written to the file */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    bool dir_dirty;                /* a segment was created since the last sync */
    bool failed;                   /* invariant 7 */
    unsigned faults;               /* test hooks */
};

/* ---------------------------------------------------------------------------------------
 * Small shared helpers (declared in eng_int.h)
 * ------------------------------------------------------------------------------------- */

bool eng__crypto_init(bq_error_t *err)
{
    if (sodium_init() < 0) {
        bq_error_set(err, BQ_ERR_InternalError, "libsodium failed to initialize");
        return false;
    }
    return true;
}

void eng__hash(const uint8_t prev[ENG_HASH_SIZE], const uint8_t *body, size_t len,
               uint8_t out[ENG_HASH_SIZE])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, ENG_HASH_SIZE);
    crypto_generichash_update(&st, prev, ENG_HASH_SIZE);
    crypto_generichash_update(&st, body, len);
    crypto_generichash_final(&st, out, ENG_HASH_SIZE);
}

char *eng_hash_hex(const uint8_t hash[ENG_HASH_SIZE], char out[2 * ENG_HASH_SIZE + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < ENG_HASH_SIZE; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * ENG_HASH_SIZE] = '\0';
    return out;
}

void eng__seg_header(uint8_t out[ENG__SEG_HEADER_SIZE])
{
    memcpy(out, ENG__SEG_MAGIC, ENG__SEG_MAGIC_LEN);
    eng__put_le32(out + 8, ENG__SEG_VERSION);
    eng__put_le32(out + 12, 0);
}

void eng__seg_name(uint64_t first_seq, char *name, size_t size)
{
    snprintf(name, size, "%020" PRIu64 "%s", first_seq, ENG__SEG_SUFFIX);
}

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const eng__seg_t *)a)->first_seq, y = ((const eng__seg_t *)b)->first_seq;
    return x < y ? -1 : x > y;
}

bool eng__segments_list(int logdir_fd, const char *logdir, eng__seg_t **segs, size_t *n,
                        bq_error_t *err)
{
    *segs = NULL;
    *n = 0;
    int fd = dup(logdir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        bq_error_set(err, ENG_ERR_IO, "cannot list %s: %s", logdir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    rewinddir(d);
    size_t cap = 0;
    struct dirent *de;
    const size_t suffix_len = sizeof ENG__SEG_SUFFIX - 1;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < suffix_len || strcmp(de->d_name + len - suffix_len, ENG__SEG_SUFFIX) != 0)
            continue;
        bool digits = len == ENG__SEG_NAME_DIGITS + suffix_len;
        uint64_t seq = 0;
        for (size_t i = 0; digits && i < ENG__SEG_NAME_DIGITS; i++) {
            char c = de->d_name[i];
            uint64_t next = seq * 10 + (uint64_t)(c - '0');
            if (c < '0' || c > '9' || next / 10 != seq)
                digits = false;
            seq = next;
        }
        if (!digits) {
            bq_error_set(err, ENG_ERR_CORRUPT,
                         "%s/%s: a log segment name must be 20 digits and .nlog", logdir,
                         de->d_name);
            goto fail;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            eng__seg_t *grown = realloc(*segs, cap * sizeof **segs);
            if (!grown) {
                bq_error_set(err, BQ_ERR_InternalError, "out of memory listing %s", logdir);
                goto fail;
            }
            *segs = grown;
        }
        eng__seg_t *s = &(*segs)[(*n)++];
        memset(s, 0, sizeof *s);
        s->first_seq = seq;
        s->fd = -1;
        memcpy(s->name, de->d_name, len + 1);
    }
    closedir(d);
    if (*n)
        qsort(*segs, *n, sizeof **segs, seg_cmp);
    return true;
fail:
    closedir(d);
    free(*segs);
    *segs = NULL;
    *n = 0;
    return false;
}

int eng__lock_take(const char *dbpath, bool exclusive, bool create, bq_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", dbpath);
    /* A reader opens LOCK read-only (flock works on any fd), so it writes nothing unless
     * LOCK is missing, and works on read-only media. */
    int fd = create ? open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0644)
                    : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && !create && errno == ENOENT)
        fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0644);
    if (fd < 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            bq_error_set(err, ENG_ERR_LOCKED,
                         "data directory %s is in use: %s is locked by another process "
                         "(a running nedbd or nedb tool); stop it first",
                         dbpath, path);
        else
            bq_error_set(err, ENG_ERR_IO, "cannot lock %s: %s", path, strerror(e));
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------- */

void eng__log_inject_fault(eng_log_t *log, unsigned faults)
{
    log->faults |= faults;
}

static bool log_fail(eng_log_t *log, bq_error_t *err, const char *what, int e)
{
    log->failed = true;
    bq_error_set(err, ENG_ERR_IO,
                 "%s failed on %s/%s: %s; the log takes no more writes until reopened", what,
                 log->logdir, log->segs[log->nsegs - 1].name, strerror(e));
    return false;
}

static bool check_writable(const eng_log_t *log, bq_error_t *err)
{
    if (log->failed) {
        bq_error_set(err, ENG_ERR_IO,
                     "the log at %s failed earlier and takes no more writes until reopened",
                     log->logdir);
        return false;
    }
    return true;
}

/* Writes the buffer to the last segment and publishes the new size to readers. */
static bool log_flush_buf(eng_log_t *log, bq_error_t *err)
{
    eng__seg_t *seg = &log->segs[log->nsegs - 1];
    size_t done = 0;
    while (done < log->buf_len) {
        ssize_t w;
        if (log->faults & ENG__FAULT_WRITE) {
            log->faults &= ~(unsigned)ENG__FAULT_WRITE;
            w = -1;
            errno = EIO;
        } else {
            w = pwrite(seg->fd, log->buf + done, log->buf_len - done,
                       (off_t)(log->wflushed + done));
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return log_fail(log, err, "write", w < 0 ? errno : EIO);
        done += (size_t)w;
    }
    log->wflushed += log->buf_len;
    log->buf_len = 0;
    pthread_mutex_lock(&log->seg_mu);
    seg->size = log->wflushed;
    log->flushed_next_seq = log->next_seq;
    pthread_mutex_unlock(&log->seg_mu);
    return true;
}

static bool log_datasync(eng_log_t *log, int fd, bq_error_t *err)
{
    int rc;
    if (log->faults & ENG__FAULT_SYNC) {
        log->faults &= ~(unsigned)ENG__FAULT_SYNC;
        rc = -1;
        errno = EIO;
    } else {
        rc = fdatasync(fd);
    }
    return rc == 0 || log_fail(log, err, "fdatasync", errno);
}

/* Creates the segment whose first record will be seq `first` and makes it the last. */
static bool log_segment_create(eng_log_t *log, uint64_t first, bq_error_t *err)
{
    if (log->nsegs == log->segs_cap) {
        size_t cap = log->segs_cap ? 2 * log->segs_cap : 16;
        pthread_mutex_lock(&log->seg_mu);
        eng__seg_t *grown = realloc(log->segs, cap * sizeof *grown);
        if (grown) {
            log->segs = grown;
            log->segs_cap = cap;
        }
        pthread_mutex_unlock(&log->seg_mu);
        if (!grown) {
            bq_error_set(err, BQ_ERR_InternalError, "out of memory adding a log segment");
            return false;
        }
    }
    eng__seg_t seg = {.first_seq = first, .size = 0, .fd = -1};
    eng__seg_name(first, seg.name, sizeof seg.name);
    seg.fd = openat(log->logdir_fd, seg.name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (seg.fd < 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot create log segment %s/%s: %s", log->logdir,
                     seg.name, strerror(errno));
        log->failed = true;
        return false;
    }
    pthread_mutex_lock(&log->seg_mu);
    log->segs[log->nsegs++] = seg;
    pthread_mutex_unlock(&log->seg_mu);
    log->wsize = log->wflushed = 0;
    log->dir_dirty = true;
    eng__seg_header(log->buf);
    log->buf_len = ENG__SEG_HEADER_SIZE;
    log->wsize = ENG__SEG_HEADER_SIZE;
    return true;
}

static bool log_sync(eng_log_t *log, bq_error_t *err)
{
    if (!check_writable(log, err) || !log_flush_buf(log, err) ||
        !log_datasync(log, log->segs[log->nsegs - 1].fd, err))
        return false;
    if (log->dir_dirty) {
        if (fsync(log->logdir_fd) != 0)
            return log_fail(log, err, "fsync of the log directory", errno);
        log->dir_dirty = false;
    }
    return true;
}

bool eng_log_append(eng_log_t *log, const bson_t *body, uint8_t hash_out[ENG_HASH_SIZE],
                    eng_pos_t *pos_out, bq_error_t *err)
{
    if (!check_writable(log, err))
        return false;
    const uint8_t *data = bson_get_data(body);
    uint32_t len = body->len;
    int64_t seq;
    if (!eng_op_peek_seq(data, len, &seq) || (uint64_t)seq != log->next_seq) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "an appended op must start with seq %" PRIu64 " (the log's next seq)",
                     log->next_seq);
        return false;
    }
    if (len > ENG_LOG_MAX_BODY) {
        bq_error_set(err, BQ_ERR_BadValue, "op %" PRIu64 " of %u bytes is larger than %u",
                     log->next_seq, len, ENG_LOG_MAX_BODY);
        return false;
    }
    size_t rec_len = (size_t)len + ENG__REC_OVERHEAD;
    /* Invariant 4: roll over only after the old segment is durable. */
    if (log->wsize > ENG__SEG_HEADER_SIZE && log->wsize + rec_len > log->segment_size) {
        if (!log_sync(log, err) || !log_segment_create(log, log->next_seq, err))
            return false;
    }
    if (log->buf_len + rec_len > log->buf_cap) {
        if (!log_flush_buf(log, err))
            return false;
        if (rec_len > log->buf_cap) {
            uint8_t *grown = realloc(log->buf, rec_len);
            if (!grown) {
                bq_error_set(err, BQ_ERR_InternalError, "out of memory appending op %" PRIu64,
                             log->next_seq);
                return false;
            }
            log->buf = grown;
            log->buf_cap = rec_len;
        }
    }
    uint8_t *p = log->buf + log->buf_len;
    eng__put_le32(p, len);
    memcpy(p + 4, data, len);
    eng__hash(log->head, data, len, p + 4 + len);
    memcpy(log->head, p + 4 + len, ENG_HASH_SIZE);
    if (hash_out)
        memcpy(hash_out, log->head, ENG_HASH_SIZE);
    if (pos_out) {
        pos_out->seg = (uint32_t)(log->nsegs - 1);
        pos_out->off = (uint32_t)log->wsize;
    }
    log->buf_len += rec_len;
    log->wsize += rec_len;
    log->next_seq++;
    return true;
}

bool eng_log_flush(eng_log_t *log, bq_error_t *err)
{
    return check_writable(log, err) && log_flush_buf(log, err);
}

bool eng_log_sync(eng_log_t *log, bq_error_t *err)
{
    return log_sync(log, err);
}

void eng_log_head(const eng_log_t *log, uint64_t *next_seq, uint8_t head[ENG_HASH_SIZE])
{
    if (next_seq)
        *next_seq = log->next_seq;
    if (head)
        memcpy(head, log->head, ENG_HASH_SIZE);
}

const char *eng_log_warnings(const eng_log_t *log)
{
    return log->warnings ? log->warnings : "";
}

/* ---------------------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------------------- */

static void add_warning(eng_log_t *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_warning(eng_log_t *log, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = log->warnings ? strlen(log->warnings) : 0;
    char *grown = realloc(log->warnings, old + strlen(line) + 2);
    if (!grown)
        return;
    memcpy(grown + old, line, strlen(line));
    grown[old + strlen(line)] = '\n';
    grown[old + strlen(line) + 1] = '\0';
    log->warnings = grown;
}

/* Cuts the torn tail found by the scan (invariant 1: only unsynced bytes are cut). */
static bool cut_torn_tail(eng_log_t *log, const eng__scan_t *scan, bq_error_t *err)
{
    eng__seg_t *seg = &log->segs[log->nsegs - 1];
    int fd = openat(log->logdir_fd, seg->name, O_RDWR | O_CLOEXEC);
    uint64_t keep = scan->torn_header ? 0 : scan->torn_offset;
    bool ok = fd >= 0 && ftruncate(fd, (off_t)keep) == 0;
    if (ok && scan->torn_header) {
        uint8_t hdr[ENG__SEG_HEADER_SIZE];
        eng__seg_header(hdr);
        ok = pwrite(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr;
        keep = ENG__SEG_HEADER_SIZE;
    }
    ok = ok && fdatasync(fd) == 0;
    if (!ok) {
        bq_error_set(err, ENG_ERR_IO, "cannot cut the torn tail of %s/%s: %s", log->logdir,
                     seg->name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    if (scan->torn_header)
        add_warning(log,
                    "log/%s: its header was cut short by a crash (%" PRIu64 " bytes); "
                    "the header was written again",
                    seg->name, scan->torn_bytes);
    else
        add_warning(log,
                    "log/%s: cut a torn tail of %" PRIu64 " bytes at offset %" PRIu64
                    " (a record after seq %" PRIu64 " that was never acknowledged)",
                    seg->name, scan->torn_bytes, scan->torn_offset,
                    scan->next_seq ? scan->next_seq - 1 : 0);
    return true;
}

static bool log_scan(eng_log_t *log, const eng_log_options_t *opts, bq_error_t *err)
{
    eng__scan_t scan;
    memset(&scan, 0, sizeof scan);
    scan.logdir_fd = log->logdir_fd;
    scan.segs = log->segs;
    scan.nsegs = log->nsegs;
    scan.from_seq = opts ? opts->verify_from_seq : 0;
    if (opts)
        memcpy(scan.from_hash, opts->verify_from_hash, ENG_HASH_SIZE);
    scan.on_record = opts ? opts->on_record : NULL;
    scan.on_record_ctx = opts ? opts->on_record_ctx : NULL;
    if (!eng__scan_run(&scan, err))
        return false;
    if (scan.reason != ENG_VERIFY_OK) {
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "the op log is corrupt at seq %" PRIu64 " (%s/%s, byte offset %" PRIu64
                     "): %s: %s. NEDB does not repair a chain; run `nedb verify` and "
                     "decide what to do with it",
                     scan.bad_seq, log->logdir, log->segs[scan.bad_seg].name, scan.bad_off,
                     eng_verify_reason_name(scan.reason), scan.detail);
        return false;
    }
    if (scan.from_seq > 0 && scan.next_seq < scan.from_seq) {
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "broken link: the op log in %s ends at seq %" PRIu64
                     " before the checkpoint's seq %" PRIu64,
                     log->logdir, scan.next_seq, scan.from_seq);
        return false;
    }
    if (scan.torn && !cut_torn_tail(log, &scan, err))
        return false;
    log->next_seq = log->flushed_next_seq = scan.next_seq;
    memcpy(log->head, scan.head, ENG_HASH_SIZE);
    uint64_t end = scan.torn ? (scan.torn_header ? ENG__SEG_HEADER_SIZE : scan.torn_offset)
                             : scan.tail_end;
    eng__seg_t *last = &log->segs[log->nsegs - 1];
    last->fd = openat(log->logdir_fd, last->name, O_RDWR | O_CLOEXEC);
    if (last->fd < 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot open %s/%s: %s", log->logdir, last->name,
                     strerror(errno));
        return false;
    }
    last->size = log->wsize = log->wflushed = end;
    for (size_t i = 0; i + 1 < log->nsegs; i++) {
        struct stat st;
        if (fstatat(log->logdir_fd, log->segs[i].name, &st, 0) != 0) {
            bq_error_set(err, ENG_ERR_IO, "cannot stat %s/%s: %s", log->logdir,
                         log->segs[i].name, strerror(errno));
            return false;
        }
        log->segs[i].size = (uint64_t)st.st_size;
    }
    return true;
}

bool eng_log_open(const char *dbpath, const eng_log_options_t *opts, eng_log_t **out,
                  bq_error_t *err)
{
    *out = NULL;
    uint64_t seg_size = opts && opts->segment_size ? opts->segment_size
                                                   : ENG_LOG_SEGMENT_SIZE_DEFAULT;
    if (seg_size < ENG_LOG_SEGMENT_SIZE_MIN || seg_size > ENG_LOG_SEGMENT_SIZE_MAX) {
        bq_error_set(err, BQ_ERR_BadValue, "segment_size %" PRIu64 " must be in [%u, %u]",
                     seg_size, ENG_LOG_SEGMENT_SIZE_MIN, ENG_LOG_SEGMENT_SIZE_MAX);
        return false;
    }
    if (!eng__crypto_init(err))
        return false;
    if (mkdir(dbpath, 0755) != 0 && errno != EEXIST) {
        bq_error_set(err, ENG_ERR_IO, "cannot create data directory %s: %s", dbpath,
                     strerror(errno));
        return false;
    }
    eng_log_t *log = calloc(1, sizeof *log);
    if (!log) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory opening %s", dbpath);
        return false;
    }
    pthread_mutex_init(&log->seg_mu, NULL);
    pthread_mutex_init(&log->idx_mu, NULL);
    log->lock_fd = log->logdir_fd = -1;
    log->segment_size = seg_size;
    log->dbpath = strdup(dbpath);
    log->buf_cap = WRITE_BUF_SIZE;
    log->buf = malloc(log->buf_cap);
    size_t n = strlen(dbpath) + sizeof "/log";
    log->logdir = malloc(n);
    if (!log->dbpath || !log->buf || !log->logdir) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory opening %s", dbpath);
        goto fail;
    }
    snprintf(log->logdir, n, "%s/log", dbpath);
    log->lock_fd = eng__lock_take(dbpath, true, true, err);
    if (log->lock_fd < 0)
        goto fail;
    if (mkdir(log->logdir, 0755) != 0 && errno != EEXIST) {
        bq_error_set(err, ENG_ERR_IO, "cannot create %s: %s", log->logdir, strerror(errno));
        goto fail;
    }
    log->logdir_fd = open(log->logdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->logdir_fd < 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot open %s: %s", log->logdir, strerror(errno));
        goto fail;
    }
    if (!eng__segments_list(log->logdir_fd, log->logdir, &log->segs, &log->nsegs, err))
        goto fail;
    log->segs_cap = log->nsegs;
    if (log->nsegs == 0) {
        if (opts && opts->verify_from_seq > 0) {
            bq_error_set(err, ENG_ERR_CORRUPT,
                         "broken link: %s has no log segments but the checkpoint is at "
                         "seq %" PRIu64,
                         log->logdir, opts->verify_from_seq);
            goto fail;
        }
        if (!log_segment_create(log, 0, err) || !log_sync(log, err))
            goto fail;
    } else if (!log_scan(log, opts, err)) {
        goto fail;
    }
    *out = log;
    return true;
fail:
    log->failed = true;
    eng_log_close(log);
    return false;
}

void eng_log_close(eng_log_t *log)
{
    if (!log)
        return;
    if (!log->failed && log->nsegs && log->buf_len)
        log_flush_buf(log, NULL);
    for (size_t i = 0; i < log->nsegs; i++)
        if (log->segs[i].fd >= 0)
            close(log->segs[i].fd);
    if (log->logdir_fd >= 0)
        close(log->logdir_fd);
    if (log->lock_fd >= 0)
        close(log->lock_fd);   /* releases the flock */
    pthread_mutex_destroy(&log->seg_mu);
    pthread_mutex_destroy(&log->idx_mu);
    for (size_t i = 0; i < log->nsidx; i++)
        free(log->sidx[i].off);
    free(log->sidx);
    free(log->segs);
    free(log->buf);
    free(log->logdir);
    free(log->dbpath);
    free(log->warnings);
    free(log);
}

/* ---------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------- */

/* Under seg_mu: the fd and readable size of segment i, opening it on first use. */
static bool seg_get(eng_log_t *log, uint32_t i, int *fd, uint64_t *size, uint64_t *first,
                    bq_error_t *err)
{
    bool ok = true;
    pthread_mutex_lock(&log->seg_mu);
    if (i >= log->nsegs) {
        ok = false;
        bq_error_set(err, BQ_ERR_BadValue, "no log segment number %u", i);
    } else {
        eng__seg_t *s = &log->segs[i];
        if (s->fd < 0)
            s->fd = openat(log->logdir_fd, s->name, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) {
            ok = false;
            bq_error_set(err, ENG_ERR_IO, "cannot open %s/%s: %s", log->logdir, s->name,
                         strerror(errno));
        } else {
            *fd = s->fd;
            *size = s->size;
            if (first)
                *first = s->first_seq;
        }
    }
    pthread_mutex_unlock(&log->seg_mu);
    return ok;
}

static bool pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return false;
        }
        done += (size_t)r;
    }
    return true;
}

bool eng_log_read(eng_log_t *log, eng_pos_t pos, bson_t *body,
                  uint8_t hash_out[ENG_HASH_SIZE], bq_error_t *err)
{
    bson_init(body);
    int fd;
    uint64_t size;
    if (!seg_get(log, pos.seg, &fd, &size, NULL, err))
        return false;
    if (pos.off < ENG__SEG_HEADER_SIZE || (uint64_t)pos.off + ENG__REC_OVERHEAD + 5 > size) {
        bq_error_set(err, BQ_ERR_BadValue, "no flushed log record at segment %u offset %u",
                     pos.seg, pos.off);
        return false;
    }
    uint8_t small[512];
    size_t first = (size_t)(size - pos.off < sizeof small ? size - pos.off : sizeof small);
    if (!pread_all(fd, small, first, pos.off)) {
        bq_error_set(err, ENG_ERR_IO, "cannot read the log record at segment %u offset %u: %s",
                     pos.seg, pos.off, strerror(errno));
        return false;
    }
    uint32_t len = eng__le32(small);
    if (len < 5 || len > ENG_LOG_MAX_BODY ||
        (uint64_t)pos.off + ENG__REC_OVERHEAD + len > size) {
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "the log record at segment %u offset %u has a bad length %u", pos.seg,
                     pos.off, len);
        return false;
    }
    uint8_t *rec = small, *big = NULL;
    size_t rec_len = (size_t)len + ENG__REC_OVERHEAD;
    if (rec_len > first) {
        big = malloc(rec_len);
        if (!big) {
            bq_error_set(err, BQ_ERR_InternalError, "out of memory reading a log record");
            return false;
        }
        memcpy(big, small, first);
        if (!pread_all(fd, big + first, rec_len - first, pos.off + first)) {
            bq_error_set(err, ENG_ERR_IO,
                         "cannot read the log record at segment %u offset %u: %s", pos.seg,
                         pos.off, strerror(errno));
            free(big);
            return false;
        }
        rec = big;
    }
    bson_t view;
    bool ok = bson_init_static(&view, rec + 4, len);
    if (ok) {
        bson_destroy(body);
        bson_copy_to(&view, body);
        if (hash_out)
            memcpy(hash_out, rec + 4 + len, ENG_HASH_SIZE);
    } else {
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "the log record at segment %u offset %u is not a BSON document", pos.seg,
                     pos.off);
    }
    free(big);
    return ok;
}

#define ITER_BUF_SIZE (1u << 20)

struct eng_log_iter {
    eng_log_t *log;
    uint32_t seg;
    uint64_t off;          /* next record's offset in segment seg */
    uint64_t next_seq;     /* its seq */
    uint64_t skip_until;   /* records below this seq are passed over */
    uint8_t *buf;          /* bytes [buf_off, buf_off + buf_len) of segment buf_seg */
    size_t buf_len, buf_cap;
    uint64_t buf_off;
    uint32_t buf_seg;
};

/* Under seg_mu: the segment that would hold seq, the last whose first seq is <= seq (0
 * when there is none: the caller checks seq against its first seq). */
static size_t seg_find(const eng_log_t *log, uint64_t seq)
{
    size_t lo = 0, hi = log->nsegs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (log->segs[mid].first_seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

eng_log_iter_t *eng_log_iter_new(eng_log_t *log, uint64_t from_seq, bq_error_t *err)
{
    pthread_mutex_lock(&log->seg_mu);
    uint64_t flushed = log->flushed_next_seq;
    size_t lo = seg_find(log, from_seq);
    uint64_t first = log->nsegs ? log->segs[lo].first_seq : 0;
    pthread_mutex_unlock(&log->seg_mu);
    if (from_seq > flushed) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "cannot iterate the log from seq %" PRIu64 ": it is flushed up to %" PRIu64,
                     from_seq, flushed);
        return NULL;
    }
    eng_log_iter_t *it = calloc(1, sizeof *it);
    if (it)
        it->buf = malloc(ITER_BUF_SIZE);
    if (!it || !it->buf) {
        free(it);
        bq_error_set(err, BQ_ERR_InternalError, "out of memory creating a log iterator");
        return NULL;
    }
    it->log = log;
    it->buf_cap = ITER_BUF_SIZE;
    it->seg = (uint32_t)lo;
    it->off = ENG__SEG_HEADER_SIZE;
    it->next_seq = first;
    it->skip_until = from_seq;
    it->buf_seg = UINT32_MAX;
    return it;
}

void eng_log_iter_destroy(eng_log_iter_t *it)
{
    if (it) {
        free(it->buf);
        free(it);
    }
}

/* Makes bytes [off, off + len) of the current segment available in it->buf. */
static bool iter_fill(eng_log_iter_t *it, int fd, uint64_t size, uint64_t off, size_t len,
                      const uint8_t **out, bq_error_t *err)
{
    if (it->buf_seg == it->seg && off >= it->buf_off &&
        off + len <= it->buf_off + it->buf_len) {
        *out = it->buf + (off - it->buf_off);
        return true;
    }
    if (len > it->buf_cap) {
        uint8_t *grown = realloc(it->buf, len);
        if (!grown) {
            bq_error_set(err, BQ_ERR_InternalError, "out of memory reading the log");
            return false;
        }
        it->buf = grown;
        it->buf_cap = len;
    }
    size_t want = it->buf_cap;
    if (want > size - off)
        want = (size_t)(size - off);
    if (!pread_all(fd, it->buf, want, off)) {
        bq_error_set(err, ENG_ERR_IO, "cannot read log segment %u: %s", it->seg,
                     strerror(errno));
        return false;
    }
    it->buf_seg = it->seg;
    it->buf_off = off;
    it->buf_len = want;
    *out = it->buf;
    return true;
}

bool eng_log_iter_next(eng_log_iter_t *it, eng_record_t *rec, bq_error_t *err)
{
    for (;;) {
        int fd;
        uint64_t size, first;
        if (!seg_get(it->log, it->seg, &fd, &size, &first, err))
            return false;
        if (it->off >= size) {
            int nfd;
            uint64_t nsize, nfirst;
            if (!seg_get(it->log, it->seg + 1, &nfd, &nsize, &nfirst, NULL))
                return false;  /* the end, for now */
            it->seg++;
            it->off = ENG__SEG_HEADER_SIZE;
            continue;
        }
        const uint8_t *p;
        if (size - it->off < ENG__REC_OVERHEAD + 5)
            goto corrupt;
        if (!iter_fill(it, fd, size, it->off, 4, &p, err))
            return false;
        uint32_t len = eng__le32(p);
        if (len < 5 || len > ENG_LOG_MAX_BODY || len + ENG__REC_OVERHEAD > size - it->off)
            goto corrupt;
        if (!iter_fill(it, fd, size, it->off, len + ENG__REC_OVERHEAD, &p, err))
            return false;
        int64_t seq;
        if (!eng_op_peek_seq(p + 4, len, &seq) || (uint64_t)seq != it->next_seq)
            goto corrupt;
        rec->seq = it->next_seq;
        rec->pos.seg = it->seg;
        rec->pos.off = (uint32_t)it->off;
        rec->body = p + 4;
        rec->len = len;
        rec->hash = p + 4 + len;
        it->off += len + ENG__REC_OVERHEAD;
        it->next_seq++;
        if (rec->seq >= it->skip_until)
            return true;
    }
corrupt:
    bq_error_set(err, ENG_ERR_CORRUPT,
                     "log segment %u is corrupt at offset %" PRIu64 " (seq %" PRIu64 ")",
                     it->seg, it->off, it->next_seq);
    return false;
}

/* ---------------------------------------------------------------------------------------
 * Reading by seq
 * ------------------------------------------------------------------------------------- */

#define LOCATE_BUF_SIZE (64u << 10)
#define LOCATE_HEAD 22u /* the len field and the body's first 18 bytes (eng_op_peek_seq) */

/* Under idx_mu: walks segment `i` (whose first record is seq `first`, `size` bytes
 * readable) from where its index ends until it holds record `want` (an index into the
 * segment) or the readable bytes end. */
static bool locate_extend(eng_log_t *log, uint32_t i, const char *name, int fd, uint64_t size,
                          uint64_t first, uint64_t want, bq_error_t *err)
{
    struct log_seg_index *x = &log->sidx[i];
    uint8_t *buf = NULL;
    uint64_t buf_off = 0;
    size_t buf_len = 0;
    bool ok = true;
    if (x->end == 0)
        x->end = ENG__SEG_HEADER_SIZE;
    while (ok && x->n <= want && x->end < size) {
        uint64_t off = x->end;
        if (size - off < ENG__REC_OVERHEAD + 5 || off > UINT32_MAX)
            goto corrupt;
        if (!buf) {
            buf = malloc(LOCATE_BUF_SIZE);
            if (!buf) {
                bq_error_set(err, BQ_ERR_InternalError, "out of memory reading the log");
                return false;
            }
        }
        /* a whole record (ENG__REC_OVERHEAD + 18 bytes at least) is longer than its head */
        if (off < buf_off || off + LOCATE_HEAD > buf_off + buf_len) {
            size_t want_len = size - off < LOCATE_BUF_SIZE ? (size_t)(size - off)
                                                            : LOCATE_BUF_SIZE;
            if (!pread_all(fd, buf, want_len, off)) {
                bq_error_set(err, ENG_ERR_IO, "cannot read log segment %s/%s: %s",
                             log->logdir, name, strerror(errno));
                ok = false;
                break;
            }
            buf_off = off;
            buf_len = want_len;
        }
        const uint8_t *p = buf + (off - buf_off);
        uint32_t len = eng__le32(p);
        int64_t seq;
        if (len < 5 || len > ENG_LOG_MAX_BODY || len + ENG__REC_OVERHEAD > size - off ||
            !eng_op_peek_seq(p + 4, len < LOCATE_HEAD - 4 ? len : LOCATE_HEAD - 4, &seq) ||
            (uint64_t)seq != first + x->n)
            goto corrupt;
        if (x->n == x->cap) {
            uint64_t cap = x->cap ? 2 * x->cap : 1024;
            uint32_t *grown = realloc(x->off, cap * sizeof *grown);
            if (!grown) {
                bq_error_set(err, BQ_ERR_InternalError, "out of memory indexing the log");
                ok = false;
                break;
            }
            x->off = grown;
            x->cap = cap;
        }
        x->off[x->n++] = (uint32_t)off;
        x->end = off + len + ENG__REC_OVERHEAD;
    }
    free(buf);
    return ok;
corrupt:
    free(buf);
    bq_error_set(err, ENG_ERR_CORRUPT,
                 "log segment %s/%s is corrupt at offset %" PRIu64 " (seq %" PRIu64 ")",
                 log->logdir, name, x->end, first + x->n);
    return false;
}

bool eng_log_locate(eng_log_t *log, uint64_t seq, eng_pos_t *pos, bq_error_t *err)
{
    pthread_mutex_lock(&log->seg_mu);
    uint64_t flushed = log->flushed_next_seq;
    size_t nsegs = log->nsegs, lo = seg_find(log, seq);
    uint64_t first = nsegs ? log->segs[lo].first_seq : 0;
    char name[sizeof log->segs[0].name] = "";
    if (nsegs)
        memcpy(name, log->segs[lo].name, sizeof name);
    pthread_mutex_unlock(&log->seg_mu);
    if (seq >= flushed || nsegs == 0 || seq < first) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "no log record with seq %" PRIu64 ": the log is flushed up to seq %" PRIu64,
                     seq, flushed);
        return false;
    }
    int fd;
    uint64_t size;
    if (!seg_get(log, (uint32_t)lo, &fd, &size, NULL, err))
        return false;
    uint64_t k = seq - first;
    bool ok = true;
    pthread_mutex_lock(&log->idx_mu);
    if (log->nsidx < nsegs) {
        struct log_seg_index *grown = realloc(log->sidx, nsegs * sizeof *grown);
        if (!grown) {
            bq_error_set(err, BQ_ERR_InternalError, "out of memory indexing the log");
            ok = false;
        } else {
            memset(grown + log->nsidx, 0, (nsegs - log->nsidx) * sizeof *grown);
            log->sidx = grown;
            log->nsidx = nsegs;
        }
    }
    if (ok && log->sidx[lo].n <= k)
        ok = locate_extend(log, (uint32_t)lo, name, fd, size, first, k, err);
    if (ok && log->sidx[lo].n <= k) {
        /* the segment's readable bytes ended first: the seqs say it holds seq */
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "log segment %s/%s ends before seq %" PRIu64, log->logdir, name, seq);
        ok = false;
    }
    if (ok) {
        pos->seg = (uint32_t)lo;
        pos->off = log->sidx[lo].off[k];
    }
    pthread_mutex_unlock(&log->idx_mu);
    return ok;
}

/* eng_log_locate then eng_log_read (body always initialized), with the record's position
 * into *pos. */
static bool read_seq(eng_log_t *log, uint64_t seq, bson_t *body,
                     uint8_t hash_out[ENG_HASH_SIZE], eng_pos_t *pos, bq_error_t *err)
{
    if (!eng_log_locate(log, seq, pos, err)) {
        bson_init(body);
        return false;
    }
    return eng_log_read(log, *pos, body, hash_out, err);
}

bool eng_log_read_seq(eng_log_t *log, uint64_t seq, bson_t *body, bq_error_t *err)
{
    eng_pos_t pos;
    return read_seq(log, seq, body, NULL, &pos, err);
}

bool eng__log_read_checked(eng_log_t *log, uint64_t seq, bson_t *body, bq_error_t *err)
{
    eng_pos_t pos;
    uint8_t hash[ENG_HASH_SIZE], prev[ENG_HASH_SIZE], want[ENG_HASH_SIZE];
    if (!read_seq(log, seq, body, hash, &pos, err))
        return false;
    /* the previous record's hash: the 32 bytes before this record in its segment, or the
     * end of the previous record when this one opens its segment */
    memset(prev, 0, sizeof prev);
    if (seq > 0 && pos.off > ENG__SEG_HEADER_SIZE) {
        int fd;
        uint64_t size;
        if (!seg_get(log, pos.seg, &fd, &size, NULL, err))
            return false;
        if (pos.off < ENG__SEG_HEADER_SIZE + ENG__REC_OVERHEAD) {
            bq_error_set(err, ENG_ERR_CORRUPT, "the log record of seq %" PRIu64 " starts "
                         "inside its segment's first record (segment %u offset %u)", seq,
                         pos.seg, pos.off);
            return false;
        }
        if (!pread_all(fd, prev, ENG_HASH_SIZE, pos.off - ENG_HASH_SIZE)) {
            bq_error_set(err, ENG_ERR_IO, "cannot read the log record before seq %" PRIu64
                         " (segment %u offset %u): %s", seq, pos.seg, pos.off,
                         strerror(errno));
            return false;
        }
    } else if (seq > 0) {
        eng_pos_t ppos;
        bson_t pbody;
        bool ok = read_seq(log, seq - 1, &pbody, prev, &ppos, err);
        bson_destroy(&pbody);
        if (!ok)
            return false;
    }
    eng__hash(prev, bson_get_data(body), body->len, want);
    if (sodium_memcmp(want, hash, ENG_HASH_SIZE) != 0) {
        bq_error_set(err, ENG_ERR_CORRUPT,
                     "the log record of seq %" PRIu64 " (segment %u offset %u) fails its "
                     "hash: it changed after the chain was verified", seq, pos.seg, pos.off);
        return false;
    }
    return true;
}
