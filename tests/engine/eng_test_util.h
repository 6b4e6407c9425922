/*
 * eng_test_util.h: helpers shared by the engine tests: scratch data directories, small op
 * documents, logs written through the API or byte by byte (to build logs the API refuses
 * to write, such as a gap in seq), whole-file read/write, a database opened with asserts
 * (t_db_open) and a durable intent submitted and waited for (t_submit_wait).
 */
#ifndef ENG_TEST_UTIL_H
#define ENG_TEST_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eng.h"
#include "eng_db.h"
#include "eng_int.h"

#define T_TS0 1700000000000LL

/* A fresh empty directory under TMPDIR; returns a malloc'd path (the dbpath itself does
 * not exist yet: eng_log_open creates it). */
static inline char *t_dbpath(void)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/nedb-eng-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *dir = mkdtemp(tmpl);
    cr_assert(dir, "mkdtemp: %s", strerror(errno));
    char *db = malloc(strlen(dir) + 8);
    sprintf(db, "%s/db", dir);
    return db;
}

/* Removes a dbpath from t_dbpath() together with its scratch parent. */
static inline void t_rm_rf(const char *db)
{
    char cmd[1024];
    size_t n = strlen(db);
    cr_assert(n > 3 && strcmp(db + n - 3, "/db") == 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(n - 3), db);
    cr_assert_eq(system(cmd), 0);
}

/* Insert op `seq` with a document of about `pad` extra bytes. */
static inline void t_op(uint64_t seq, size_t pad, bson_t *out)
{
    bson_t o;
    bson_init(&o);
    BSON_APPEND_INT64(&o, "_id", (int64_t)seq);
    char *s = malloc(pad + 1);
    memset(s, 'a' + (int)(seq % 26), pad);
    s[pad] = '\0';
    BSON_APPEND_UTF8(&o, "x", s);
    free(s);
    eng_op_t op = {
        .seq = (int64_t)seq,
        .ts = T_TS0 + (int64_t)seq,
        .ct_t = (uint32_t)((T_TS0 + (int64_t)seq) / 1000),
        .ct_i = (uint32_t)seq + 1,
        .op = ENG_OP_INSERT,
        .ns = "test.c",
        .ns_len = 6,
        .has_id = true,
        .id = {.value_type = BSON_TYPE_INT64, .value.v_int64 = (int64_t)seq},
        .o = bson_get_data(&o),
        .o_len = o.len,
    };
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_op_build(&op, out, &err), "%s", err.message);
    bson_destroy(&o);
}

static inline eng_log_t *t_open(const char *db, uint64_t segment_size)
{
    eng_log_options_t opts = {.segment_size = segment_size};
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_open(db, &opts, &log, &err), "open %s: %s", db, err.message);
    return log;
}

/* Appends ops next..next+n-1 (and syncs); positions into pos[] when not NULL. */
static inline void t_append(eng_log_t *log, uint64_t n, size_t pad, eng_pos_t *pos)
{
    uint64_t next;
    eng_log_head(log, &next, NULL);
    bq_error_t err;
    bq_error_clear(&err);
    for (uint64_t i = 0; i < n; i++) {
        bson_t b;
        t_op(next + i, pad, &b);
        cr_assert(eng_log_append(log, &b, NULL, pos ? &pos[i] : NULL, &err), "append: %s",
                  err.message);
        bson_destroy(&b);
    }
    cr_assert(eng_log_sync(log, &err), "sync: %s", err.message);
}

/* Writes a whole log of the given bodies, hashed as the format says, into segments of
 * `per_seg` records each, bypassing eng_log (so it can write what eng_log refuses). The
 * segment names use first_seqs[] when given, else the body's own seq. */
static inline void t_write_raw(const char *db, bson_t *const *bodies, size_t n,
                               size_t per_seg, const uint64_t *first_seqs)
{
    char path[1024];
    mkdir(db, 0755);
    snprintf(path, sizeof path, "%s/log", db);
    mkdir(path, 0755);
    uint8_t prev[ENG_HASH_SIZE] = {0};
    FILE *f = NULL;
    for (size_t i = 0; i < n; i++) {
        if (i % per_seg == 0) {
            if (f)
                fclose(f);
            int64_t seq = 0;
            eng_op_peek_seq(bson_get_data(bodies[i]), bodies[i]->len, &seq);
            char name[64];
            eng__seg_name(first_seqs ? first_seqs[i / per_seg] : (uint64_t)seq, name,
                          sizeof name);
            snprintf(path, sizeof path, "%s/log/%s", db, name);
            f = fopen(path, "wb");
            cr_assert(f);
            uint8_t hdr[ENG__SEG_HEADER_SIZE];
            eng__seg_header(hdr);
            fwrite(hdr, 1, sizeof hdr, f);
        }
        uint8_t len[4];
        eng__put_le32(len, bodies[i]->len);
        fwrite(len, 1, 4, f);
        fwrite(bson_get_data(bodies[i]), 1, bodies[i]->len, f);
        eng__hash(prev, bson_get_data(bodies[i]), bodies[i]->len, prev);
        fwrite(prev, 1, ENG_HASH_SIZE, f);
    }
    if (f)
        fclose(f);
}

static inline uint8_t *t_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "fopen %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline void t_write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static inline void t_seg_path(const char *db, uint64_t first, char *out, size_t size)
{
    char name[64];
    eng__seg_name(first, name, sizeof name);
    snprintf(out, size, "%s/log/%s", db, name);
}

/* eng_verify with asserts on the call itself. */
static inline eng_verify_report_t t_verify(const char *db)
{
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_verify(db, &r, &err), "verify: %s", err.message);
    return r;
}

/* ---- opening a database ---- */

/* eng_db_open with an assert on the call. The recovery warnings go to *warnings (the
 * caller frees them), or are dropped when warnings is NULL. */
static inline eng_db_t *t_db_open(const char *path, const eng_db_options_t *opts,
                                  char **warnings)
{
    eng_db_t *db = NULL;
    char *w = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_db_open(path, opts, &db, &w, &err), "open: %s", err.message);
    if (warnings)
        *warnings = w;
    else
        free(w);
    return db;
}

static inline eng_db_status_t t_db_status(eng_db_t *db)
{
    eng_db_status_t st;
    eng_db_status(db, &st);
    return st;
}

/* The path of the checkpoint file of seq `seq` under dbpath `path`. */
static inline void t_ckpt_path(const char *path, int64_t seq, char *out, size_t size)
{
    snprintf(out, size, "%s/checkpoint/%020lld.ckpt", path, (long long)seq);
}

/* ---- writing through the committer ---- */

typedef struct t_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} t_waiter_t;

static inline void t_on_done(eng_intent_t *in)
{
    t_waiter_t *w = in->owner;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Submits a durable intent and waits until the committer is done with it. */
static inline void t_submit_wait(eng_db_t *db, eng_intent_t *in)
{
    t_waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    in->done = t_on_done;
    in->owner = &w;
    in->durable = true;
    eng_submit(db, in);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
}

#endif
