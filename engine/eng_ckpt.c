/*
 * eng_ckpt.c: checkpoints (DESIGN.md section 6). A checkpoint is the whole in-memory store
 * as of one committed seq S, written to <dbpath>/checkpoint/<S, 20 digits>.ckpt so that an
 * open loads it and replays only the log after S instead of all history. This file owns
 * every file in checkpoint/: it writes them (from a background thread, on demand, and at
 * a clean close), checks and loads them, and prunes old ones. It never touches the log:
 * the chain is never rewritten, and a checkpoint is only ever a cache of what the log
 * says (deleting checkpoint/ loses nothing; the next open replays the whole log).
 *
 * What a checkpoint holds: the cluster time of every op 0..S (for atClusterTime and
 * operationTime), every document incarnation of every collection with its whole version
 * chain (from, to, length, or a deletion; the document bytes of the newest version only),
 * every collection incarnation (database, name, options, [from, to), which document set
 * it shares with the others), and the provenance reverse index (cause -> effects). So
 * time travel to any seq, dropped collections, and "what did this cause" work after a
 * restart exactly as after a full replay, while the file and the load grow with the live
 * data and the number of versions, not with the bytes of all history (DESIGN.md sections
 * 5 and 6): an older version is loaded without its body, and a reader that reaches it
 * reads the op at its `from` back from the log (eng_store.c invariant 6).
 *
 * File format (integers little-endian):
 *
 *   | offset | size | field                                                        |
 *   |--------|------|--------------------------------------------------------------|
 *   | 0      | 8    | magic "NEDBCKP1"                                             |
 *   | 8      | 4    | format version, u32 (3; see "Versions" below)                |
 *   | 12     | 4    | flags, u32 (0)                                               |
 *   | 16     | 8    | S: the newest seq the checkpoint covers, u64                 |
 *   | 24     | 8    | ts of op S (ms since the epoch), i64                         |
 *   | 32     | 32   | head: the stored hash of the log record at seq S             |
 *   | 64     | ...  | entries, each a tag byte and its fields (below)              |
 *   | end-32 | 32   | BLAKE2b-256 of every byte before it                          |
 *
 * Entries, in this order:
 *
 *   'T' u64 n (= S + 1), then n u64 cluster times (t << 32 | i), indexed by seq
 *   'D' u32 k, u64 n: a document set (eng__docs) begins; k = 0, 1, 2, ... in order; n is
 *       how many incarnations it had when written (a size hint: at most n 'S'/'R' follow)
 *   'S' one document incarnation of the current set, in insertion order ('R' instead when
 *       an earlier incarnation of the same _id precedes it in the set):
 *       u32 keylen, key bytes (bq_key of the _id), u32 nver, then nver versions oldest
 *       first: i64 from, i64 to (INT64_MAX while current), u32 len (0xFFFFFFFF for a
 *       deletion), then len bytes of BSON for the last (newest) version only: the body
 *       of an older version is the `o` of the log record at its `from`
 *   'C' one collection incarnation, each namespace's incarnations oldest first:
 *       u32 docs set k, u8 owns (exactly one incarnation per set owns it), i64 from,
 *       i64 to, u32 len + database name, u32 len + collection name, u32 len + options BSON
 *   'I' one secondary index definition, each set's oldest first: u32 docs set k, i64
 *       from, i64 to, u32 len + the spec BSON as listIndexes reports it; unique tables
 *       and lookup postings are not stored: the load rebuilds them (eng_index.c)
 *   'P' one cause of the provenance reverse index: i64 cause, u32 n, n i64 effects in
 *       seq order
 *   'E' u64 incarnations ('S' and 'R'), u64 collections 'C', u64 causes 'P', u64
 *       indexes 'I': the end
 *
 * The key bytes are bq_key's encoding: a change to it needs a new format version.
 *
 * Versions: 3 is written. 2 (every version with its body) and 1 (also no 'I' entries and
 * three end counts) still load, with every version in memory.
 *
 * Invariants:
 *   1. A checkpoint covers only committed seqs, which are durable (eng_seq.c publishes a
 *      seq after its fsync), so a crash can never leave a checkpoint ahead of the log.
 *   2. It is written from a snapshot S with the readers' lock-free protocol: anything the
 *      committer adds after S has from > S (skipped) or sets a to > S (written as
 *      INT64_MAX, since at S the version was current). The committer never waits for it;
 *      only the provenance index is copied under its (short) lock.
 *   3. A file named *.ckpt is complete: it is written as *.ckpt.tmp, fsynced, renamed,
 *      and checkpoint/ is fsynced. Only the newest two are kept.
 *   4. A checkpoint is used only when its own hash verifies, it parses, and its head is
 *      the log's stored hash at S (eng_log_open checks that while replaying the tail).
 *      Otherwise the open warns, and tries the previous one, then a full replay.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "eng_store.h"

#define CKPT_MAGIC "NEDBCKP1"
#define CKPT_VERSION 3u     /* 3: bodies of the newest versions only; 2 added the 'I'
                               entries; files of 1 and 2 still load */
#define CKPT_HEADER_SIZE 64u
#define CKPT_SUFFIX ".ckpt"
#define CKPT_TMP_SUFFIX ".ckpt.tmp"
#define CKPT_DIR "checkpoint"
#define CKPT_KEEP 2
#define CKPT_DELETED UINT32_MAX
#define CKPT_RETRY_SECONDS 10 /* after a failed background checkpoint */
#define WBUF_SIZE (1u << 20)

struct eng__ckpt {
    eng_db_t *db;
    char *dbpath;
    int64_t every_ops;       /* <= 0: never by count */
    int64_t every_seconds;   /* <= 0: never by time */
    pthread_mutex_t write_lock; /* one checkpoint written at a time */
    pthread_mutex_t lock;    /* guards what follows */
    pthread_cond_t cond;
    bool stopping, running;
    pthread_t thread;
    int64_t last_seq;        /* newest checkpoint written or loaded, -1 when none */
    uint64_t written;
    uint64_t failures;
    double last_ms;
    char last_error[256];
    void (*done)(void *arg, int64_t seq, double ms, const bq_error_t *err);
    void *done_arg;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* <dbpath>/checkpoint, malloc'd. */
static char *ckpt_dir(const char *dbpath)
{
    size_t n = strlen(dbpath) + sizeof "/" CKPT_DIR;
    char *dir = malloc(n);
    if (!dir)
        abort();
    snprintf(dir, n, "%s/%s", dbpath, CKPT_DIR);
    return dir;
}

static void ckpt_name(uint64_t seq, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%020" PRIu64 "%s", seq, suffix);
}

/* ---------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------- */

typedef struct wbuf {
    int fd;
    uint8_t *buf;
    size_t len;
    crypto_generichash_state hash;
    bool failed;
    int err_no;
    bq_error_t load_err;    /* failed because a version could not be read from the log */
} wbuf_t;

static void wb_flush(wbuf_t *w)
{
    size_t done = 0;
    while (!w->failed && done < w->len) {
        ssize_t n = write(w->fd, w->buf + done, w->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            w->failed = true;
            w->err_no = n < 0 ? errno : EIO;
        } else {
            done += (size_t)n;
        }
    }
    w->len = 0;
}

static void wb_put(wbuf_t *w, const void *p, size_t n)
{
    crypto_generichash_update(&w->hash, p, n);
    const uint8_t *b = p;
    while (n > 0 && !w->failed) {
        if (w->len == WBUF_SIZE)
            wb_flush(w);
        size_t k = WBUF_SIZE - w->len;
        if (k > n)
            k = n;
        memcpy(w->buf + w->len, b, k);
        w->len += k;
        b += k;
        n -= k;
    }
}

static void wb_u8(wbuf_t *w, uint8_t v)
{
    wb_put(w, &v, 1);
}

static void wb_u32(wbuf_t *w, uint32_t v)
{
    uint8_t b[4];
    eng__put_le32(b, v);
    wb_put(w, b, 4);
}

static void wb_u64(wbuf_t *w, uint64_t v)
{
    uint8_t b[8];
    eng__put_le32(b, (uint32_t)v);
    eng__put_le32(b + 4, (uint32_t)(v >> 32));
    wb_put(w, b, 8);
}

static void wb_str(wbuf_t *w, const void *p, uint32_t n)
{
    wb_u32(w, n);
    wb_put(w, p, n);
}

/* The docs sets seen so far, to number them. */
typedef struct docs_list {
    eng__docs_t **v;
    size_t n, cap;
} docs_list_t;

static size_t docs_index(docs_list_t *l, eng__docs_t *d, bool *is_new)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == d) {
            *is_new = false;
            return i;
        }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n] = d;
    *is_new = true;
    return l->n++;
}

/* The incarnations that exist at or before snap, oldest first. */
typedef struct coll_list {
    eng_coll_t **v;
    size_t n, cap;
} coll_list_t;

static void colls_at(const eng__catalog_t *cat, int64_t snap, coll_list_t *out)
{
    for (size_t i = 0; i < cat->n; i++) {
        size_t start = out->n;
        for (eng_coll_t *c = cat->colls[i]; c; c = c->older) {
            if (c->from > snap)
                continue;
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 16;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
                if (!out->v)
                    abort();
            }
            out->v[out->n++] = c;
        }
        /* newest first -> oldest first */
        for (size_t a = start, b = out->n; a + 1 < b; a++, b--) {
            eng_coll_t *t = out->v[a];
            out->v[a] = out->v[b - 1];
            out->v[b - 1] = t;
        }
    }
}

static int64_t to_at(int64_t to, int64_t snap)
{
    return to > snap ? ENG_SEQ_MAX : to;
}

/* Writes the 'S' entries of one docs set as of snap in format `version`. Returns the
 * number written. */
static uint64_t write_docs(wbuf_t *w, eng__store_t *st, eng__docs_t *d, int64_t snap,
                           uint32_t version)
{
    uint64_t n = eng__vec_len(&d->slots), written = 0;
    const eng__version_t **vers = NULL;
    size_t vcap = 0;
    for (uint64_t i = 0; i < n && !w->failed; i++) {
        const eng__slot_t *s = (const eng__slot_t *)(uintptr_t)eng__vec_get(&d->slots, i);
        size_t nv = 0;
        for (const eng__version_t *v = atomic_load_explicit(&s->head, memory_order_acquire);
             v; v = v->older) {
            if (v->from > snap)
                continue;
            if (nv == vcap) {
                vcap = vcap ? vcap * 2 : 8;
                vers = realloc(vers, vcap * sizeof *vers);
                if (!vers)
                    abort();
            }
            vers[nv++] = v;
        }
        if (nv == 0)
            continue; /* inserted after snap */
        wb_u8(w, s->prev_incarnation ? 'R' : 'S');
        wb_str(w, s->key, s->keylen);
        wb_u32(w, (uint32_t)nv);
        for (size_t k = nv; k-- > 0 && !w->failed;) {
            const eng__version_t *v = vers[k];
            wb_u64(w, (uint64_t)v->from);
            wb_u64(w, (uint64_t)to_at(atomic_load_explicit(&v->to, memory_order_acquire),
                                      snap));
            if (v->deleted) {
                wb_u32(w, CKPT_DELETED);
                continue;
            }
            wb_u32(w, v->len);
            if (k > 0 && version >= 3)
                continue; /* older than the newest at snap: metadata only */
            /* the newest at snap is in memory unless snap is older than the checkpoint
             * the store was loaded from */
            const uint8_t *data;
            if (!eng__version_body(st, s, v, &data, &w->load_err)) {
                w->failed = true;
                break;
            }
            wb_put(w, data, v->len);
        }
        written++;
    }
    free(vers);
    return written;
}

/* Copies the provenance reverse index as of snap, under its lock, as a flat array of
 * (cause, n, effects...) groups. Returns the number of causes. */
static size_t prov_copy(eng__store_t *st, int64_t snap, int64_t **out, size_t *len)
{
    size_t causes = 0, total = 0, cap = 0;
    int64_t *v = NULL;
    pthread_mutex_lock(&st->prov_lock);
    for (size_t i = 0; i < st->prov_cap; i++) {
        const eng__prov_t *p = &st->prov[i];
        if (!p->effects || p->cause > snap)
            continue;
        size_t k = 0;
        while (k < p->n && p->effects[k] <= snap)
            k++;
        if (k == 0)
            continue;
        if (total + k + 2 > cap) {
            cap = (total + k + 2) * 2;
            v = realloc(v, cap * sizeof *v);
            if (!v)
                abort();
        }
        v[total++] = p->cause;
        v[total++] = (int64_t)k;
        memcpy(v + total, p->effects, k * sizeof *v);
        total += k;
        causes++;
    }
    pthread_mutex_unlock(&st->prov_lock);
    *out = v;
    *len = total;
    return causes;
}

/* The stored hash and ts of the log record at seq. */
static bool record_head(eng_log_t *log, uint64_t seq, uint8_t head[ENG_HASH_SIZE],
                        int64_t *ts, bq_error_t *err)
{
    eng_log_iter_t *it = eng_log_iter_new(log, seq, err);
    if (!it)
        return false;
    eng_record_t rec;
    bq_error_t ierr;
    bq_error_clear(&ierr);
    bool ok = eng_log_iter_next(it, &rec, &ierr) && rec.seq == seq;
    eng_op_t op;
    if (ok) {
        memcpy(head, rec.hash, ENG_HASH_SIZE);
        ok = eng_op_parse(rec.body, rec.len, &op, &ierr);
        *ts = op.ts;
    }
    eng_log_iter_destroy(it);
    if (!ok) {
        if (err)
            *err = ierr;
        if (!ierr.code)
            bq_error_set(err, ENG_ERR_CORRUPT, "seq %" PRIu64 " is not in the log", seq);
        bq_error_prefix(err, "reading the head of the checkpoint at seq %" PRIu64, seq);
    }
    return ok;
}

static bool fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Lists checkpoint/ into a malloc'd array of seqs, newest first. Temp files are removed
 * when `clean_tmp` (only the writer, holding LOCK, may). A missing directory is empty. */
static bool ckpt_list(const char *dir, bool clean_tmp, uint64_t **out, size_t *n,
                      bq_error_t *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return true;
        bq_error_set(err, ENG_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
        return false;
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        bool digits = len > 20;
        for (size_t i = 0; digits && i < 20; i++)
            digits = name[i] >= '0' && name[i] <= '9';
        if (!digits)
            continue;
        if (strcmp(name + 20, CKPT_TMP_SUFFIX) == 0) {
            if (clean_tmp)
                unlinkat(dirfd(d), name, 0);
            continue;
        }
        if (strcmp(name + 20, CKPT_SUFFIX) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *g = realloc(*out, cap * sizeof *g);
            if (!g)
                abort();
            *out = g;
        }
        (*out)[(*n)++] = strtoull(name, NULL, 10);
    }
    closedir(d);
    /* newest first */
    for (size_t i = 1; i < *n; i++)
        for (size_t j = i; j > 0 && (*out)[j - 1] < (*out)[j]; j--) {
            uint64_t t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return true;
}

static void ckpt_prune(const char *dir)
{
    uint64_t *seqs;
    size_t n;
    if (!ckpt_list(dir, true, &seqs, &n, NULL))
        return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = CKPT_KEEP; dfd >= 0 && i < n; i++) {
        char name[64];
        ckpt_name(seqs[i], CKPT_SUFFIX, name, sizeof name);
        unlinkat(dfd, name, 0);
    }
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(seqs);
}

/* Writes the checkpoint of snapshot snap in format `version` (CKPT_VERSION but for
 * tests). Caller holds write_lock. */
static bool ckpt_write(eng__ckpt_t *ck, int64_t snap, uint32_t version, bq_error_t *err)
{
    eng_db_t *db = ck->db;
    eng__store_t *st = &db->store;
    uint8_t head[ENG_HASH_SIZE];
    int64_t ts;
    if (!record_head(db->log, (uint64_t)snap, head, &ts, err))
        return false;

    char *dir = ckpt_dir(ck->dbpath);
    char tmp[64], fin[64];
    if (mkdir(dir, 0755) == 0) {
        fsync_dir(ck->dbpath);
    } else if (errno != EEXIST) {
        bq_error_set(err, ENG_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
        free(dir);
        return false;
    }
    ckpt_name((uint64_t)snap, CKPT_TMP_SUFFIX, tmp, sizeof tmp);
    ckpt_name((uint64_t)snap, CKPT_SUFFIX, fin, sizeof fin);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    wbuf_t w = {.fd = -1};
    if (dfd >= 0)
        w.fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot create %s/%s: %s", dir, tmp, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        free(dir);
        return false;
    }
    w.buf = malloc(WBUF_SIZE);
    if (!w.buf)
        abort();
    crypto_generichash_init(&w.hash, NULL, 0, ENG_HASH_SIZE);

    /* header */
    uint8_t hdr[CKPT_HEADER_SIZE] = {0};
    memcpy(hdr, CKPT_MAGIC, 8);
    eng__put_le32(hdr + 8, version);
    eng__put_le32(hdr + 16, (uint32_t)snap);
    eng__put_le32(hdr + 20, (uint32_t)((uint64_t)snap >> 32));
    eng__put_le32(hdr + 24, (uint32_t)ts);
    eng__put_le32(hdr + 28, (uint32_t)((uint64_t)ts >> 32));
    memcpy(hdr + 32, head, ENG_HASH_SIZE);
    wb_put(&w, hdr, sizeof hdr);

    /* cluster times */
    wb_u8(&w, 'T');
    wb_u64(&w, (uint64_t)snap + 1);
    for (uint64_t i = 0; i <= (uint64_t)snap && !w.failed; i++)
        wb_u64(&w, eng__vec_get(&st->cts, i));

    /* documents, then collections (the catalog is read after the committed seq, so it
     * holds every incarnation created at or before snap) */
    coll_list_t colls = {0};
    docs_list_t docs = {0};
    colls_at(atomic_load_explicit(&st->catalog, memory_order_acquire), snap, &colls);
    uint64_t nslots = 0;
    bool *owner = calloc(colls.n ? colls.n : 1, sizeof *owner);
    if (!owner)
        abort();
    for (size_t i = 0; i < colls.n; i++) {
        bool is_new;
        size_t k = docs_index(&docs, colls.v[i]->docs, &is_new);
        if (!is_new)
            continue;
        owner[i] = true;
        wb_u8(&w, 'D');
        wb_u32(&w, (uint32_t)k);
        wb_u64(&w, eng__vec_len(&colls.v[i]->docs->slots));
        nslots += write_docs(&w, st, colls.v[i]->docs, snap, version);
    }
    for (size_t i = 0; i < colls.n; i++) {
        eng_coll_t *c = colls.v[i];
        bool is_new;
        wb_u8(&w, 'C');
        wb_u32(&w, (uint32_t)docs_index(&docs, c->docs, &is_new));
        wb_u8(&w, owner[i]);
        wb_u64(&w, (uint64_t)c->from);
        wb_u64(&w, (uint64_t)to_at(atomic_load_explicit(&c->to, memory_order_acquire), snap));
        wb_str(&w, c->db, (uint32_t)strlen(c->db));
        wb_str(&w, c->name, (uint32_t)strlen(c->name));
        wb_str(&w, bson_get_data(&c->options), c->options.len);
    }
    free(owner);
    uint64_t nindexes = 0;
    for (size_t k = 0; k < docs.n; k++) {
        /* the list is newest first: collect, then write oldest first */
        size_t n = 0;
        for (eng__index_t *ix = atomic_load_explicit(&docs.v[k]->indexes, memory_order_acquire);
             ix; ix = ix->next)
            n++;
        eng__index_t **v = calloc(n ? n : 1, sizeof *v);
        if (!v)
            abort();
        n = 0;
        for (eng__index_t *ix = atomic_load_explicit(&docs.v[k]->indexes, memory_order_acquire);
             ix; ix = ix->next)
            if (ix->from <= snap)
                v[n++] = ix;
        while (n-- > 0) {
            wb_u8(&w, 'I');
            wb_u32(&w, (uint32_t)k);
            wb_u64(&w, (uint64_t)v[n]->from);
            wb_u64(&w, (uint64_t)to_at(atomic_load_explicit(&v[n]->to, memory_order_acquire),
                                       snap));
            wb_str(&w, bson_get_data(&v[n]->spec), v[n]->spec.len);
            nindexes++;
        }
        free(v);
    }
    free(docs.v);

    /* provenance */
    int64_t *prov;
    size_t plen;
    size_t ncauses = prov_copy(st, snap, &prov, &plen);
    for (size_t i = 0; i < plen;) {
        wb_u8(&w, 'P');
        wb_u64(&w, (uint64_t)prov[i]);
        size_t k = (size_t)prov[i + 1];
        wb_u32(&w, (uint32_t)k);
        for (size_t j = 0; j < k; j++)
            wb_u64(&w, (uint64_t)prov[i + 2 + j]);
        i += 2 + k;
    }
    free(prov);

    wb_u8(&w, 'E');
    wb_u64(&w, nslots);
    wb_u64(&w, colls.n);
    wb_u64(&w, ncauses);
    wb_u64(&w, nindexes);
    free(colls.v);

    uint8_t sum[ENG_HASH_SIZE];
    crypto_generichash_final(&w.hash, sum, ENG_HASH_SIZE);
    if (!w.failed) {
        if (w.len + ENG_HASH_SIZE > WBUF_SIZE)
            wb_flush(&w);
        memcpy(w.buf + w.len, sum, ENG_HASH_SIZE);
        w.len += ENG_HASH_SIZE;
        wb_flush(&w);
    }
    if (!w.failed && fsync(w.fd) != 0) {
        w.failed = true;
        w.err_no = errno;
    }
    close(w.fd);
    free(w.buf);
    bool ok = !w.failed;
    if (ok && renameat(dfd, tmp, dfd, fin) != 0) {
        ok = false;
        w.err_no = errno;
    }
    if (ok && fsync(dfd) != 0) {
        ok = false;
        w.err_no = errno;
    }
    if (!ok) {
        unlinkat(dfd, tmp, 0);
        if (w.load_err.code) {
            if (err)
                *err = w.load_err;
            bq_error_prefix(err, "cannot write checkpoint %s/%s", dir, fin);
        } else {
            bq_error_set(err, ENG_ERR_IO, "cannot write checkpoint %s/%s: %s", dir, fin,
                         strerror(w.err_no));
        }
    }
    close(dfd);
    if (ok)
        ckpt_prune(dir);
    free(dir);
    return ok;
}

/* Writes a checkpoint of the committed seq when it is newer than the last one. */
static bool ckpt_now(eng__ckpt_t *ck, bq_error_t *err)
{
    pthread_mutex_lock(&ck->write_lock);
    int64_t snap = eng_db_snapshot(ck->db);
    pthread_mutex_lock(&ck->lock);
    int64_t last = ck->last_seq;
    pthread_mutex_unlock(&ck->lock);
    bool ok = true;
    if (snap > last) {
        double t0 = now_s();
        bq_error_t werr;
        bq_error_clear(&werr);
        ok = ckpt_write(ck, snap, CKPT_VERSION, &werr);
        double ms = (now_s() - t0) * 1000;
        if (ck->done) /* before the counters: whoever sees them can find the log line */
            ck->done(ck->done_arg, snap, ms, ok ? NULL : &werr);
        pthread_mutex_lock(&ck->lock);
        if (ok) {
            ck->last_seq = snap;
            ck->written++;
            ck->last_ms = ms;
            ck->last_error[0] = '\0';
        } else {
            ck->failures++;
            snprintf(ck->last_error, sizeof ck->last_error, "%.250s", werr.message);
        }
        pthread_mutex_unlock(&ck->lock);
        if (!ok && err)
            *err = werr;
    }
    pthread_mutex_unlock(&ck->write_lock);
    return ok;
}

static void *ckpt_main(void *arg)
{
    eng__ckpt_t *ck = arg;
    double last_time = now_s(), not_before = 0;
    pthread_mutex_lock(&ck->lock);
    while (!ck->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000; /* poll: the committer is never asked to wake us */
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&ck->cond, &ck->lock, &until);
        if (ck->stopping)
            break;
        int64_t snap = eng_db_snapshot(ck->db), last = ck->last_seq;
        double t = now_s();
        bool due = snap > last && t >= not_before &&
                   ((ck->every_ops > 0 && snap - last >= ck->every_ops) ||
                    (ck->every_seconds > 0 && t - last_time >= (double)ck->every_seconds));
        if (!due)
            continue;
        pthread_mutex_unlock(&ck->lock);
        bool ok = ckpt_now(ck, NULL);
        pthread_mutex_lock(&ck->lock);
        last_time = now_s();
        not_before = ok ? 0 : last_time + CKPT_RETRY_SECONDS;
    }
    pthread_mutex_unlock(&ck->lock);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------- */

typedef struct rbuf {
    const uint8_t *p, *end;
    bool bad;
    const char *what;     /* the first thing found wrong */
} rbuf_t;

static bool rb_need(rbuf_t *r, size_t n, const char *what)
{
    if (r->bad)
        return false;
    if ((size_t)(r->end - r->p) < n) {
        r->bad = true;
        r->what = what;
        return false;
    }
    return true;
}

static uint8_t rb_u8(rbuf_t *r)
{
    if (!rb_need(r, 1, "truncated entry"))
        return 0;
    return *r->p++;
}

static uint32_t rb_u32(rbuf_t *r)
{
    if (!rb_need(r, 4, "truncated entry"))
        return 0;
    uint32_t v = eng__le32(r->p);
    r->p += 4;
    return v;
}

static uint64_t rb_u64(rbuf_t *r)
{
    if (!rb_need(r, 8, "truncated entry"))
        return 0;
    uint64_t v = eng__le32(r->p) | (uint64_t)eng__le32(r->p + 4) << 32;
    r->p += 8;
    return v;
}

static const uint8_t *rb_bytes(rbuf_t *r, size_t n)
{
    if (!rb_need(r, n, "truncated entry"))
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static void rb_fail(rbuf_t *r, const char *what)
{
    if (!r->bad) {
        r->bad = true;
        r->what = what;
    }
}

static void versions_free(eng__version_t *v)
{
    while (v) {
        eng__version_t *older = v->older;
        free((void *)atomic_load(&v->data));
        free(v);
        v = older;
    }
}

/* One 'S' or 'R' entry into docs set d (format `version`). */
static void load_slot(rbuf_t *r, eng__store_t *st, eng__docs_t *d, int64_t snap,
                      bool reincarnation, uint32_t version)
{
    uint32_t keylen = rb_u32(r);
    const uint8_t *key = rb_bytes(r, keylen);
    uint32_t nver = rb_u32(r);
    if (r->bad)
        return;
    if (keylen == 0 || nver == 0) {
        rb_fail(r, "empty document key or version list");
        return;
    }
    eng__version_t *head = NULL;
    int64_t prev_from = -1;
    for (uint32_t i = 0; i < nver && !r->bad; i++) {
        int64_t from = (int64_t)rb_u64(r), to = (int64_t)rb_u64(r);
        uint32_t len = rb_u32(r);
        bool deleted = len == CKPT_DELETED;
        bool body = !deleted && (i + 1 == nver || version < 3);
        const uint8_t *data = body ? rb_bytes(r, len) : NULL;
        if (r->bad)
            break;
        if (from <= prev_from || from > snap || to <= from ||
            (to != ENG_SEQ_MAX && to > snap) || (i + 1 < nver && to == ENG_SEQ_MAX)) {
            rb_fail(r, "a version's seq range is out of order");
            break;
        }
        if (i == 0 && deleted) {
            rb_fail(r, "a document incarnation starts with a deletion");
            break;
        }
        if (data && (len < 5 || eng__le32(data) != len || data[len - 1] != 0)) {
            rb_fail(r, "a document is not BSON");
            break;
        }
        if (!deleted && !data && (len < 5 || len > ENG_LOG_MAX_BODY)) {
            rb_fail(r, "an old document version has a bad length");
            break;
        }
        eng__version_t *v = calloc(1, sizeof *v);
        uint8_t *copy = data ? malloc(len) : NULL;
        if (!v || (data && !copy))
            abort();
        if (data)
            memcpy(copy, data, len);
        v->from = from;
        atomic_init(&v->to, to);
        atomic_init(&v->data, copy); /* NULL and not deleted: not loaded */
        v->len = deleted ? 0 : len;
        v->deleted = deleted;
        v->older = head;
        head = v;
        prev_from = from;
    }
    if (r->bad) {
        versions_free(head);
        return;
    }
    uint8_t *k = malloc(keylen);
    if (!k)
        abort();
    memcpy(k, key, keylen);
    eng__docs_restore_slot(st, d, k, keylen, head, reincarnation);
}

/* A string field: u32 length and bytes, copied NUL-terminated into out[size]. */
static bool rb_name(rbuf_t *r, char *out, size_t size)
{
    uint32_t n = rb_u32(r);
    const uint8_t *p = rb_bytes(r, n);
    if (!p)
        return false;
    if (n == 0 || n >= size || memchr(p, '\0', n)) {
        rb_fail(r, "a bad database or collection name");
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static bool load_body(rbuf_t *r, eng__store_t *st, uint64_t snap_u, uint32_t version)
{
    int64_t snap = (int64_t)snap_u;
    docs_list_t docs = {0};
    bool *owned = NULL;
    size_t owned_cap = 0;
    uint64_t nslots = 0, ncolls = 0, ncauses = 0, nindexes = 0;
    bool end = false;

    if (rb_u8(r) != 'T' || rb_u64(r) != snap_u + 1) {
        rb_fail(r, "the cluster time table is missing or of the wrong length");
        return false;
    }
    if (!rb_need(r, (snap_u + 1) * 8, "truncated cluster time table"))
        return false;
    for (uint64_t i = 0; i <= snap_u; i++)
        eng__vec_push(&st->cts, rb_u64(r));

    eng__docs_t *cur = NULL;
    while (!r->bad && !end) {
        uint8_t tag = rb_u8(r);
        switch (tag) {
        case 'D': {
            uint32_t k = rb_u32(r);
            uint64_t hint = rb_u64(r);
            if (k != docs.n || ncolls) {
                rb_fail(r, "document sets out of order");
                break;
            }
            bool is_new;
            cur = eng__docs_new();
            /* a hint from a checksummed file, but keep a wrong one from asking for more
             * memory than the rest of the file could fill */
            if (hint <= (uint64_t)(r->end - r->p) / 16)
                eng__docs_reserve(cur, hint);
            docs_index(&docs, cur, &is_new);
            if (docs.n > owned_cap) {
                owned_cap = docs.n * 2;
                owned = realloc(owned, owned_cap * sizeof *owned);
                if (!owned)
                    abort();
            }
            owned[k] = false;
            break;
        }
        case 'S':
        case 'R':
            if (!cur || ncolls) {
                rb_fail(r, "a document outside a document set");
                break;
            }
            load_slot(r, st, cur, snap, tag == 'R', version);
            nslots++;
            break;
        case 'C': {
            uint32_t k = rb_u32(r);
            bool owns = rb_u8(r) != 0;
            int64_t from = (int64_t)rb_u64(r), to = (int64_t)rb_u64(r);
            char db[64], name[ENG_NS_MAX + 1];
            if (!rb_name(r, db, sizeof db) || !rb_name(r, name, sizeof name))
                break;
            uint32_t olen = rb_u32(r);
            const uint8_t *o = rb_bytes(r, olen);
            bson_t opts;
            if (!o || !bson_init_static(&opts, o, olen)) {
                rb_fail(r, "collection options are not BSON");
                break;
            }
            if (k >= docs.n || (owns && owned[k]) || from > snap || to <= from ||
                (to != ENG_SEQ_MAX && to > snap)) {
                rb_fail(r, "a collection entry is inconsistent");
                break;
            }
            if (owns)
                owned[k] = true;
            eng__coll_restore(st, db, name, &opts, from, to, docs.v[k], owns);
            ncolls++;
            break;
        }
        case 'P': {
            int64_t cause = (int64_t)rb_u64(r);
            uint32_t n = rb_u32(r);
            if (!rb_need(r, (size_t)n * 8, "truncated provenance entry"))
                break;
            for (uint32_t i = 0; i < n; i++) {
                int64_t e = (int64_t)rb_u64(r);
                if (e > snap || cause < 0 || cause >= e) {
                    rb_fail(r, "a provenance entry is out of range");
                    break;
                }
                eng__store_prov_add(st, cause, e);
            }
            ncauses++;
            break;
        }
        case 'I': {
            uint32_t k = rb_u32(r);
            int64_t from = (int64_t)rb_u64(r), to = (int64_t)rb_u64(r);
            uint32_t slen = rb_u32(r);
            const uint8_t *sp = rb_bytes(r, slen);
            bson_t spec;
            if (!sp || version < 2 || !bson_init_static(&spec, sp, slen)) {
                rb_fail(r, "an index entry is not BSON");
                break;
            }
            if (k >= docs.n || from > snap || to <= from || (to != ENG_SEQ_MAX && to > snap)) {
                rb_fail(r, "an index entry is inconsistent");
                break;
            }
            bq_error_t ierr;
            eng__index_t *ix = eng__index_new(&spec, from, &ierr);
            if (!ix) {
                rb_fail(r, "an index spec does not compile");
                break;
            }
            atomic_store(&ix->to, to);
            eng__index_install(st, docs.v[k], ix);
            nindexes++;
            break;
        }
        case 'E':
            if (rb_u64(r) != nslots || rb_u64(r) != ncolls || rb_u64(r) != ncauses ||
                (version >= 2 && rb_u64(r) != nindexes))
                rb_fail(r, "the entry counts at the end do not match");
            else if (r->p != r->end)
                rb_fail(r, "bytes after the end entry");
            end = true;
            break;
        default:
            rb_fail(r, "unknown entry tag");
        }
    }
    /* document sets no collection owns are not freed by the store */
    for (size_t k = 0; k < docs.n; k++)
        if (!owned[k]) {
            eng__docs_free(docs.v[k]);
            rb_fail(r, "a document set no collection owns");
        }
    free(owned);
    free(docs.v);
    return !r->bad;
}

/* Loads checkpoint `seq` of dbpath into st (freshly initialized). On failure st holds
 * part of it: the caller cleans it up. */
static bool ckpt_load(const char *dir, uint64_t seq, eng__store_t *st, eng__ckpt_info_t *info,
                      bq_error_t *err)
{
    char name[64], path[4200];
    ckpt_name(seq, CKPT_SUFFIX, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        bq_error_set(err, ENG_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    size_t size = (size_t)sb.st_size;
    if (size < CKPT_HEADER_SIZE + ENG_HASH_SIZE + 1) {
        close(fd);
        bq_error_set(err, ENG_ERR_CORRUPT, "%s is too short (%zu bytes)", path, size);
        return false;
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        bq_error_set(err, ENG_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        return false;
    }
    madvise(m, size, MADV_SEQUENTIAL);
    const uint8_t *p = m;
    bool ok = false;
    uint8_t sum[ENG_HASH_SIZE];
    crypto_generichash(sum, ENG_HASH_SIZE, p, size - ENG_HASH_SIZE, NULL, 0);
    uint64_t hseq = eng__le32(p + 16) | (uint64_t)eng__le32(p + 20) << 32;
    if (memcmp(p, CKPT_MAGIC, 8) != 0) {
        bq_error_set(err, ENG_ERR_CORRUPT, "%s is not a checkpoint (bad magic)", path);
    } else if (sodium_memcmp(sum, p + size - ENG_HASH_SIZE, ENG_HASH_SIZE) != 0) {
        bq_error_set(err, ENG_ERR_CORRUPT, "%s fails its checksum", path);
    } else if (eng__le32(p + 8) < 1u || eng__le32(p + 8) > CKPT_VERSION) {
        bq_error_set(err, ENG_ERR_CORRUPT, "%s has format version %u, this build reads %u",
                     path, eng__le32(p + 8), CKPT_VERSION);
    } else if (hseq != seq || seq > (uint64_t)ENG_SEQ_MAX / 2) {
        bq_error_set(err, ENG_ERR_CORRUPT, "%s holds seq %" PRIu64 ", not the one in its name",
                     path, hseq);
    } else {
        info->seq = seq;
        info->ts = (int64_t)(eng__le32(p + 24) | (uint64_t)eng__le32(p + 28) << 32);
        memcpy(info->head, p + 32, ENG_HASH_SIZE);
        rbuf_t r = {.p = p + CKPT_HEADER_SIZE, .end = p + size - ENG_HASH_SIZE};
        ok = load_body(&r, st, seq, eng__le32(p + 8));
        if (!ok)
            bq_error_set(err, ENG_ERR_CORRUPT, "%s: %s at byte offset %td", path,
                         r.what ? r.what : "unreadable", r.p - p);
    }
    munmap(m, size);
    return ok;
}

/* ---------------------------------------------------------------------------------------
 * Entry points (eng_int.h, eng_db.h)
 * ------------------------------------------------------------------------------------- */

bool eng__ckpt_list(const char *dbpath, uint64_t **seqs, size_t *n, bq_error_t *err)
{
    char *dir = ckpt_dir(dbpath);
    bool ok = ckpt_list(dir, false, seqs, n, err);
    free(dir);
    return ok;
}

bool eng__ckpt_load(const char *dbpath, uint64_t seq, struct eng__store *st,
                    eng__ckpt_info_t *info, bq_error_t *err)
{
    char *dir = ckpt_dir(dbpath);
    bool ok = ckpt_load(dir, seq, st, info, err);
    free(dir);
    return ok;
}

bool eng__ckpt_start(eng_db_t *db, const char *dbpath, const eng_db_options_t *opts,
                     int64_t loaded_seq, bq_error_t *err)
{
    eng__ckpt_t *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dbpath = strdup(dbpath))) {
        free(ck);
        bq_error_set(err, BQ_ERR_InternalError, "out of memory");
        return false;
    }
    ck->db = db;
    ck->every_ops = opts->checkpoint_ops ? opts->checkpoint_ops : ENG_CKPT_OPS_DEFAULT;
    ck->every_seconds =
        opts->checkpoint_seconds ? opts->checkpoint_seconds : ENG_CKPT_SECONDS_DEFAULT;
    ck->last_seq = loaded_seq;
    ck->done = opts->checkpoint_done;
    ck->done_arg = opts->checkpoint_arg;
    pthread_mutex_init(&ck->write_lock, NULL);
    pthread_mutex_init(&ck->lock, NULL);
    pthread_cond_init(&ck->cond, NULL);
    db->ckpt = ck;
    if (ck->every_ops > 0 || ck->every_seconds > 0) {
        if (pthread_create(&ck->thread, NULL, ckpt_main, ck) != 0) {
            bq_error_set(err, BQ_ERR_InternalError, "cannot start the checkpoint thread");
            return false; /* eng__ckpt_stop frees it */
        }
        ck->running = true;
    }
    return true;
}

void eng__ckpt_stop(eng_db_t *db)
{
    eng__ckpt_t *ck = db->ckpt;
    if (!ck || !ck->running)
        return;
    pthread_mutex_lock(&ck->lock);
    ck->stopping = true;
    pthread_cond_signal(&ck->cond);
    pthread_mutex_unlock(&ck->lock);
    pthread_join(ck->thread, NULL);
    ck->running = false;
}

void eng__ckpt_free(eng_db_t *db)
{
    eng__ckpt_t *ck = db->ckpt;
    if (!ck)
        return;
    eng__ckpt_stop(db);
    pthread_cond_destroy(&ck->cond);
    pthread_mutex_destroy(&ck->lock);
    pthread_mutex_destroy(&ck->write_lock);
    free(ck->dbpath);
    free(ck);
    db->ckpt = NULL;
}

void eng__ckpt_status(eng_db_t *db, eng_db_status_t *out)
{
    eng__ckpt_t *ck = db->ckpt;
    out->checkpoint_seq = -1;
    if (!ck)
        return;
    pthread_mutex_lock(&ck->lock);
    out->checkpoint_seq = ck->last_seq;
    out->checkpoints = ck->written;
    out->checkpoint_failures = ck->failures;
    out->checkpoint_ms = ck->last_ms;
    snprintf(out->checkpoint_error, sizeof out->checkpoint_error, "%s", ck->last_error);
    pthread_mutex_unlock(&ck->lock);
}

bool eng_db_checkpoint(eng_db_t *db, bq_error_t *err)
{
    if (!db->ckpt) {
        bq_error_set(err, BQ_ERR_IllegalOperation, "checkpoints are off for this database");
        return false;
    }
    return ckpt_now(db->ckpt, err);
}

bool eng__ckpt_write_format(eng_db_t *db, int64_t snap, uint32_t version, bq_error_t *err)
{
    if (!db->ckpt || snap < 0 || snap > eng_db_snapshot(db) || version < 2 ||
        version > CKPT_VERSION) {
        bq_error_set(err, BQ_ERR_BadValue, "no checkpoint at seq %lld in format %u",
                     (long long)snap, version);
        return false;
    }
    pthread_mutex_lock(&db->ckpt->write_lock);
    bool ok = ckpt_write(db->ckpt, snap, version, err);
    pthread_mutex_unlock(&db->ckpt->write_lock);
    return ok;
}

bool eng__ckpt_write_at(eng_db_t *db, int64_t snap, bq_error_t *err)
{
    return eng__ckpt_write_format(db, snap, CKPT_VERSION, err);
}
