/*
 * test_eng_ckpt.c: checkpoints (engine/eng_ckpt.c and the open in eng_db.c, DESIGN.md
 * section 6). The state after an open from a checkpoint is compared with the state after
 * a full replay of the same log, at every snapshot (so time travel to seqs before the
 * checkpoint is covered), and with what the test wrote. Also: only the tail is replayed,
 * a corrupt or mismatched checkpoint is skipped, a crash after a checkpoint recovers,
 * background checkpoints by count and by time, pruning to the newest two.
 */
#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/wait.h>

#include "eng_db.h"
#include "eng_store.h"
#include "eng_test_util.h"

/* ---- writing through the committer ---- */

/* Submits one op and waits; returns its seq, or -1 when it failed. Cleans the op up. */
static int64_t run_op(eng_db_t *db, eng_wop_t *op)
{
    eng_intent_t in = {.ops = op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    int64_t seq = in.applied ? op->seq : -1;
    eng_wop_cleanup(op);
    return seq;
}

/* Insert or update (full post-image) {_id: id, v: v} in db.coll; prov_cause >= 0 adds
 * a prov {caused_by: [prov_cause]}. */
static int64_t put(eng_db_t *db, const char *dbn, const char *coll, int id, int v,
                   int64_t prov_cause)
{
    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_UPDATE, dbn, coll);
    BSON_APPEND_INT32(&op.doc, "_id", id);
    BSON_APPEND_INT32(&op.doc, "v", v);
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = id;
    if (prov_cause >= 0) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(&op.prov, "caused_by", &arr);
        BSON_APPEND_INT64(&arr, "0", prov_cause);
        bson_append_array_end(&op.prov, &arr);
        BSON_APPEND_UTF8(&op.prov, "evidence", "inference");
    }
    return run_op(db, &op);
}

static int64_t del(eng_db_t *db, const char *dbn, const char *coll, int id)
{
    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_DELETE, dbn, coll);
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = id;
    return run_op(db, &op);
}

static int64_t catalog_op(eng_db_t *db, eng_wop_kind_t kind, const char *dbn,
                          const char *coll, const char *to_coll)
{
    eng_wop_t op;
    eng_wop_init(&op, kind, dbn, coll);
    if (kind == ENG_WOP_CREATE)
        BSON_APPEND_BOOL(&op.doc, "capped", false);
    if (kind == ENG_WOP_COLLMOD)
        BSON_APPEND_UTF8(&op.doc, "validationLevel", "moderate");
    if (kind == ENG_WOP_RENAME) {
        snprintf(op.to_db, sizeof op.to_db, "%s", dbn);
        snprintf(op.to_coll, sizeof op.to_coll, "%s", to_coll);
    }
    return run_op(db, &op);
}

/* ---- opening ---- */

/* Background checkpoints off: the tests decide when one is written. */
static const eng_db_options_t manual = {.checkpoint_ops = -1, .checkpoint_seconds = -1};
static const eng_db_options_t manual_no_close = {
    .checkpoint_ops = -1, .checkpoint_seconds = -1, .no_close_checkpoint = true};
static const eng_db_options_t full_replay = {.checkpoint_ops = -1,
                                             .checkpoint_seconds = -1,
                                             .no_close_checkpoint = true,
                                             .ignore_checkpoints = true};

/* ---- the whole observable state, at every snapshot, as one hash ---- */

static void h_i64(crypto_generichash_state *h, int64_t v)
{
    crypto_generichash_update(h, (const uint8_t *)&v, sizeof v);
}

static void h_str(crypto_generichash_state *h, const char *s)
{
    crypto_generichash_update(h, (const uint8_t *)s, strlen(s) + 1);
}

/* Hashes, for every snapshot from -1 to the head: the cluster time, the catalog (names,
 * options, created seq), every visible document (bytes and seq, forward and backward),
 * each document found by _id, and the provenance effects of every seq. */
static void state_hash(eng_db_t *db, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    int64_t head = eng_db_snapshot(db);
    h_i64(&h, head);
    for (int64_t snap = -1; snap <= head; snap++) {
        uint32_t t, i;
        eng_db_cluster_time(db, snap, &t, &i);
        h_i64(&h, (int64_t)t << 32 | i);
        h_i64(&h, eng_db_snapshot_at(db, t, i));
        eng_coll_info_t *colls;
        size_t n = eng_catalog_list(db, NULL, snap, &colls);
        h_i64(&h, (int64_t)n);
        for (size_t c = 0; c < n; c++) {
            h_str(&h, colls[c].db);
            h_str(&h, colls[c].name);
            crypto_generichash_update(&h, bson_get_data(colls[c].options),
                                      colls[c].options->len);
            h_i64(&h, colls[c].created_seq);
            for (int rev = 0; rev < 2; rev++) {
                eng_scan_t scan;
                eng_doc_t d;
                eng_scan_init(&scan, colls[c].coll, snap, rev);
                while (eng_scan_next(&scan, &d)) {
                    crypto_generichash_update(&h, d.data, d.len);
                    h_i64(&h, d.seq);
                    if (rev)
                        continue;
                    bson_t doc;
                    bson_iter_t it;
                    bson_init_static(&doc, d.data, d.len);
                    cr_assert(bson_iter_init_find(&it, &doc, "_id"));
                    eng_doc_t byid;
                    cr_assert(eng_coll_find_id(colls[c].coll, snap, bson_iter_value(&it),
                                               &byid));
                    cr_assert_eq(byid.seq, d.seq);
                }
            }
        }
        free(colls);
    }
    /* provenance: effects of every cause, at the head and half way */
    for (int64_t cause = 0; cause <= head; cause++) {
        int64_t eff[64];
        size_t k = eng_prov_effects(db, cause, head, eff, 64);
        h_i64(&h, (int64_t)k);
        crypto_generichash_update(&h, (const uint8_t *)eff, k * sizeof *eff);
        k = eng_prov_effects(db, cause, head / 2, eff, 64);
        h_i64(&h, (int64_t)k);
    }
    crypto_generichash_final(&h, out, 32);
}

/* The state of path as a full replay of its log sees it. */
static void full_replay_hash(const char *path, uint8_t out[32], int64_t *head)
{
    eng_db_t *db = t_db_open(path, &full_replay, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.replayed_ops, (uint64_t)(eng_db_snapshot(db) + 1),
                 "a full replay replays every op");
    state_hash(db, out);
    *head = eng_db_snapshot(db);
    eng_db_close(db);
}

/* A history with every kind of op: inserts, updates, deletes, a re-inserted _id,
 * provenance, create, collMod, rename, drop, dropDatabase, several databases. */
static void write_history(eng_db_t *db, int rounds)
{
    cr_assert_geq(catalog_op(db, ENG_WOP_CREATE, "app", "opts", NULL), 0);
    int64_t first = put(db, "app", "a", 1, 1, -1);
    cr_assert_geq(first, 0);
    for (int r = 0; r < rounds; r++) {
        for (int id = 0; id < 20; id++)
            cr_assert_geq(put(db, "app", "a", id, r * 100 + id, id % 3 ? -1 : first), 0);
        cr_assert_geq(del(db, "app", "a", r % 20), 0);
        cr_assert_geq(put(db, "app", "b", r, r, -1), 0);
        cr_assert_geq(put(db, "other", "x", r % 5, r, first), 0);
    }
    cr_assert_geq(put(db, "app", "a", 0, -5, -1), 0); /* re-insert of a deleted _id */
    cr_assert_geq(catalog_op(db, ENG_WOP_COLLMOD, "app", "opts", NULL), 0);
    cr_assert_geq(put(db, "app", "opts", 1, 1, -1), 0);
    cr_assert_geq(catalog_op(db, ENG_WOP_RENAME, "app", "b", "b2"), 0);
    cr_assert_geq(put(db, "app", "b2", 999, 1, -1), 0);
    cr_assert_geq(catalog_op(db, ENG_WOP_DROP, "app", "opts", NULL), 0);
    cr_assert_geq(put(db, "gone", "g", 1, 1, -1), 0);
    cr_assert_geq(catalog_op(db, ENG_WOP_DROP_DATABASE, "gone", "g", NULL), 0);
    cr_assert_geq(put(db, "gone", "g", 2, 2, -1), 0); /* a new incarnation */
}

static size_t count_ckpt_files(const char *path, uint64_t *newest)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/checkpoint", path);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    *newest = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".ckpt") == 0) {
            n++;
            uint64_t s = strtoull(e->d_name, NULL, 10);
            if (s > *newest)
                *newest = s;
        }
    }
    closedir(d);
    return n;
}

/* ---- tests ---- */

Test(eng_ckpt, reopen_from_a_checkpoint_gives_the_same_state_as_a_full_replay)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 6);
    int64_t head = eng_db_snapshot(db);
    uint8_t live[32];
    state_hash(db, live);
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, head);
    cr_assert_eq(st.checkpoints, 1);
    eng_db_close(db);
    uint8_t replayed[32];
    int64_t rhead;
    full_replay_hash(path, replayed, &rhead);
    cr_assert_eq(rhead, head);
    cr_assert_arr_eq(live, replayed, 32, "the store before the close is what the log says");

    char *warnings;
    db = t_db_open(path, &manual_no_close, &warnings);
    cr_assert_str_empty(warnings);
    free(warnings);
    st = t_db_status(db);
    cr_assert_eq(st.replayed_ops, 0, "nothing after the checkpoint to replay");
    cr_assert_eq(st.checkpoint_seq, head);
    cr_assert_eq(st.committed, head);
    uint8_t from_ckpt[32];
    state_hash(db, from_ckpt);
    cr_assert_arr_eq(live, from_ckpt, 32, "the state at every seq, from the checkpoint");
    /* the chain head and the next seq carry on from the checkpoint */
    eng_verify_report_t rep;
    cr_assert(eng_db_verify(db, &rep, &err));
    cr_assert(rep.valid);
    cr_assert_str_eq(rep.head_hex, st.head_hex);
    cr_assert_eq(put(db, "app", "a", 5000, 1, head), head + 1);
    cr_assert(eng_db_verify(db, &rep, &err));
    cr_assert(rep.valid);
    cr_assert_eq(rep.records, (uint64_t)head + 2);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, reopen_replays_only_the_log_after_the_checkpoint)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 3);
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    int64_t ck = eng_db_snapshot(db);
    for (int i = 0; i < 37; i++)
        cr_assert_eq(put(db, "app", "tail", i, i, i % 2 ? ck : -1), ck + 2 + i);
    int64_t head = eng_db_snapshot(db);
    cr_assert_eq(head, ck + 38, "37 writes and the implicit create");
    eng_db_close(db); /* no checkpoint at close */

    db = t_db_open(path, &manual_no_close, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, ck);
    cr_assert_eq(st.replayed_ops, 38);
    cr_assert_eq(st.committed, head);
    uint8_t a[32], b[32];
    state_hash(db, a);
    int64_t effects[64];
    cr_assert_eq(eng_prov_effects(db, ck, head, effects, 64), 18,
                 "provenance from the checkpoint and from the tail");
    eng_db_close(db);
    int64_t rhead;
    full_replay_hash(path, b, &rhead);
    cr_assert_eq(rhead, head);
    cr_assert_arr_eq(a, b, 32);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_checkpoint_of_an_older_snapshot_sees_only_that_snapshot)
{
    /* What the background thread meets: versions replaced, documents and collections
     * created, collections dropped and provenance added after its snapshot. Every seq
     * as a checkpoint then tail replay must give the full replay's state. */
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 2);
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db);
    uint8_t want[32];
    int64_t rhead;
    full_replay_hash(path, want, &rhead);
    for (int64_t snap = 0; snap <= head; snap += 3) {
        db = t_db_open(path, &full_replay, NULL);
        bq_error_t err;
        cr_assert(eng__ckpt_write_at(db, snap, &err), "%s", err.message);
        eng_db_close(db);
        db = t_db_open(path, &manual_no_close, NULL);
        eng_db_status_t st = t_db_status(db);
        cr_assert_eq(st.checkpoint_seq, snap);
        cr_assert_eq(st.replayed_ops, (uint64_t)(head - snap));
        uint8_t got[32];
        state_hash(db, got);
        cr_assert_arr_eq(got, want, 32, "checkpoint at seq %lld", (long long)snap);
        eng_db_close(db);
        char f[700];
        t_ckpt_path(path, snap, f, sizeof f);
        cr_assert_eq(unlink(f), 0);
    }
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, close_writes_a_checkpoint_and_provenance_survives)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    int64_t cause = put(db, "app", "a", 1, 1, -1);
    int64_t e1 = put(db, "app", "a", 2, 2, cause);
    int64_t e2 = put(db, "app", "a", 2, 3, cause); /* a second version of the effect */
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db);
    uint64_t newest;
    cr_assert_eq(count_ckpt_files(path, &newest), 1);
    cr_assert_eq(newest, (uint64_t)head);

    db = t_db_open(path, &manual, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.replayed_ops, 0);
    int64_t eff[8];
    cr_assert_eq(eng_prov_effects(db, cause, head, eff, 8), 2);
    cr_assert(eff[0] == e1 && eff[1] == e2);
    cr_assert_eq(eng_prov_effects(db, cause, e1, eff, 8), 1, "as of e1 only e1");
    eng_db_close(db); /* nothing new: no new checkpoint */
    cr_assert_eq(count_ckpt_files(path, &newest), 1);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_corrupt_checkpoint_is_skipped_for_the_previous_one_then_a_full_replay)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 2);
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    int64_t ck1 = eng_db_snapshot(db);
    for (int i = 0; i < 10; i++)
        put(db, "app", "a", 100 + i, i, -1);
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    int64_t ck2 = eng_db_snapshot(db);
    put(db, "app", "a", 1000, 1, -1);
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db);
    uint8_t want[32];
    int64_t rhead;
    full_replay_hash(path, want, &rhead);

    /* one flipped byte in the middle of the newest */
    char f[700];
    size_t len;
    t_ckpt_path(path, ck2, f, sizeof f);
    uint8_t *bytes = t_read_file(f, &len);
    bytes[len / 2] ^= 0x40;
    t_write_file(f, bytes, len);
    free(bytes);
    char *warnings;
    db = t_db_open(path, &manual_no_close, &warnings);
    cr_assert(strstr(warnings, "checksum"), "warnings: %s", warnings);
    cr_assert(strstr(warnings, "skipped"), "warnings: %s", warnings);
    free(warnings);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, ck1);
    cr_assert_eq(st.replayed_ops, (uint64_t)(head - ck1));
    uint8_t got[32];
    state_hash(db, got);
    cr_assert_arr_eq(got, want, 32);
    eng_db_close(db);

    /* the older one cut short too: a full replay */
    t_ckpt_path(path, ck1, f, sizeof f);
    bytes = t_read_file(f, &len);
    t_write_file(f, bytes, len - 100);
    free(bytes);
    db = t_db_open(path, &manual_no_close, &warnings);
    cr_assert(strstr(warnings, "checkpoint at seq"), "warnings: %s", warnings);
    free(warnings);
    st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, -1);
    cr_assert_eq(st.replayed_ops, (uint64_t)head + 1);
    state_hash(db, got);
    cr_assert_arr_eq(got, want, 32);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_checkpoint_whose_head_is_not_the_logs_is_skipped)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 2);
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    int64_t ck = eng_db_snapshot(db);
    put(db, "app", "a", 1000, 1, -1);
    eng_db_close(db);

    /* a different head, with a checksum that verifies: only the log can tell */
    char f[700];
    size_t len;
    t_ckpt_path(path, ck, f, sizeof f);
    uint8_t *bytes = t_read_file(f, &len);
    bytes[40] ^= 1;
    crypto_generichash(bytes + len - 32, 32, bytes, len - 32, NULL, 0);
    t_write_file(f, bytes, len);
    free(bytes);
    char *warnings;
    db = t_db_open(path, &manual_no_close, &warnings);
    cr_assert(strstr(warnings, "broken link"), "warnings: %s", warnings);
    free(warnings);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, -1);
    cr_assert_eq(st.replayed_ops, (uint64_t)ck + 2);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_real_log_corruption_after_the_checkpoint_still_fails_the_open)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    for (int i = 0; i < 20; i++)
        put(db, "app", "a", i, i, -1);
    bq_error_t err;
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    for (int i = 0; i < 20; i++)
        put(db, "app", "a", 100 + i, i, -1);
    eng_db_close(db);

    /* flip a byte of a document near the end of the only segment */
    char seg[700];
    size_t len;
    snprintf(seg, sizeof seg, "%s/log/%020d.nlog", path, 0);
    uint8_t *bytes = t_read_file(seg, &len);
    bytes[len - 60] ^= 0x01;
    t_write_file(seg, bytes, len);
    free(bytes);
    eng_db_t *db2 = NULL;
    char *warnings = NULL;
    bq_error_clear(&err);
    cr_assert_not(eng_db_open(path, &manual_no_close, &db2, &warnings, &err));
    cr_assert_eq(err.code, ENG_ERR_CORRUPT);
    cr_assert(strstr(err.message, "seq 40"), "%s", err.message);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_crash_after_a_background_checkpoint_recovers)
{
    char *path = t_dbpath();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* the child: checkpoints every 50 ops, then dies without closing */
        eng_db_options_t o = {.checkpoint_ops = 50, .checkpoint_seconds = 1};
        eng_db_t *db;
        bq_error_t err;
        if (!eng_db_open(path, &o, &db, NULL, &err))
            _exit(10);
        for (int i = 0; i < 120; i++)
            if (put(db, "app", "a", i % 70, i, i > 10 ? 3 : -1) < 0)
                _exit(11);
        for (int tries = 0; t_db_status(db).checkpoint_seq < 120; tries++) {
            if (tries > 200)
                _exit(12);
            usleep(50 * 1000);
        }
        for (int i = 0; i < 7; i++)
            if (put(db, "app", "c", i, i, -1) < 0)
                _exit(13);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

    uint64_t newest;
    cr_assert_geq(count_ckpt_files(path, &newest), 1);
    cr_assert_geq(newest, 120);
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.committed, 128, "120 + 7 writes and two creates");
    cr_assert_eq(st.checkpoint_seq, (int64_t)newest);
    cr_assert_eq(st.replayed_ops, (uint64_t)(128 - (int64_t)newest));
    eng_coll_t *c = eng_coll_get(db, "app", "c", st.committed);
    cr_assert_not_null(c);
    uint64_t count, bytes;
    eng_coll_stats(c, st.committed, &count, &bytes);
    cr_assert_eq(count, 7);
    uint8_t a[32], b[32];
    state_hash(db, a);
    eng_db_close(db);
    int64_t rhead;
    full_replay_hash(path, b, &rhead);
    cr_assert_arr_eq(a, b, 32);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, background_checkpoint_by_time)
{
    char *path = t_dbpath();
    eng_db_options_t o = {.checkpoint_ops = -1, .checkpoint_seconds = 1,
                          .no_close_checkpoint = true};
    eng_db_t *db = t_db_open(path, &o, NULL);
    for (int i = 0; i < 5; i++)
        put(db, "app", "a", i, i, -1);
    int64_t head = eng_db_snapshot(db);
    int tries = 0;
    while (t_db_status(db).checkpoint_seq < head && tries++ < 60)
        usleep(100 * 1000);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, head);
    cr_assert_eq(st.checkpoints, 1);
    cr_assert_str_empty(st.checkpoint_error);
    /* no new ops: no new checkpoint */
    usleep(1300 * 1000);
    cr_assert_eq(t_db_status(db).checkpoints, 1);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* What checkpoint_done saw: one call per checkpoint written or failed. */
typedef struct done_log {
    int calls;
    int64_t seq;
    double ms;
    int failed;
} done_log_t;

static void done_record(void *arg, int64_t seq, double ms, const bq_error_t *err)
{
    done_log_t *l = arg;
    l->calls++;
    l->seq = seq;
    l->ms = ms;
    l->failed += err != NULL;
}

/* Opens path with manual checkpoints whose checkpoint_done records into *log. */
static eng_db_t *open_told(const char *path, done_log_t *log)
{
    eng_db_options_t o = manual_no_close;
    o.checkpoint_done = done_record;
    o.checkpoint_arg = log;
    return t_db_open(path, &o, NULL);
}

Test(eng_ckpt, checkpoint_done_is_told_of_each_checkpoint_with_its_seq)
{
    char *path = t_dbpath();
    done_log_t log = {0};
    eng_db_t *db = open_told(path, &log);
    bq_error_t err;
    put(db, "app", "a", 1, 1, -1);
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.seq, eng_db_snapshot(db));
    cr_assert_eq(log.seq, t_db_status(db).checkpoint_seq);
    cr_assert(log.ms >= 0);
    cr_assert(eng_db_checkpoint(db, &err));
    cr_assert_eq(log.calls, 1, "nothing new: no checkpoint, no call");
    put(db, "app", "a", 2, 2, -1);
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    cr_assert_eq(log.calls, 2);
    cr_assert_eq(log.seq, eng_db_snapshot(db));
    cr_assert_eq(log.failed, 0);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, checkpoint_done_is_told_of_a_failed_checkpoint)
{
    char *path = t_dbpath();
    done_log_t log = {0};
    eng_db_t *db = open_told(path, &log);
    /* a file where the checkpoint directory goes: the write cannot happen */
    char f[700];
    snprintf(f, sizeof f, "%s/checkpoint", path);
    rmdir(f); /* none written yet: empty if there */
    FILE *fp = fopen(f, "w");
    cr_assert_not_null(fp);
    fclose(fp);
    put(db, "app", "a", 1, 1, -1);
    bq_error_t err;
    cr_assert_not(eng_db_checkpoint(db, &err));
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.failed, 1);
    cr_assert_eq(log.seq, eng_db_snapshot(db));
    cr_assert_eq(t_db_status(db).checkpoint_failures, 1);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, only_the_newest_two_are_kept)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    bq_error_t err;
    for (int k = 0; k < 4; k++) {
        put(db, "app", "a", k, k, -1);
        cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    }
    cr_assert_eq(t_db_status(db).checkpoints, 4);
    cr_assert(eng_db_checkpoint(db, &err), "nothing new is not an error");
    cr_assert_eq(t_db_status(db).checkpoints, 4, "nothing new: no checkpoint");
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db);
    uint64_t newest;
    cr_assert_eq(count_ckpt_files(path, &newest), 2);
    cr_assert_eq(newest, (uint64_t)head);
    char f[700];
    struct stat sb;
    t_ckpt_path(path, head - 1, f, sizeof f);
    cr_assert_eq(stat(f, &sb), 0, "the previous one is kept");
    t_ckpt_path(path, head - 2, f, sizeof f);
    cr_assert_neq(stat(f, &sb), 0, "older ones are pruned");
    t_rm_rf(path);
    free(path);
}

Test(eng_ckpt, a_leftover_temp_file_is_ignored_and_removed)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    put(db, "app", "a", 1, 1, -1);
    eng_db_close(db); /* writes checkpoint/<seq>.ckpt and makes the directory */
    char f[700];
    snprintf(f, sizeof f, "%s/checkpoint/%020d.ckpt.tmp", path, 5);
    t_write_file(f, (const uint8_t *)"half a checkpoint", 17);
    db = t_db_open(path, &manual, NULL);
    cr_assert_eq(t_db_status(db).replayed_ops, 0);
    put(db, "app", "a", 2, 2, -1);
    eng_db_close(db); /* the next checkpoint cleans up */
    struct stat sb;
    cr_assert_neq(stat(f, &sb), 0);
    t_rm_rf(path);
    free(path);
}
