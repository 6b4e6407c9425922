/*
 * test_eng_op_read.c: reading an op back by its seq, what $trace needs from the engine
 * (DESIGN.md section 7): the log's seq -> position index (eng_log_locate and
 * eng_log_read_seq in engine/eng_log.c), the op at a snapshot with its ns, document
 * version and causes (eng_db_op_read in eng_db.c, eng_op_caused_by in eng_op.c), and the
 * seqs of a document's versions (eng_coll_doc_versions in eng_store.c), before and after
 * a reopen from a checkpoint, and while the committer keeps writing.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "eng_db.h"
#include "eng_test_util.h"

/* ---- the log's seq index ---- */

/* eng_log_locate(seq) succeeds and gives `want`, where the append put the record. */
static void assert_locates(eng_log_t *log, uint64_t seq, eng_pos_t want)
{
    bq_error_t err;
    bq_error_clear(&err);
    eng_pos_t got;
    cr_assert(eng_log_locate(log, seq, &got, &err), "seq %llu: %s", (unsigned long long)seq,
              err.message);
    cr_assert(got.seg == want.seg && got.off == want.off,
              "seq %llu: got %u/%u, appended at %u/%u", (unsigned long long)seq, got.seg,
              got.off, want.seg, want.off);
}

Test(eng_log_locate, every_seq_maps_to_its_position_across_segments)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    eng_pos_t pos[300];
    t_append(log, 300, 60, pos);
    bq_error_t err;
    bq_error_clear(&err);
    /* out of order on purpose: a late seq first, then the ones before it */
    for (uint64_t k = 0; k < 300; k++) {
        uint64_t i = (k * 7919) % 300;
        assert_locates(log, i, pos[i]);
    }
    cr_assert_gt(pos[299].seg, 2, "the test needs several segments");
    bson_t got, want;
    cr_assert(eng_log_read_seq(log, 123, &got, &err), "%s", err.message);
    t_op(123, 60, &want);
    cr_assert(bson_equal(&got, &want));
    bson_destroy(&got);
    bson_destroy(&want);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_locate, grows_with_the_log_and_sees_only_flushed_records)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    eng_pos_t pos[40];
    t_append(log, 20, 30, pos);
    bq_error_t err;
    bq_error_clear(&err);
    eng_pos_t got;
    cr_assert(eng_log_locate(log, 19, &got, &err), "%s", err.message);
    cr_assert_not(eng_log_locate(log, 20, &got, &err), "not written yet");
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    /* appended but not flushed: still invisible */
    bson_t b;
    t_op(20, 30, &b);
    cr_assert(eng_log_append(log, &b, NULL, &pos[20], &err), "%s", err.message);
    bson_destroy(&b);
    cr_assert_not(eng_log_locate(log, 20, &got, &err));
    cr_assert(eng_log_flush(log, &err), "%s", err.message);
    assert_locates(log, 20, pos[20]);
    /* more records, some in new segments: the index extends from where it stopped */
    t_append(log, 19, 300, pos + 21);
    for (uint64_t i = 21; i < 40; i++)
        assert_locates(log, i, pos[i]);
    bson_t body;
    cr_assert_not(eng_log_read_seq(log, 1000, &body, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    bson_destroy(&body);
    eng_log_close(log);

    /* a reopened log starts with no index and builds it again on demand */
    log = t_open(db, 4096);
    for (uint64_t i = 40; i-- > 0;)
        assert_locates(log, i, pos[i]);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_locate, a_record_with_the_wrong_seq_is_corruption_not_a_wrong_answer)
{
    /* segment 0 holds seqs 0..2 but its third record says seq 7. A full open would
     * refuse this log; an open from a checkpoint at seq 3 walks only the later segment,
     * so the index is the first to read segment 0 and must notice. */
    char *db = t_dbpath();
    bson_t *bodies[6];
    for (uint64_t i = 0; i < 6; i++) {
        bson_t tmp;
        t_op(i == 2 ? 7 : i, 10, &tmp);
        bodies[i] = bson_copy(&tmp);
        bson_destroy(&tmp);
    }
    t_write_raw(db, bodies, 6, 3, (const uint64_t[]){0, 3});
    /* replay from seq 4: the stored hash of seq 3 is what the chain gives, whatever the
     * bodies before it say */
    eng_log_options_t opts = {.segment_size = 4096, .verify_from_seq = 4};
    {
        uint8_t prev[ENG_HASH_SIZE] = {0};
        for (int i = 0; i < 4; i++)
            eng__hash(prev, bson_get_data(bodies[i]), bodies[i]->len, prev);
        memcpy(opts.verify_from_hash, prev, ENG_HASH_SIZE);
    }
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_open(db, &opts, &log, &err), "%s", err.message);
    eng_pos_t got;
    cr_assert(eng_log_locate(log, 1, &got, &err), "%s", err.message);
    cr_assert_not(eng_log_locate(log, 2, &got, &err));
    cr_assert_eq(err.code, ENG_ERR_CORRUPT, "%s", err.message);
    cr_assert(eng_log_locate(log, 4, &got, &err), "the other segment is fine: %s",
              err.message);
    eng_log_close(log);
    for (int i = 0; i < 6; i++)
        bson_destroy(bodies[i]);
    t_rm_rf(db);
    free(db);
}

/* ---- ops at a snapshot ---- */

/* Writes {_id: id, v: v} into test.<coll> (insert, update or delete) with the given
 * causes (n of them, as sealed seqs); returns the op's seq. */
static int64_t put(eng_db_t *db, eng_wop_kind_t kind, const char *coll, int id, int v,
                   const int64_t *causes, size_t n)
{
    eng_wop_t op;
    eng_wop_init(&op, kind, "test", coll);
    if (kind != ENG_WOP_DELETE) {
        BSON_APPEND_INT32(&op.doc, "_id", id);
        BSON_APPEND_INT32(&op.doc, "v", v);
    }
    if (n) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(&op.prov, "caused_by", &arr);
        for (size_t i = 0; i < n; i++) {
            char key[24];
            snprintf(key, sizeof key, "%zu", i);
            BSON_APPEND_INT64(&arr, key, causes[i]);
        }
        bson_append_array_end(&op.prov, &arr);
        BSON_APPEND_UTF8(&op.prov, "evidence", "inference");
    }
    op.id.value_type = BSON_TYPE_INT32;
    op.id.value.v_int32 = id;
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    int64_t seq = op.seq;
    eng_wop_cleanup(&op);
    return seq;
}

static const eng_db_options_t small_segments = {.segment_size = 4096, .checkpoint_ops = -1,
                                                .checkpoint_seconds = -1};

/* The op at seq as of snap: its kind, ns, the v of its document (-1 without one), and
 * its causes. */
typedef struct seen_op {
    char kind;
    char ns[64];
    int v;
    int64_t causes[8];
    size_t ncauses;
} seen_op_t;

static bool read_op(eng_db_t *db, int64_t snap, int64_t seq, seen_op_t *out, bq_error_t *err)
{
    bson_t body;
    eng_op_t op;
    memset(out, 0, sizeof *out);
    bool ok = eng_db_op_read(db, snap, seq, &body, &op, err);
    if (ok) {
        out->kind = (char)op.op;
        snprintf(out->ns, sizeof out->ns, "%.*s", (int)op.ns_len, op.ns);
        out->v = -1;
        bson_t o;
        bson_iter_t it;
        if (op.o && (op.op == ENG_OP_INSERT || op.op == ENG_OP_UPDATE) &&
            bson_init_static(&o, op.o, op.o_len) && bson_iter_init_find(&it, &o, "v"))
            out->v = bson_iter_int32(&it);
        out->ncauses = eng_op_caused_by(&op, out->causes, 8);
    }
    bson_destroy(&body);
    return ok;
}

static void check_history(eng_db_t *db, int64_t a, int64_t b, int64_t u, int64_t d)
{
    int64_t snap = eng_db_snapshot(db);
    bq_error_t err;
    bq_error_clear(&err);
    seen_op_t s;
    cr_assert(read_op(db, snap, 0, &s, &err), "%s", err.message);
    cr_assert(s.kind == 'c' && strcmp(s.ns, "test.$cmd") == 0 && s.v == -1,
              "seq 0 is the implicit create of test.notes");
    cr_assert(read_op(db, snap, a, &s, &err), "%s", err.message);
    cr_assert(s.kind == 'i' && strcmp(s.ns, "test.notes") == 0 && s.v == 1 &&
              s.ncauses == 0);
    cr_assert(read_op(db, snap, b, &s, &err), "%s", err.message);
    cr_assert(s.kind == 'i' && strcmp(s.ns, "test.facts") == 0 && s.v == 2);
    cr_assert(s.ncauses == 1 && s.causes[0] == a);
    cr_assert(read_op(db, snap, u, &s, &err), "%s", err.message);
    cr_assert(s.kind == 'u' && s.v == 3, "the version the update wrote, not the current one");
    cr_assert(s.ncauses == 2 && s.causes[0] == b && s.causes[1] == a,
              "the causes in their sealed order");
    cr_assert(read_op(db, snap, d, &s, &err), "%s", err.message);
    cr_assert(s.kind == 'd' && strcmp(s.ns, "test.notes") == 0 && s.v == -1 &&
              s.ncauses == 0, "a delete wrote no document");
    /* an op after the snapshot is invisible, as are seqs that never existed */
    cr_assert_not(read_op(db, u - 1, u, &s, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    cr_assert(read_op(db, u, u, &s, &err), "%s", err.message);
    cr_assert_not(read_op(db, snap, snap + 1, &s, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    cr_assert_not(read_op(db, snap, -1, &s, &err));
    cr_assert_eq(err.code, BQ_ERR_BadValue);
    cr_assert_not(read_op(db, snap + 5, snap, &s, &err), "a snapshot not yet committed");
}

Test(eng_db_op_read, ops_with_ns_document_and_causes_at_a_snapshot_and_after_reopen)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &small_segments, NULL);
    int64_t a = put(db, ENG_WOP_INSERT, "notes", 1, 1, NULL, 0);
    int64_t b = put(db, ENG_WOP_INSERT, "facts", 2, 2, (int64_t[]){a}, 1);
    int64_t u = put(db, ENG_WOP_UPDATE, "facts", 2, 3, (int64_t[]){b, a}, 2);
    int64_t d = put(db, ENG_WOP_DELETE, "notes", 1, 0, NULL, 0);
    check_history(db, a, b, u, d);
    eng_db_close(db); /* writes a checkpoint at close */

    /* from the checkpoint: the ops before it were never replayed, the log still has them */
    db = t_db_open(path, &small_segments, NULL);
    cr_assert_eq(t_db_status(db).replayed_ops, 0, "opened from the close checkpoint");
    check_history(db, a, b, u, d);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

Test(eng_db_op_read, doc_versions_are_the_visible_incarnations_oldest_first)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &small_segments, NULL);
    int64_t i1 = put(db, ENG_WOP_INSERT, "c", 1, 1, NULL, 0);
    int64_t u1 = put(db, ENG_WOP_UPDATE, "c", 1, 2, NULL, 0);
    put(db, ENG_WOP_INSERT, "c", 2, 1, NULL, 0);
    int64_t u2 = put(db, ENG_WOP_UPDATE, "c", 1, 3, NULL, 0);
    int64_t del = put(db, ENG_WOP_DELETE, "c", 1, 0, NULL, 0);
    int64_t i2 = put(db, ENG_WOP_INSERT, "c", 1, 4, NULL, 0);
    bson_value_t id = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    int64_t v[8];
    eng_coll_t *c = eng_coll_get(db, "test", "c", eng_db_snapshot(db));
    cr_assert_eq(eng_coll_doc_versions(c, u2, &id, v, 8), 3);
    cr_assert(v[0] == i1 && v[1] == u1 && v[2] == u2);
    cr_assert_eq(eng_coll_doc_versions(c, u1, &id, v, 8), 2, "as of the first update");
    cr_assert_eq(eng_coll_doc_versions(c, u2, &id, v, 1), 3, "the count past max");
    cr_assert_eq(v[0], i1, "max keeps the oldest");
    cr_assert_eq(eng_coll_doc_versions(c, del, &id, v, 8), 0, "deleted then");
    cr_assert_eq(eng_coll_doc_versions(c, i2, &id, v, 8), 1, "a re-insert is a new document");
    cr_assert_eq(v[0], i2);
    bson_value_t none = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 404};
    cr_assert_eq(eng_coll_doc_versions(c, i2, &none, v, 8), 0);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}

/* Readers look ops up while the committer appends and starts new segments. */
typedef struct rctx {
    eng_db_t *db;
    _Atomic bool stop;
    uint64_t reads;
    bool failed;
    char why[700];
} rctx_t;

static void *reader_main(void *arg)
{
    rctx_t *r = arg;
    uint64_t x = 88172645463325252ull;
    while (!atomic_load(&r->stop)) {
        int64_t snap = eng_db_snapshot(r->db);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t seq = (int64_t)(x % (uint64_t)(snap + 1));
        seen_op_t s;
        bq_error_t err;
        bq_error_clear(&err);
        if (!read_op(r->db, snap, seq, &s, &err) ||
            (seq > 0 && (s.kind != 'i' || s.v != (int)seq ||
                         s.ncauses != (seq > 1 ? 1u : 0u)))) {
            r->failed = true;
            snprintf(r->why, sizeof r->why, "seq %lld at %lld: %s", (long long)seq,
                     (long long)snap, err.message);
            return NULL;
        }
        r->reads++;
    }
    return NULL;
}

Test(eng_db_op_read, readers_run_beside_the_committer)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &small_segments, NULL);
    put(db, ENG_WOP_INSERT, "c", 1, 1, NULL, 0); /* seq 0 the create, seq 1 this */
    rctx_t r[2] = {{.db = db}, {.db = db}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &r[i]), 0);
    for (int i = 2; i < 400; i++)
        cr_assert_eq(put(db, ENG_WOP_INSERT, "c", i, i, (int64_t[]){i - 1}, 1), i);
    for (int i = 0; i < 2; i++) {
        atomic_store(&r[i].stop, true);
        pthread_join(th[i], NULL);
        cr_assert_not(r[i].failed, "%s", r[i].why);
        cr_assert_gt(r[i].reads, 0);
    }
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}
