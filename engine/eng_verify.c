/*
 * eng_verify.c: walking the hash chain. One scanner (eng__scan_run) serves both recovery
 * (eng_log_open decides what a finding means: cut a torn tail, refuse anything else) and
 * the offline check behind `nedb verify` and `nedb dump` (eng_verify reports it). Keeping
 * one walker means the server and the tool can never disagree about a log.
 *
 * The scanner maps each segment read-only and checks it in three passes: (1) in order,
 * the framing of every record (len in range and equal to the BSON document's own length)
 * and its seq; (2) the hashes BLAKE2b(prev || body) against the stored ones, and the op
 * documents when asked, split over up to 8 threads, which works because a record's check
 * needs only its body and the previous record's *stored* hash; (3) in order again, the
 * on_record calls up to the first finding. Findings are ranked by record, so the first bad
 * record is the one reported however the threads finish. It never writes, and allocates
 * one offset array per segment: about 1.5 to 2 million small records a second on 2 cores.
 *
 * How findings are told apart (the first one stops the walk):
 *   - torn tail: the last segment ends inside a record (or inside its header) whose length
 *     field, when present, agrees with the BSON length after it. Only the last segment.
 *   - bad length: len < 5, len > ENG_LOG_MAX_BODY, len disagrees with the body's own
 *     length, the body does not end in NUL, or a non-last segment ends inside a record.
 *   - hash mismatch / broken link: the stored hash is not BLAKE2b(prev || body). If the
 *     next record in the segment still chains from the stored hash, the body was changed
 *     (hash mismatch); if it does not, the stored hash itself was (broken link). With a
 *     checkpoint start, a stored hash at from_seq - 1 unlike the checkpoint's is a broken
 *     link too.
 *   - gap in seq: the body's seq (or a segment's name) is not the next seq.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eng.h"
#include "eng_int.h"

const char *eng_verify_reason_name(eng_verify_reason_t reason)
{
    switch (reason) {
    case ENG_VERIFY_OK: return "ok";
    case ENG_VERIFY_HASH_MISMATCH: return "hash mismatch";
    case ENG_VERIFY_BROKEN_LINK: return "broken link";
    case ENG_VERIFY_BAD_LENGTH: return "bad length";
    case ENG_VERIFY_GAP: return "gap in seq";
    case ENG_VERIFY_TORN_TAIL: return "torn tail";
    case ENG_VERIFY_BAD_HEADER: return "bad segment header";
    case ENG_VERIFY_BAD_OP: return "bad op document";
    }
    return "unknown";
}

/* A problem found inside one segment, before it is known to be the first one: records
 * are checked in two passes (framing in order, then hashes in parallel), so findings are
 * ranked by record index, then by `rank` (for one record: hash, then framing or seq, then
 * the op document), which is the order a one-pass walk would meet them in. */
typedef struct finding {
    bool found;
    size_t idx;            /* record index in the segment */
    int rank;
    eng_verify_reason_t reason;
    uint64_t off;
    char detail[256];
} finding_t;

enum { RANK_HASH, RANK_FRAME, RANK_OP };

static void find(finding_t *f, size_t idx, int rank, eng_verify_reason_t reason,
                 uint64_t off, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void find(finding_t *f, size_t idx, int rank, eng_verify_reason_t reason,
                 uint64_t off, const char *fmt, ...)
{
    if (f->found && (f->idx < idx || (f->idx == idx && f->rank <= rank)))
        return;
    f->found = true;
    f->idx = idx;
    f->rank = rank;
    f->reason = reason;
    f->off = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
}

static void scan_bad(eng__scan_t *s, eng_verify_reason_t reason, size_t seg, uint64_t off,
                     const char *detail)
{
    s->reason = reason;
    s->bad_seq = s->next_seq;
    s->bad_seg = seg;
    s->bad_off = off;
    snprintf(s->detail, sizeof s->detail, "%s", detail);
}

/* Frames the record at `off`: 1 = whole record (*len set), 0 = torn (runs past the end
 * of a last segment), -1 = bad length (a finding at idx). */
static int frame(finding_t *fd, size_t idx, const uint8_t *map, uint64_t size, uint64_t off,
                 bool last, uint32_t *len_out)
{
    uint64_t rem = size - off;
    if (rem < 4) {
        if (last)
            return 0;
        find(fd, idx, RANK_FRAME, ENG_VERIFY_BAD_LENGTH, off,
             "segment ends inside the length field of a record");
        return -1;
    }
    uint32_t len = eng__le32(map + off);
    if (len < 5 || len > ENG_LOG_MAX_BODY) {
        find(fd, idx, RANK_FRAME, ENG_VERIFY_BAD_LENGTH, off,
             "record length %u is out of range", len);
        return -1;
    }
    if (rem >= 8 && eng__le32(map + off + 4) != len) {
        find(fd, idx, RANK_FRAME, ENG_VERIFY_BAD_LENGTH, off,
             "record length %u differs from the BSON document's length %u", len,
             eng__le32(map + off + 4));
        return -1;
    }
    if ((uint64_t)len + ENG__REC_OVERHEAD > rem) {
        if (last)
            return 0;
        find(fd, idx, RANK_FRAME, ENG_VERIFY_BAD_LENGTH, off,
             "record of length %u runs past the end of the segment", len);
        return -1;
    }
    if (map[off + 4 + len - 1] != 0) {
        find(fd, idx, RANK_FRAME, ENG_VERIFY_BAD_LENGTH, off,
             "record body of length %u does not end a BSON document", len);
        return -1;
    }
    *len_out = len;
    return 1;
}

/* After a hash mismatch at `off`: does the next record in the segment chain from the
 * stored hash? Then the body changed; otherwise the stored hash did. */
static bool next_chains(const uint8_t *map, uint64_t size, uint64_t off, uint32_t len)
{
    uint64_t noff = off + ENG__REC_OVERHEAD + len;
    if (size - noff < 8)
        return true;
    uint32_t nlen = eng__le32(map + noff);
    if (nlen < 5 || nlen > ENG_LOG_MAX_BODY ||
        (uint64_t)nlen + ENG__REC_OVERHEAD > size - noff)
        return true;
    uint8_t h[ENG_HASH_SIZE];
    eng__hash(map + off + 4 + len, map + noff + 4, nlen, h);
    return memcmp(h, map + noff + 4 + nlen, ENG_HASH_SIZE) == 0;
}

/* The parallel pass: records [a, b) of a segment whose offsets are offs[]. */
typedef struct hash_job {
    const eng__scan_t *s;
    const uint8_t *map;
    uint64_t size;
    const uint32_t *offs;
    size_t a, b;
    uint64_t base_seq;     /* seq of record 0 of the segment */
    finding_t f;
    pthread_t thread;
} hash_job_t;

static void *hash_range(void *arg)
{
    hash_job_t *j = arg;
    const eng__scan_t *s = j->s;
    for (size_t i = j->a; i < j->b && !j->f.found; i++) {
        if (j->base_seq + i < s->from_seq)
            continue;
        uint64_t off = j->offs[i];
        uint32_t len = eng__le32(j->map + off);
        const uint8_t *body = j->map + off + 4;
        const uint8_t *prev = i == 0 ? s->head : j->map + off - ENG_HASH_SIZE;
        uint8_t h[ENG_HASH_SIZE];
        eng__hash(prev, body, len, h);
        if (memcmp(h, body + len, ENG_HASH_SIZE) != 0) {
            if (next_chains(j->map, j->size, off, len))
                find(&j->f, i, RANK_HASH, ENG_VERIFY_HASH_MISMATCH, off,
                     "the body does not match its stored hash");
            else
                find(&j->f, i, RANK_HASH, ENG_VERIFY_BROKEN_LINK, off,
                     "the stored hash is not the hash of this record, and the next "
                     "record does not chain from it");
            break;
        }
        if (s->check_ops) {
            eng_op_t op;
            bq_error_t perr;
            bq_error_clear(&perr);
            if (!eng_op_parse(body, len, &op, &perr)) {
                find(&j->f, i, RANK_OP, ENG_VERIFY_BAD_OP, off, "%s", perr.message);
                break;
            }
        }
    }
    return NULL;
}

#define PARALLEL_MIN_RECORDS 8192
#define MAX_THREADS 8

static void hash_all(const eng__scan_t *s, const uint8_t *map, uint64_t size,
                     const uint32_t *offs, size_t n, finding_t *f)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = n < PARALLEL_MIN_RECORDS || cpus < 2 ? 1
               : cpus > MAX_THREADS                 ? MAX_THREADS
                                                    : (size_t)cpus;
    hash_job_t jobs[MAX_THREADS];
    size_t started = 0;
    for (size_t k = 0; k < t; k++) {
        jobs[k] = (hash_job_t){.s = s, .map = map, .size = size, .offs = offs,
                               .a = n * k / t, .b = n * (k + 1) / t,
                               .base_seq = s->next_seq};
        if (k > 0 && pthread_create(&jobs[k].thread, NULL, hash_range, &jobs[k]) != 0)
            break;   /* no thread: the rest is done inline below */
        started = k + 1;
    }
    for (size_t k = started; k < t; k++)
        jobs[started - 1].b = jobs[k].b;
    hash_range(&jobs[0]);
    for (size_t k = 1; k < started; k++)
        pthread_join(jobs[k].thread, NULL);
    for (size_t k = 0; k < started; k++)
        if (jobs[k].f.found)
            find(f, jobs[k].f.idx, jobs[k].f.rank, jobs[k].f.reason, jobs[k].f.off, "%s",
                 jobs[k].f.detail);
}

/* Walks one mapped segment: pass 1 frames records and checks seqs in order; pass 2
 * checks hashes (and op documents) in parallel; pass 3 reports records in order up to the
 * first finding. Returns false only on_record failed or memory ran out. */
static bool scan_segment(eng__scan_t *s, size_t si, const uint8_t *map, uint64_t size,
                         bq_error_t *err)
{
    bool last = si + 1 == s->nsegs;
    if (size < ENG__SEG_HEADER_SIZE) {
        if (last) {
            s->torn = s->torn_header = true;
            s->torn_offset = 0;
            s->torn_bytes = size;
            return true;
        }
        scan_bad(s, ENG_VERIFY_BAD_HEADER, si, 0, "segment is shorter than its header");
        return true;
    }
    if (memcmp(map, ENG__SEG_MAGIC, ENG__SEG_MAGIC_LEN) != 0) {
        scan_bad(s, ENG_VERIFY_BAD_HEADER, si, 0,
                 "segment does not start with " ENG__SEG_MAGIC);
        return true;
    }
    uint32_t version = eng__le32(map + 8), flags = eng__le32(map + 12);
    if (version != ENG__SEG_VERSION || flags != 0) {
        char d[160];
        snprintf(d, sizeof d,
                 "unsupported segment format version %u flags %#x (this build reads "
                 "version %u, flags 0)",
                 version, flags, ENG__SEG_VERSION);
        scan_bad(s, ENG_VERIFY_BAD_HEADER, si, 8, d);
        return true;
    }

    if (size > UINT32_MAX) {
        scan_bad(s, ENG_VERIFY_BAD_LENGTH, si, UINT32_MAX,
                 "segment is larger than 4 GiB, which NEDB never writes");
        return true;
    }

    /* pass 1: framing, seqs, the checkpoint link */
    size_t cap = (size_t)(size / (ENG__REC_OVERHEAD + 5)) + 1, n = 0;
    uint32_t *offs = malloc(cap * sizeof *offs);
    if (!offs) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory verifying %s",
                     s->segs[si].name);
        return false;
    }
    finding_t f = {.found = false};
    bool torn = false;
    uint64_t off = ENG__SEG_HEADER_SIZE;
    while (off < size) {
        uint32_t len = 0;
        int fr = frame(&f, n, map, size, off, last, &len);
        if (fr < 0)
            break;
        if (fr == 0) {
            torn = true;
            break;
        }
        uint64_t seq = s->next_seq + n;
        const uint8_t *body = map + off + 4;
        int64_t body_seq;
        offs[n] = (uint32_t)off;
        if (!eng_op_peek_seq(body, len, &body_seq)) {
            find(&f, n++, RANK_FRAME, ENG_VERIFY_BAD_OP, off,
                 "the body does not start with its seq");
            break;
        }
        if ((uint64_t)body_seq != seq) {
            find(&f, n++, RANK_FRAME, ENG_VERIFY_GAP, off,
                 "found seq %lld where seq %llu belongs", (long long)body_seq,
                 (unsigned long long)seq);
            break;
        }
        if (s->from_seq > 0 && seq + 1 == s->from_seq &&
            memcmp(body + len, s->from_hash, ENG_HASH_SIZE) != 0) {
            find(&f, n++, RANK_FRAME, ENG_VERIFY_BROKEN_LINK, off,
                 "the stored hash differs from the checkpoint's head at this seq");
            break;
        }
        n++;
        off += ENG__REC_OVERHEAD + len;
    }

    /* pass 2: hashes, in parallel */
    hash_all(s, map, size, offs, n, &f);

    /* pass 3: in order, up to the first finding */
    size_t good = f.found ? f.idx : n;
    bool ok = true;
    for (size_t i = 0; i < good && ok; i++) {
        uint64_t seq = s->next_seq + i;
        if (s->on_record && seq >= s->from_seq) {
            uint32_t len = eng__le32(map + offs[i]);
            eng_record_t rec = {
                .seq = seq,
                .pos = {(uint32_t)si, offs[i]},
                .body = map + offs[i] + 4,
                .len = len,
                .hash = map + offs[i] + 4 + len,
            };
            ok = s->on_record(s->on_record_ctx, &rec, err);
            if (!ok)
                good = i;
        }
    }
    if (good > 0) {
        uint64_t end = offs[good - 1] + ENG__REC_OVERHEAD + eng__le32(map + offs[good - 1]);
        memcpy(s->head, map + end - ENG_HASH_SIZE, ENG_HASH_SIZE);
        s->tail_end = end;
    } else {
        s->tail_end = ENG__SEG_HEADER_SIZE;
    }
    s->next_seq += good;
    s->records += good;
    if (ok && f.found) {
        scan_bad(s, f.reason, si, f.off, f.detail);
    } else if (ok && torn) {
        s->torn = true;
        s->torn_offset = off;
        s->torn_bytes = size - off;
    }
    free(offs);
    return ok;
}

bool eng__scan_run(eng__scan_t *s, bq_error_t *err)
{
    s->reason = ENG_VERIFY_OK;
    s->torn = s->torn_header = false;
    s->records = s->bytes = s->tail_end = 0;
    memset(s->head, 0, sizeof s->head);
    s->detail[0] = '\0';
    /* Start at the segment holding from_seq - 1: earlier ones need not be read. */
    size_t start = 0;
    if (s->from_seq > 0)
        while (start + 1 < s->nsegs && s->segs[start + 1].first_seq <= s->from_seq - 1)
            start++;
    s->next_seq = s->nsegs ? s->segs[start].first_seq : 0;
    if (s->from_seq == 0 && s->nsegs && s->segs[0].first_seq != 0) {
        char d[96];
        snprintf(d, sizeof d, "the first segment starts at seq %llu, not 0",
                 (unsigned long long)s->segs[0].first_seq);
        scan_bad(s, ENG_VERIFY_GAP, 0, 0, d);
        s->bad_seq = 0;
        return true;
    }
    for (size_t i = start; i < s->nsegs; i++) {
        if (s->segs[i].first_seq != s->next_seq) {
            char d[128];
            snprintf(d, sizeof d, "segment %s should start at seq %llu", s->segs[i].name,
                     (unsigned long long)s->next_seq);
            scan_bad(s, ENG_VERIFY_GAP, i, 0, d);
            return true;
        }
        int fd = openat(s->logdir_fd, s->segs[i].name, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            bq_error_set(err, ENG_ERR_IO, "cannot open log segment %s: %s", s->segs[i].name,
                         strerror(errno));
            if (fd >= 0)
                close(fd);
            return false;
        }
        uint64_t size = (uint64_t)st.st_size;
        const uint8_t *map = NULL;
        if (size > 0) {
            void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m == MAP_FAILED) {
                bq_error_set(err, ENG_ERR_IO, "cannot map log segment %s: %s",
                             s->segs[i].name, strerror(errno));
                close(fd);
                return false;
            }
            madvise(m, size, MADV_SEQUENTIAL);
            map = m;
        }
        close(fd);
        s->bytes += size;
        bool ok = scan_segment(s, i, map, size, err);
        if (map)
            munmap((void *)map, size);
        if (!ok)
            return false;
        if (s->reason != ENG_VERIFY_OK)
            return true;
    }
    return true;
}

static void copy_name(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

bool eng_verify_ex(const char *dbpath, const eng_verify_options_t *opts,
                   eng_verify_report_t *report, bq_error_t *err)
{
    memset(report, 0, sizeof *report);
    eng_hash_hex(report->head, report->head_hex);
    if (!eng__crypto_init(err))
        return false;
    char logdir[4096];
    struct stat st;
    if (stat(dbpath, &st) != 0 || !S_ISDIR(st.st_mode)) {
        bq_error_set(err, ENG_ERR_IO, "%s is not a data directory", dbpath);
        return false;
    }
    int lock_fd = eng__lock_take(dbpath, false, false, err);
    if (lock_fd < 0)
        return false;
    snprintf(logdir, sizeof logdir, "%s/log", dbpath);
    int dfd = open(logdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        bq_error_set(err, ENG_ERR_IO, "%s is not a NEDB data directory (no log/): %s",
                     dbpath, strerror(errno));
        close(lock_fd);
        return false;
    }
    eng__seg_t *segs = NULL;
    size_t n = 0;
    bool ok = eng__segments_list(dfd, logdir, &segs, &n, err);
    eng__scan_t s;
    memset(&s, 0, sizeof s);
    if (ok) {
        s.logdir_fd = dfd;
        s.segs = segs;
        s.nsegs = n;
        s.check_ops = opts ? opts->check_ops : true;
        s.on_record = opts ? opts->on_record : NULL;
        s.on_record_ctx = opts ? opts->on_record_ctx : NULL;
        ok = eng__scan_run(&s, err);
    }
    if (ok) {
        report->valid = s.reason == ENG_VERIFY_OK;
        report->records = s.records;
        report->segments = n;
        report->bytes = s.bytes;
        memcpy(report->head, s.head, ENG_HASH_SIZE);
        eng_hash_hex(report->head, report->head_hex);
        report->reason = s.reason;
        if (!report->valid) {
            report->bad_seq = s.bad_seq;
            copy_name(report->bad_segment, sizeof report->bad_segment, segs[s.bad_seg].name);
            report->bad_offset = s.bad_off;
            copy_name(report->detail, sizeof report->detail, s.detail);
        } else if (s.torn) {
            report->torn_bytes = s.torn_bytes;
            report->torn_offset = s.torn_offset;
            copy_name(report->torn_segment, sizeof report->torn_segment, segs[n - 1].name);
        }
    }
    free(segs);
    close(dfd);
    close(lock_fd);
    return ok;
}

bool eng_verify(const char *dbpath, eng_verify_report_t *report, bq_error_t *err)
{
    eng_verify_options_t opts = {.check_ops = true};
    return eng_verify_ex(dbpath, &opts, report, err);
}
