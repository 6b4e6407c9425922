/*
 * test_eng_db.c: the store above the log (engine/eng_db.c, eng_store.c, eng_seq.c):
 * writes through the committer, MVCC visibility at every snapshot, the optimistic
 * expectations, catalog ops and their history, replay after reopen, and provenance
 * validation (DESIGN.md sections 3, 5, 6 and 7).
 */
#include <pthread.h>

#include "eng_db.h"
#include "eng_store.h"
#include "eng_test_util.h"

/* One op of `kind` on test.c for {_id: id, v: v}; returns its seq (or -1). */
static int64_t write1(eng_db_t *db, eng_wop_kind_t kind, int id, int v, int64_t expect,
                      bq_error_t *err_out)
{
    eng_wop_t op;
    eng_wop_init(&op, kind, "test", "c");
    if (kind != ENG_WOP_DELETE) {
        BSON_APPEND_INT32(&op.doc, "_id", id);
        BSON_APPEND_INT32(&op.doc, "v", v);
    }
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = id;
    op.expect = expect;
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true, .all_or_none = expect != ENG_EXPECT_NONE};
    t_submit_wait(db, &in);
    int64_t seq = in.conflict ? -2 : op.seq;
    if (err_out)
        *err_out = op.err;
    eng_wop_cleanup(&op);
    return seq;
}

static int value_at(eng_db_t *db, int id, int64_t snap)
{
    eng_coll_t *c = eng_coll_get(db, "test", "c", snap);
    if (!c)
        return -100;
    bson_value_t key = {.value_type = BSON_TYPE_INT32, .value.v_int32 = id};
    eng_doc_t d;
    if (!eng_coll_find_id(c, snap, &key, &d))
        return -1;
    bson_t doc;
    bson_iter_t it;
    bson_init_static(&doc, d.data, d.len);
    cr_assert(bson_iter_init_find(&it, &doc, "v"));
    return bson_iter_int32(&it);
}

Test(eng_db, every_snapshot_sees_exactly_its_ops)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    cr_assert_eq(eng_db_snapshot(db), -1);
    int64_t s1 = write1(db, ENG_WOP_INSERT, 1, 10, ENG_EXPECT_ABSENT, NULL);
    cr_assert_eq(s1, 1, "seq 0 is the implicit create, the insert is seq 1");
    int64_t s2 = write1(db, ENG_WOP_UPDATE, 1, 20, s1, NULL);
    int64_t s3 = write1(db, ENG_WOP_DELETE, 1, 0, s2, NULL);
    int64_t s4 = write1(db, ENG_WOP_INSERT, 1, 40, ENG_EXPECT_ABSENT, NULL);
    cr_assert_eq(eng_db_snapshot(db), s4);
    cr_assert_eq(value_at(db, 1, 0), -1, "collection exists, document not yet");
    cr_assert_eq(value_at(db, 1, s1), 10);
    cr_assert_eq(value_at(db, 1, s2), 20);
    cr_assert_eq(value_at(db, 1, s3), -1, "deleted");
    cr_assert_eq(value_at(db, 1, s4), 40, "re-inserted after delete");
    cr_assert_eq(value_at(db, 1, -1), -100, "no collection before seq 0");
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db, stale_expectation_is_a_conflict_and_writes_nothing)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    int64_t s1 = write1(db, ENG_WOP_INSERT, 1, 1, ENG_EXPECT_ABSENT, NULL);
    cr_assert_geq(write1(db, ENG_WOP_UPDATE, 1, 2, s1, NULL), 0);
    int64_t head = eng_db_snapshot(db);
    cr_assert_eq(write1(db, ENG_WOP_UPDATE, 1, 3, s1, NULL), -2, "computed from an old version");
    cr_assert_eq(eng_db_snapshot(db), head, "nothing appended");
    cr_assert_eq(value_at(db, 1, head), 2);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db, duplicate_id_is_error_11000_and_equal_numbers_collide)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    bq_error_t err;
    cr_assert_geq(write1(db, ENG_WOP_INSERT, 7, 1, ENG_EXPECT_NONE, NULL), 0);
    cr_assert_eq(write1(db, ENG_WOP_INSERT, 7, 2, ENG_EXPECT_NONE, &err), -1);
    cr_assert_eq(err.code, BQ_ERR_DuplicateKey);
    /* 7.0 (double) is the same _id as 7 (int32) */
    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_INSERT, "test", "c");
    BSON_APPEND_DOUBLE(&op.doc, "_id", 7.0);
    op.id.value_type = BSON_TYPE_DOUBLE;
    op.id.value.v_double = 7.0;
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, BQ_ERR_DuplicateKey);
    eng_wop_cleanup(&op);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db, reopen_replays_to_the_same_state_and_history)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    int64_t s1 = write1(db, ENG_WOP_INSERT, 1, 10, ENG_EXPECT_ABSENT, NULL);
    int64_t s2 = write1(db, ENG_WOP_UPDATE, 1, 20, s1, NULL);
    for (int i = 2; i < 50; i++)
        write1(db, ENG_WOP_INSERT, i, i, ENG_EXPECT_ABSENT, NULL);
    int64_t head = eng_db_snapshot(db);
    uint32_t t1, i1;
    eng_db_cluster_time(db, head, &t1, &i1);
    eng_db_close(db);

    db = t_db_open(path, NULL, NULL);
    cr_assert_eq(eng_db_snapshot(db), head);
    uint32_t t2, i2;
    eng_db_cluster_time(db, head, &t2, &i2);
    cr_assert(t1 == t2 && i1 == i2, "cluster times replay");
    cr_assert_eq(value_at(db, 1, s1), 10);
    cr_assert_eq(value_at(db, 1, s2), 20);
    cr_assert_eq(value_at(db, 49, head), 49);
    /* writes go on from the replayed head */
    cr_assert_eq(write1(db, ENG_WOP_INSERT, 100, 1, ENG_EXPECT_ABSENT, NULL), head + 1);
    eng_verify_report_t rep;
    bq_error_t err;
    cr_assert(eng_db_verify(db, &rep, &err));
    cr_assert(rep.valid);
    cr_assert_eq(rep.records, (uint64_t)head + 2);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db, catalog_history_drop_and_rename)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    int64_t s1 = write1(db, ENG_WOP_INSERT, 1, 10, ENG_EXPECT_ABSENT, NULL);
    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_RENAME, "test", "c");
    snprintf(op.to_db, sizeof op.to_db, "test");
    snprintf(op.to_coll, sizeof op.to_coll, "d");
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    int64_t renamed = op.seq;
    eng_wop_cleanup(&op);
    int64_t head = eng_db_snapshot(db);
    cr_assert_null(eng_coll_get(db, "test", "c", head), "old name gone");
    cr_assert_not_null(eng_coll_get(db, "test", "c", s1), "old name readable in the past");
    eng_coll_t *d = eng_coll_get(db, "test", "d", head);
    cr_assert_not_null(d);
    bson_value_t key = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    eng_doc_t doc;
    cr_assert(eng_coll_find_id(d, head, &key, &doc), "documents follow the rename");
    cr_assert_null(eng_coll_get(db, "test", "d", renamed - 1));

    eng_wop_init(&op, ENG_WOP_DROP, "test", "d");
    eng_intent_t in2 = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in2);
    cr_assert_eq(op.err.code, 0);
    eng_wop_cleanup(&op);
    eng_coll_info_t *list;
    cr_assert_eq(eng_catalog_list(db, "test", eng_db_snapshot(db), &list), 0);
    free(list);
    cr_assert_eq(eng_catalog_list(db, "test", head, &list), 1);
    cr_assert_str_eq(list[0].name, "d");
    free(list);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db, provenance_is_validated_resolved_and_indexed)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    int64_t cause = write1(db, ENG_WOP_INSERT, 1, 1, ENG_EXPECT_ABSENT, NULL);
    int64_t snap = eng_db_snapshot(db);
    bson_t *doc = bson_new_from_json(
        (const uint8_t *)"{\"_id\": 2, \"_caused_by\": [{\"coll\": \"c\", \"_id\": 1}], "
                         "\"_evidence\": \"inference\", \"_confidence\": 1}",
        -1, NULL);
    bson_t out, prov;
    bool has;
    bq_error_t err;
    cr_assert(eng_prov_prepare(db, "test", snap, doc, &out, &prov, &has, &err), "%s",
              err.message);
    cr_assert(has);
    bson_iter_t it, arr;
    cr_assert(bson_iter_init_find(&it, &prov, "caused_by") && bson_iter_recurse(&it, &arr) &&
              bson_iter_next(&arr));
    cr_assert_eq(bson_iter_int64(&arr), cause, "the reference resolves to the cause's seq");
    cr_assert(bson_iter_init_find(&it, &out, "_confidence") && BSON_ITER_HOLDS_DOUBLE(&it));

    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_INSERT, "test", "c");
    bson_destroy(&op.doc);
    bson_destroy(&op.prov);
    bson_copy_to(&out, &op.doc);
    bson_copy_to(&prov, &op.prov);
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = 2;
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    int64_t effects[4];
    cr_assert_eq(eng_prov_effects(db, cause, eng_db_snapshot(db), effects, 4), 1);
    cr_assert_eq(effects[0], op.seq);
    cr_assert_eq(eng_prov_effects(db, cause, op.seq - 1, effects, 4), 0, "not before it");
    eng_wop_cleanup(&op);
    bson_destroy(&out);
    bson_destroy(&prov);
    bson_destroy(doc);

    static const char *const bad[] = {
        "{\"_evidence\": \"rumour\"}", "{\"_confidence\": 1.5}", "{\"_confidence\": \"x\"}",
        "{\"_caused_by\": [99999]}", "{\"_caused_by\": 5}", "{\"_caused_by\": [-1]}",
        "{\"_caused_by\": [{\"coll\": \"c\", \"_id\": 404}]}",
        "{\"_caused_by\": [{\"coll\": \"c\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bson_t *b = bson_new_from_json((const uint8_t *)bad[i], -1, NULL);
        bq_error_clear(&err);
        cr_assert_not(eng_prov_prepare(db, "test", eng_db_snapshot(db), b, &out, &prov, &has,
                                       &err),
                      "%s accepted", bad[i]);
        cr_assert_eq(err.code, BQ_ERR_BadValue, "%s", bad[i]);
        bson_destroy(&out);
        bson_destroy(&prov);
        bson_destroy(b);
    }
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* Concurrent writers through the committer: group commit keeps seqs gapless and every
 * acknowledged insert visible. */
typedef struct wctx {
    eng_db_t *db;
    int base;
} wctx_t;

static void *writer_main(void *arg)
{
    wctx_t *w = arg;
    for (int i = 0; i < 200; i++)
        cr_assert_geq(write1(w->db, ENG_WOP_INSERT, w->base + i, i, ENG_EXPECT_ABSENT, NULL), 0);
    return NULL;
}

Test(eng_db, concurrent_writers_share_batches)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    write1(db, ENG_WOP_INSERT, -1, 0, ENG_EXPECT_ABSENT, NULL); /* creates the collection */
    pthread_t th[8];
    wctx_t ctx[8];
    for (int i = 0; i < 8; i++) {
        ctx[i] = (wctx_t){db, (i + 1) * 1000};
        pthread_create(&th[i], NULL, writer_main, &ctx[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    int64_t head = eng_db_snapshot(db);
    cr_assert_eq(head, 1 + 8 * 200, "create + 1 + 1600 inserts, no gaps");
    eng_coll_t *c = eng_coll_get(db, "test", "c", head);
    uint64_t count, bytes;
    eng_coll_stats(c, head, &count, &bytes);
    cr_assert_eq(count, 1601);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* DESIGN.md section 3: an fsync error fails the whole batch, acknowledges nothing of it,
 * publishes nothing of it, and turns the database read-only until it is reopened; the
 * reopened log holds no half of the failed batch that a reader could have seen. */
Test(eng_db, failed_fsync_fails_the_batch_and_turns_read_only)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, NULL, NULL);
    int64_t s1 = write1(db, ENG_WOP_INSERT, 1, 1, ENG_EXPECT_ABSENT, NULL);
    cr_assert_geq(s1, 0);
    eng__log_inject_fault(db->log, ENG__FAULT_SYNC);

    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_INSERT, "test", "c");
    BSON_APPEND_INT32(&op.doc, "_id", 2);
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = 2;
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_neq(in.err.code, 0, "the writer is told its write failed");
    cr_assert(eng_db_read_only(db));
    cr_assert_eq(eng_db_snapshot(db), s1, "nothing of the failed batch is visible");
    cr_assert_eq(value_at(db, 2, eng_db_snapshot(db)), -1);
    eng_wop_cleanup(&op);

    /* later writes are refused without touching the log */
    bq_error_t err;
    cr_assert_eq(write1(db, ENG_WOP_INSERT, 3, 3, ENG_EXPECT_ABSENT, &err), -1);
    eng_db_close(db);

    db = t_db_open(path, NULL, NULL);
    cr_assert_not(eng_db_read_only(db), "a reopen clears read-only");
    cr_assert_eq(value_at(db, 1, eng_db_snapshot(db)), 1, "acknowledged data is kept");
    cr_assert_eq(value_at(db, 3, eng_db_snapshot(db)), -1);
    cr_assert_geq(write1(db, ENG_WOP_INSERT, 4, 4, ENG_EXPECT_ABSENT, NULL), 0);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}
