/*
 * test_eng_log.c: tests of engine/eng_log.c in normal operation: the bytes on disk, the
 * chain across segment rollover, reading back by position and by seq, reopening, opening
 * from a checkpoint's seq, and LOCK. Crash and fault cases are in test_eng_log_fault.c.
 */
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "eng_test_util.h"

Test(eng_log, new_directory_has_lock_and_an_empty_first_segment)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    uint64_t next;
    uint8_t head[ENG_HASH_SIZE], zero[ENG_HASH_SIZE] = {0};
    eng_log_head(log, &next, head);
    cr_assert_eq(next, 0);
    cr_assert(memcmp(head, zero, sizeof zero) == 0);
    cr_assert_str_eq(eng_log_warnings(log), "");
    eng_log_close(log);

    char path[1024];
    snprintf(path, sizeof path, "%s/LOCK", db);
    cr_assert_eq(access(path, F_OK), 0);
    t_seg_path(db, 0, path, sizeof path);
    size_t len;
    uint8_t *data = t_read_file(path, &len);
    cr_assert_eq(len, 16);
    cr_assert(memcmp(data, "NEDBLOG1\1\0\0\0\0\0\0\0", 16) == 0);
    free(data);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, record_bytes_follow_the_format)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    bson_t b0, b1;
    t_op(0, 20, &b0);
    t_op(1, 30, &b1);
    uint8_t h0[ENG_HASH_SIZE], h1[ENG_HASH_SIZE];
    eng_pos_t p0, p1;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_append(log, &b0, h0, &p0, &err), "%s", err.message);
    cr_assert(eng_log_append(log, &b1, h1, &p1, &err), "%s", err.message);
    cr_assert(eng_log_sync(log, &err), "%s", err.message);
    eng_log_close(log);

    /* expected hashes, computed independently with libsodium */
    uint8_t want[ENG_HASH_SIZE], buf[4096], zero[ENG_HASH_SIZE] = {0};
    memcpy(buf, zero, 32);
    memcpy(buf + 32, bson_get_data(&b0), b0.len);
    crypto_generichash(want, 32, buf, 32 + b0.len, NULL, 0);
    cr_assert(memcmp(want, h0, 32) == 0);
    memcpy(buf, h0, 32);
    memcpy(buf + 32, bson_get_data(&b1), b1.len);
    crypto_generichash(want, 32, buf, 32 + b1.len, NULL, 0);
    cr_assert(memcmp(want, h1, 32) == 0);

    char path[1024];
    t_seg_path(db, 0, path, sizeof path);
    size_t len;
    uint8_t *d = t_read_file(path, &len);
    cr_assert_eq(len, 16 + 2 * 36 + b0.len + b1.len);
    cr_assert_eq(p0.seg, 0);
    cr_assert_eq(p0.off, 16);
    cr_assert_eq(p1.off, 16 + 36 + b0.len);
    cr_assert_eq(eng__le32(d + 16), b0.len);
    cr_assert(memcmp(d + 20, bson_get_data(&b0), b0.len) == 0);
    cr_assert(memcmp(d + 20 + b0.len, h0, 32) == 0);
    cr_assert_eq(eng__le32(d + p1.off), b1.len);
    cr_assert(memcmp(d + p1.off + 4 + b1.len, h1, 32) == 0);
    free(d);
    bson_destroy(&b0);
    bson_destroy(&b1);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, append_refuses_a_wrong_seq)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    bson_t b;
    t_op(1, 5, &b);
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_log_append(log, &b, NULL, NULL, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    /* the log is still usable */
    t_append(log, 3, 5, NULL);
    eng_log_close(log);
    bson_destroy(&b);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, chain_continues_across_segments_and_reopens)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    eng_pos_t pos[300];
    t_append(log, 150, 60, pos);
    uint64_t next;
    uint8_t head[ENG_HASH_SIZE];
    eng_log_head(log, &next, head);
    eng_log_close(log);

    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid, "%s", r.detail);
    cr_assert_eq(r.records, 150);
    cr_assert_gt(r.segments, 3);
    cr_assert(memcmp(r.head, head, 32) == 0);

    /* every segment file is named after its first record and at most 4096 bytes */
    for (size_t i = 1; i < 150; i++) {
        if (pos[i].seg != pos[i - 1].seg) {
            cr_assert_eq(pos[i].seg, pos[i - 1].seg + 1);
            cr_assert_eq(pos[i].off, 16);
            char path[1024];
            t_seg_path(db, i, path, sizeof path);
            cr_assert_eq(access(path, F_OK), 0, "no segment named for seq %zu", i);
        }
    }

    log = t_open(db, 4096);
    uint64_t next2;
    uint8_t head2[ENG_HASH_SIZE];
    eng_log_head(log, &next2, head2);
    cr_assert_eq(next2, 150);
    cr_assert(memcmp(head2, head, 32) == 0);
    t_append(log, 150, 60, pos + 150);
    eng_log_close(log);
    r = t_verify(db);
    cr_assert(r.valid, "%s", r.detail);
    cr_assert_eq(r.records, 300);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, read_by_position_returns_the_record)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    eng_pos_t pos[100];
    t_append(log, 100, 50, pos);
    bq_error_t err;
    bq_error_clear(&err);
    for (uint64_t i = 0; i < 100; i += 7) {
        bson_t got, want;
        uint8_t h[ENG_HASH_SIZE];
        cr_assert(eng_log_read(log, pos[i], &got, h, &err), "%s", err.message);
        t_op(i, 50, &want);
        cr_assert(bson_equal(&got, &want), "record %llu differs", (unsigned long long)i);
        bson_destroy(&got);
        bson_destroy(&want);
    }
    /* a big record spans more than the first read */
    bson_t big, got;
    t_op(100, 10000, &big);
    eng_pos_t bp;
    cr_assert(eng_log_append(log, &big, NULL, &bp, &err), "%s", err.message);
    /* not flushed yet: not readable */
    cr_assert_not(eng_log_read(log, bp, &got, NULL, &err));
    bson_destroy(&got);
    cr_assert(eng_log_flush(log, &err), "%s", err.message);
    cr_assert(eng_log_read(log, bp, &got, NULL, &err), "%s", err.message);
    cr_assert(bson_equal(&got, &big));
    bson_destroy(&got);
    bson_destroy(&big);
    /* nonsense positions are errors, not crashes */
    cr_assert_not(eng_log_read(log, (eng_pos_t){99, 16}, &got, NULL, &err));
    bson_destroy(&got);
    cr_assert_not(eng_log_read(log, (eng_pos_t){0, 3}, &got, NULL, &err));
    bson_destroy(&got);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, iterator_walks_from_any_seq_across_segments)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    eng_pos_t pos[120];
    t_append(log, 120, 40, pos);
    bq_error_t err;
    bq_error_clear(&err);
    uint64_t starts[] = {0, 1, 37, 119, 120};
    for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
        eng_log_iter_t *it = eng_log_iter_new(log, starts[k], &err);
        cr_assert_not_null(it, "%s", err.message);
        eng_record_t rec;
        uint64_t want = starts[k];
        while (eng_log_iter_next(it, &rec, &err)) {
            cr_assert_eq(rec.seq, want);
            cr_assert_eq(rec.pos.seg, pos[want].seg);
            cr_assert_eq(rec.pos.off, pos[want].off);
            want++;
        }
        cr_assert_eq(err.code, 0, "%s", err.message);
        cr_assert_eq(want, 120);
        eng_log_iter_destroy(it);
    }
    cr_assert_null(eng_log_iter_new(log, 121, &err));

    /* an iterator at the end sees records flushed later, in a new segment too */
    eng_log_iter_t *it = eng_log_iter_new(log, 120, &err);
    eng_record_t rec;
    cr_assert_not(eng_log_iter_next(it, &rec, &err));
    t_append(log, 60, 40, NULL);
    uint64_t want = 120;
    while (eng_log_iter_next(it, &rec, &err))
        cr_assert_eq(rec.seq, want++);
    cr_assert_eq(want, 180);
    eng_log_iter_destroy(it);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

typedef struct {
    uint64_t first, count;
} seen_t;

static bool count_records(void *ctx, const eng_record_t *rec, bq_error_t *err)
{
    (void)err;
    seen_t *s = ctx;
    if (s->count == 0)
        s->first = rec->seq;
    s->count++;
    return true;
}

Test(eng_log, open_from_a_checkpoint_seq_replays_only_the_tail)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    t_append(log, 80, 40, NULL);
    uint8_t at50[ENG_HASH_SIZE];
    {
        /* the stored hash of seq 49, as a checkpoint at seq 50 would keep it */
        bq_error_t err;
        eng_log_iter_t *it = eng_log_iter_new(log, 49, &err);
        eng_record_t rec;
        cr_assert(eng_log_iter_next(it, &rec, &err));
        memcpy(at50, rec.hash, 32);
        eng_log_iter_destroy(it);
    }
    eng_log_close(log);

    seen_t seen = {0};
    eng_log_options_t opts = {.segment_size = 4096, .verify_from_seq = 50,
                              .on_record = count_records, .on_record_ctx = &seen};
    memcpy(opts.verify_from_hash, at50, 32);
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_open(db, &opts, &log, &err), "%s", err.message);
    cr_assert_eq(seen.first, 50);
    cr_assert_eq(seen.count, 30);
    uint64_t next;
    eng_log_head(log, &next, NULL);
    cr_assert_eq(next, 80);
    eng_log_close(log);

    /* a checkpoint head unlike the log's is a broken link */
    opts.verify_from_hash[0] ^= 1;
    cr_assert_not(eng_log_open(db, &opts, &log, &err));
    cr_assert(strstr(err.message, "broken link"), "%s", err.message);
    cr_assert(strstr(err.message, "seq 49"), "%s", err.message);
    /* a checkpoint past the end of the log too */
    opts.verify_from_seq = 500;
    cr_assert_not(eng_log_open(db, &opts, &log, &err));
    cr_assert(strstr(err.message, "broken link"), "%s", err.message);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, second_opener_is_refused_in_process)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    eng_log_t *second = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_log_open(db, NULL, &second, &err));
    cr_assert_null(second);
    cr_assert_eq(err.code, ENG_ERR_LOCKED);
    char lock[1024];
    snprintf(lock, sizeof lock, "%s/LOCK", db);
    cr_assert(strstr(err.message, lock), "message does not name %s: %s", lock, err.message);
    /* verify refuses too while the log is open */
    eng_verify_report_t r;
    cr_assert_not(eng_verify(db, &r, &err));
    cr_assert_eq(err.code, ENG_ERR_LOCKED);
    eng_log_close(log);
    /* and after the close both work */
    cr_assert(eng_verify(db, &r, &err), "%s", err.message);
    log = t_open(db, 0);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, second_opener_is_refused_in_another_process)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        eng_log_t *child = NULL;
        bq_error_t err;
        bq_error_clear(&err);
        bool ok = eng_log_open(db, NULL, &child, &err);
        _exit(ok ? 0 : err.code == ENG_ERR_LOCKED ? 3 : 4);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 3);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, verifiers_share_the_lock_but_exclude_a_server)
{
    char *db = t_dbpath();
    eng_log_close(t_open(db, 0));
    bq_error_t err;
    bq_error_clear(&err);
    int a = eng__lock_take(db, false, false, &err);
    int b = eng__lock_take(db, false, false, &err);
    cr_assert(a >= 0 && b >= 0, "%s", err.message);
    eng_verify_report_t r;
    cr_assert(eng_verify(db, &r, &err), "%s", err.message);
    eng_log_t *log = NULL;
    cr_assert_not(eng_log_open(db, NULL, &log, &err));
    cr_assert_eq(err.code, ENG_ERR_LOCKED);
    close(a);
    close(b);
    t_rm_rf(db);
    free(db);
}

Test(eng_log, options_are_checked)
{
    char *db = t_dbpath();
    eng_log_options_t opts = {.segment_size = 100};
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_log_open(db, &opts, &log, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    t_rm_rf(db);
    free(db);
}

typedef struct {
    eng_log_t *log;
    uint64_t n;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    bq_error_t err;
    bq_error_clear(&err);
    for (uint64_t i = 0; i < w->n; i++) {
        bson_t b;
        t_op(i, 30, &b);
        if (!eng_log_append(w->log, &b, NULL, NULL, &err))
            abort();
        bson_destroy(&b);
        if (i % 97 == 0 && !eng_log_flush(w->log, &err))
            abort();
    }
    if (!eng_log_sync(w->log, &err))
        abort();
    return NULL;
}

Test(eng_log, readers_tail_the_log_while_the_writer_appends)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 8192);
    writer_t w = {log, 5000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    bq_error_t err;
    bq_error_clear(&err);
    eng_log_iter_t *it = eng_log_iter_new(log, 0, &err);
    cr_assert_not_null(it, "%s", err.message);
    uint64_t want = 0;
    while (want < w.n) {
        eng_record_t rec;
        if (!eng_log_iter_next(it, &rec, &err)) {
            cr_assert_eq(err.code, 0, "%s", err.message);
            sched_yield();
            continue;
        }
        cr_assert_eq(rec.seq, want);
        if (want % 50 == 0) {
            bson_t got, exp;
            cr_assert(eng_log_read(log, rec.pos, &got, NULL, &err), "%s", err.message);
            t_op(want, 30, &exp);
            cr_assert(bson_equal(&got, &exp));
            bson_destroy(&got);
            bson_destroy(&exp);
        }
        want++;
    }
    eng_log_iter_destroy(it);
    pthread_join(th, NULL);
    eng_log_close(log);
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid);
    cr_assert_eq(r.records, w.n);
    t_rm_rf(db);
    free(db);
}
