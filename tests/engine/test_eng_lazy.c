/*
 * test_eng_lazy.c: old document versions read back from the log on demand (DESIGN.md
 * sections 5 and 6; engine/eng_store.c invariant 6, the checkpoint format 3 of
 * engine/eng_ckpt.c, eng__log_read_checked in eng_log.c). After an open from a
 * checkpoint the versions older than the newest of each document are not in memory:
 * reads as of every earlier seq must still give what a full replay gives, several
 * readers may load the same version at once, a log record changed on disk is an error of
 * the read (and verify still reports it), the checkpoint of a history-heavy data set is
 * much smaller than one holding every body, and a format 2 checkpoint still loads.
 */
#include <pthread.h>
#include <sodium.h>

#include "eng_db.h"
#include "eng_store.h"
#include "eng_test_util.h"

/* ---- writing through the committer ---- */

/* One batch: {_id: i, v: v, pad: <pad bytes>} written (upserted as a full post-image)
 * into test.<coll> for every i in [0, ndocs); deleted instead when del_id == i. */
static void put_round(eng_db_t *db, const char *coll, int ndocs, int v, size_t pad,
                      int del_id)
{
    eng_wop_t *ops = calloc((size_t)ndocs, sizeof *ops);
    char *s = malloc(pad + 1);
    memset(s, 'a' + v % 26, pad);
    s[pad] = '\0';
    for (int i = 0; i < ndocs; i++) {
        eng_wop_t *op = &ops[i];
        eng_wop_init(op, i == del_id ? ENG_WOP_DELETE : ENG_WOP_UPDATE, "test", coll);
        if (i != del_id) {
            BSON_APPEND_INT32(&op->doc, "_id", i);
            BSON_APPEND_INT32(&op->doc, "v", v);
            BSON_APPEND_UTF8(&op->doc, "pad", s);
        }
        op->id.value_type = BSON_TYPE_INT32;
        op->id.value.v_int32 = i;
    }
    eng_intent_t in = {.ops = ops, .nops = (size_t)ndocs, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(in.err.code, 0, "%s", in.err.message);
    for (int i = 0; i < ndocs; i++) {
        cr_assert(ops[i].err.code == 0 || i == del_id, "%s", ops[i].err.message);
        eng_wop_cleanup(&ops[i]);
    }
    free(ops);
    free(s);
}

static void create_index(eng_db_t *db, const char *coll, const char *field)
{
    eng_wop_t op;
    eng_wop_init(&op, ENG_WOP_CREATE_INDEXES, "test", coll);
    bson_t arr, spec, key;
    BSON_APPEND_ARRAY_BEGIN(&op.doc, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &spec);
    BSON_APPEND_INT32(&spec, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    BSON_APPEND_INT32(&key, field, 1);
    bson_append_document_end(&spec, &key);
    char name[64];
    snprintf(name, sizeof name, "%s_1", field);
    BSON_APPEND_UTF8(&spec, "name", name);
    bson_append_document_end(&arr, &spec);
    bson_append_array_end(&op.doc, &arr);
    eng_intent_t in = {.ops = &op, .nops = 1, .ordered = true};
    t_submit_wait(db, &in);
    cr_assert_eq(op.err.code, 0, "%s", op.err.message);
    eng_wop_cleanup(&op);
}

/* ---- opening ---- */

/* Small segments: many records open a segment, whose link is checked against the end of
 * the previous segment when the record is read back. */
#define SEG_SIZE 4096
static const eng_db_options_t manual = {
    .segment_size = SEG_SIZE, .checkpoint_ops = -1, .checkpoint_seconds = -1};
static const eng_db_options_t manual_no_close = {.segment_size = SEG_SIZE,
                                                 .checkpoint_ops = -1,
                                                 .checkpoint_seconds = -1,
                                                 .no_close_checkpoint = true};
static const eng_db_options_t full_replay = {.segment_size = SEG_SIZE,
                                             .checkpoint_ops = -1,
                                             .checkpoint_seconds = -1,
                                             .no_close_checkpoint = true,
                                             .ignore_checkpoints = true};

/* Versions of test.<coll> not in memory (not loaded, not deletions), and all of them. */
static void count_versions(eng_db_t *db, const char *coll, uint64_t *not_loaded,
                           uint64_t *total)
{
    *not_loaded = *total = 0;
    eng_coll_t *c = eng_coll_get(db, "test", coll, eng_db_snapshot(db));
    cr_assert(c);
    uint64_t n = eng__vec_len(&c->docs->slots);
    for (uint64_t i = 0; i < n; i++) {
        const eng__slot_t *s = (const eng__slot_t *)(uintptr_t)eng__vec_get(&c->docs->slots, i);
        for (const eng__version_t *v = atomic_load(&s->head); v; v = v->older) {
            (*total)++;
            if (!v->deleted && !atomic_load(&v->data))
                (*not_loaded)++;
        }
    }
}

/* ---- what every snapshot shows ---- */

static void h_i64(crypto_generichash_state *h, int64_t v)
{
    crypto_generichash_update(h, (const uint8_t *)&v, sizeof v);
}

/* Hashes, for every snapshot from -1 to the head, every document of test.<coll> visible
 * then (bytes and seq) in natural order, backwards, by _id (checked reads, which must
 * not fail), through the index on `v` when there is one, and the collection's stats. */
static void snapshots_hash(eng_db_t *db, const char *coll, int ndocs, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    int64_t head = eng_db_snapshot(db);
    for (int64_t snap = -1; snap <= head; snap++) {
        eng_coll_t *c = eng_coll_get(db, "test", coll, snap);
        h_i64(&h, c != NULL);
        if (!c)
            continue;
        for (int rev = 0; rev < 2; rev++) {
            eng_scan_t scan;
            eng_doc_t d;
            eng_scan_init(&scan, c, snap, rev);
            while (eng_scan_next(&scan, &d)) {
                crypto_generichash_update(&h, d.data, d.len);
                h_i64(&h, d.seq);
            }
            cr_assert_null(eng_scan_error(&scan), "scan at %lld: %s", (long long)snap,
                           eng_scan_error(&scan)->message);
        }
        for (int id = 0; id < ndocs; id++) {
            bson_value_t idv = {.value_type = BSON_TYPE_INT32, .value.v_int32 = id};
            eng_doc_t d;
            bool found;
            bq_error_t err;
            bq_error_clear(&err);
            cr_assert(eng_coll_find_id_checked(c, snap, &idv, &d, &found, &err), "%s",
                      err.message);
            h_i64(&h, found);
            if (found) {
                crypto_generichash_update(&h, d.data, d.len);
                h_i64(&h, d.seq);
            }
        }
        uint64_t count, bytes;
        eng_coll_stats(c, snap, &count, &bytes);
        h_i64(&h, (int64_t)count);
        h_i64(&h, (int64_t)bytes);
    }
    crypto_generichash_final(&h, out, 32);
}

/* Opens path by a full replay (every op replayed) and checks that its snapshots_hash of
 * test.<coll> is `want`, what the same data gave when opened from a checkpoint. */
static void assert_full_replay_agrees(const char *path, const char *coll, int ndocs,
                                      const uint8_t want[32])
{
    uint8_t full[32];
    eng_db_t *db = t_db_open(path, &full_replay, NULL);
    cr_assert_eq(t_db_status(db).replayed_ops, (uint64_t)eng_db_snapshot(db) + 1);
    snapshots_hash(db, coll, ndocs, full);
    eng_db_close(db);
    cr_assert_arr_eq(want, full, 32, "a checkpoint open and a full replay disagree");
}

/* The documents an equality lookup on v finds at snap (ids as a bitmask), or -1 when no
 * index answers; a scan gives the same set whenever the index answers. */
static int64_t lookup_v(eng_db_t *db, const char *coll, int64_t snap, int v)
{
    eng_coll_t *c = eng_coll_get(db, "test", coll, snap);
    bson_value_t val = {.value_type = BSON_TYPE_INT32, .value.v_int32 = v};
    eng_doc_t *docs;
    size_t n;
    if (!c || !eng_coll_index_lookup(c, snap, "v", &val, 1, &docs, &n, NULL))
        return -1;
    int64_t mask = 0;
    for (size_t i = 0; i < n; i++) {
        bson_t b;
        bson_iter_t it;
        cr_assert(bson_init_static(&b, docs[i].data, docs[i].len));
        cr_assert(bson_iter_init_find(&it, &b, "_id"));
        mask |= (int64_t)1 << bson_iter_int32(&it);
    }
    free(docs);
    int64_t scanned = 0;
    eng_scan_t scan;
    eng_doc_t d;
    eng_scan_init(&scan, c, snap, false);
    while (eng_scan_next(&scan, &d)) {
        bson_t b;
        bson_iter_t it, iv;
        cr_assert(bson_init_static(&b, d.data, d.len));
        cr_assert(bson_iter_init_find(&it, &b, "_id") && bson_iter_init_find(&iv, &b, "v"));
        if (bson_iter_int32(&iv) == v)
            scanned |= (int64_t)1 << bson_iter_int32(&it);
    }
    cr_assert_eq(mask, scanned, "index and scan differ at %lld for v = %d", (long long)snap,
                 v);
    return mask;
}

/* A history of many updates of few documents, a delete and a re-insert, an index. */
static void write_history(eng_db_t *db, int ndocs, int rounds, size_t pad)
{
    for (int r = 0; r < rounds; r++) {
        if (r == rounds / 2)
            create_index(db, "h", "v");
        put_round(db, "h", ndocs, r, pad, r == rounds / 3 ? 1 : -1);
    }
}

/* ---- tests ---- */

Test(eng_lazy, reads_as_of_every_seq_after_a_checkpoint_match_a_full_replay)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    write_history(db, 8, 30, 100);
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db); /* writes the checkpoint */

    db = t_db_open(path, &manual, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, head);
    cr_assert_eq(st.replayed_ops, 0);
    uint64_t not_loaded, total;
    count_versions(db, "h", &not_loaded, &total);
    cr_assert_gt(not_loaded, 200, "old versions stay on disk (%llu of %llu)",
                 (unsigned long long)not_loaded, (unsigned long long)total);
    /* lookups: from where the postings cover on (the last old version ended at the head),
     * the same set as a scan; before it the caller scans */
    cr_assert_eq(lookup_v(db, "h", head, 29), 0xff);
    cr_assert_eq(lookup_v(db, "h", head - 1, 28), -1, "before the postings' coverage");
    uint8_t lazy[32], again[32];
    snapshots_hash(db, "h", 8, lazy);
    count_versions(db, "h", &not_loaded, &total);
    cr_assert_eq(not_loaded, 0, "every version was read");
    snapshots_hash(db, "h", 8, again);
    cr_assert_arr_eq(lazy, again, 32);
    eng_db_close(db);

    assert_full_replay_agrees(path, "h", 8, lazy);

    /* a checkpoint of a store loaded from one: old versions stay metadata, and the one
     * written at an older snapshot reads its newest-at-that-snapshot bodies back */
    db = t_db_open(path, &manual_no_close, NULL);
    put_round(db, "h", 8, 1000, 100, -1);
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng__ckpt_write_at(db, head - 50, &err), "%s", err.message);
    eng_db_close(db);
    char ck[600];
    t_ckpt_path(path, head, ck, sizeof ck);
    cr_assert_eq(unlink(ck), 0); /* so the open uses the older one */
    db = t_db_open(path, &manual, NULL);
    cr_assert_eq(t_db_status(db).checkpoint_seq, head - 50);
    snapshots_hash(db, "h", 8, lazy);
    eng_db_close(db);
    assert_full_replay_agrees(path, "h", 8, lazy);
    t_rm_rf(path);
    free(path);
}

static size_t file_size(const char *p)
{
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0, "%s: %s", p, strerror(errno));
    return (size_t)sb.st_size;
}

Test(eng_lazy, the_checkpoint_of_a_history_heavy_data_set_holds_only_the_newest_bodies)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    const int ndocs = 20, rounds = 50;
    const size_t pad = 400;
    for (int r = 0; r < rounds; r++)
        put_round(db, "h", ndocs, r, pad, -1);
    int64_t head = eng_db_snapshot(db);
    bq_error_t err;
    bq_error_clear(&err);
    /* the same data in format 2 (every body) one seq earlier, then format 3 at the head */
    cr_assert(eng__ckpt_write_format(db, head - 1, 2, &err), "%s", err.message);
    cr_assert(eng_db_checkpoint(db, &err), "%s", err.message);
    eng_db_close(db);
    char p2[600], p3[600];
    t_ckpt_path(path, head - 1, p2, sizeof p2);
    t_ckpt_path(path, head, p3, sizeof p3);
    size_t s2 = file_size(p2), s3 = file_size(p3);
    size_t body = pad + 40, versions = (size_t)(ndocs * rounds);
    cr_assert_gt(s2, versions * pad, "format 2 holds every body (%zu bytes)", s2);
    /* format 3: the newest bodies, 20 bytes of metadata per version, the ct table */
    cr_assert_lt(s3, (size_t)ndocs * body + versions * 20 + (size_t)(head + 1) * 8 + 4096,
                 "format 3 is %zu bytes", s3);
    cr_assert_lt(s3 * 5, s2, "format 3 (%zu bytes) vs format 2 (%zu bytes)", s3, s2);
    t_rm_rf(path);
    free(path);
}

Test(eng_lazy, a_format_2_checkpoint_still_loads_with_every_version_in_memory)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual_no_close, NULL);
    write_history(db, 6, 12, 50);
    int64_t head = eng_db_snapshot(db);
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng__ckpt_write_format(db, head, 2, &err), "%s", err.message);
    eng_db_close(db);

    db = t_db_open(path, &manual_no_close, NULL);
    eng_db_status_t st = t_db_status(db);
    cr_assert_eq(st.checkpoint_seq, head, "the format 2 file was used");
    cr_assert_eq(st.replayed_ops, 0);
    uint64_t not_loaded, total;
    count_versions(db, "h", &not_loaded, &total);
    cr_assert_eq(not_loaded, 0);
    cr_assert_gt(total, 60);
    uint8_t a[32];
    snapshots_hash(db, "h", 6, a);
    eng_db_close(db);
    assert_full_replay_agrees(path, "h", 6, a);
    t_rm_rf(path);
    free(path);
}

/* ---- concurrent loads ---- */

#define READERS 8
#define HOT_DOCS 4
#define HOT_ROUNDS 40

typedef struct reader {
    eng_db_t *db;
    pthread_barrier_t *start;
    int64_t first;                    /* seq of the first round's first op */
    const uint8_t *seen[HOT_ROUNDS][HOT_DOCS];
    int bad;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    pthread_barrier_wait(r->start);
    /* every reader walks the same old versions in the same order: they race to load */
    for (int round = 0; round < HOT_ROUNDS; round++) {
        int64_t snap = r->first + (int64_t)round * HOT_DOCS + HOT_DOCS - 1;
        eng_coll_t *c = eng_coll_get(r->db, "test", "h", snap);
        for (int id = 0; id < HOT_DOCS; id++) {
            bson_value_t idv = {.value_type = BSON_TYPE_INT32, .value.v_int32 = id};
            eng_doc_t d;
            bool found = false;
            bq_error_t err;
            bson_t b;
            bson_iter_t it;
            if (!c || !eng_coll_find_id_checked(c, snap, &idv, &d, &found, &err) || !found ||
                !bson_init_static(&b, d.data, d.len) || !bson_iter_init_find(&it, &b, "v") ||
                bson_iter_int32(&it) != round) {
                r->bad++;
                continue;
            }
            r->seen[round][id] = d.data;
        }
    }
    return NULL;
}

Test(eng_lazy, concurrent_readers_load_the_same_old_version_once)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    put_round(db, "h", HOT_DOCS, 0, 300, -1);
    int64_t first = eng_db_snapshot(db) - HOT_DOCS + 1;
    for (int r = 1; r < HOT_ROUNDS; r++)
        put_round(db, "h", HOT_DOCS, r, 300, -1);
    eng_db_close(db);

    for (int pass = 0; pass < 3; pass++) {
        db = t_db_open(path, &manual_no_close, NULL);
        uint64_t not_loaded, total;
        count_versions(db, "h", &not_loaded, &total);
        cr_assert_eq(not_loaded, (uint64_t)(HOT_ROUNDS - 1) * HOT_DOCS);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, READERS);
        reader_t *rs = calloc(READERS, sizeof *rs);
        pthread_t th[READERS];
        for (int i = 0; i < READERS; i++) {
            rs[i] = (reader_t){.db = db, .start = &start, .first = first};
            cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &rs[i]), 0);
        }
        for (int i = 0; i < READERS; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < READERS; i++) {
            cr_assert_eq(rs[i].bad, 0, "reader %d saw a wrong or missing version", i);
            for (int round = 0; round < HOT_ROUNDS; round++)
                for (int id = 0; id < HOT_DOCS; id++)
                    cr_assert_eq(rs[i].seen[round][id], rs[0].seen[round][id],
                                 "one published copy per version");
        }
        count_versions(db, "h", &not_loaded, &total);
        cr_assert_eq(not_loaded, 0);
        free(rs);
        pthread_barrier_destroy(&start);
        eng_db_close(db);
    }
    t_rm_rf(path);
    free(path);
}

/* ---- a log record changed on disk ---- */

Test(eng_lazy, a_corrupted_log_record_of_an_old_version_fails_the_read_that_needs_it)
{
    char *path = t_dbpath();
    eng_db_t *db = t_db_open(path, &manual, NULL);
    put_round(db, "h", 3, 0, 64, -1);
    int64_t victim = eng_db_snapshot(db) - 1; /* the insert of _id 1 */
    for (int r = 1; r < 5; r++)
        put_round(db, "h", 3, r, 64, -1);
    int64_t head = eng_db_snapshot(db);
    eng_db_close(db);

    /* flip one byte inside the padding string of the victim's document: still BSON, still
     * the same length, a different document */
    eng_log_t *log = t_open(path, SEG_SIZE);
    eng_pos_t pos;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_locate(log, (uint64_t)victim, &pos, &err), "%s", err.message);
    bson_t body;
    cr_assert(eng_log_read(log, pos, &body, NULL, &err), "%s", err.message);
    uint32_t len = body.len;
    bson_destroy(&body);
    eng_log_close(log);
    char seg[600];
    snprintf(seg, sizeof seg, "%s/log/%020u.nlog", path, 0u);
    cr_assert_eq(pos.seg, 0);
    int fd = open(seg, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    off_t at = (off_t)pos.off + 4 + len - 10;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    cr_assert_eq(b, 'a', "the byte is in the padding");
    b = 'z';
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);

    /* the open replays nothing before the checkpoint, so it does not see it */
    db = t_db_open(path, &manual_no_close, NULL);
    cr_assert_eq(t_db_status(db).checkpoint_seq, head);
    eng_coll_t *c = eng_coll_get(db, "test", "h", victim);
    cr_assert(c);
    bson_value_t id1 = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    eng_doc_t d;
    bool found = true;
    bq_error_clear(&err);
    cr_assert_not(eng_coll_find_id_checked(c, victim, &id1, &d, &found, &err));
    cr_assert_eq(err.code, ENG_ERR_CORRUPT, "%d %s", err.code, err.message);
    cr_assert(strstr(err.message, "hash"), "%s", err.message);
    cr_assert_not(eng_coll_find_id(c, victim, &id1, &d));
    /* a scan stops at it with the error, having given the documents before it */
    eng_scan_t scan;
    eng_scan_init(&scan, c, victim, false);
    cr_assert(eng_scan_next(&scan, &d), "_id 0 reads");
    cr_assert_not(eng_scan_next(&scan, &d));
    cr_assert_not_null(eng_scan_error(&scan));
    cr_assert_eq(eng_scan_error(&scan)->code, ENG_ERR_CORRUPT);
    cr_assert_not(eng_scan_next(&scan, &d), "it stays at the failed document");
    cr_assert_not_null(eng_scan_error(&scan));
    /* other versions of the same document, and the other documents, still read */
    cr_assert(eng_coll_find_id_checked(c, head, &id1, &d, &found, &err) && found, "%s",
              err.message);
    bson_value_t id2 = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 2};
    cr_assert(eng_coll_find_id_checked(c, victim + 1, &id2, &d, &found, &err) && found, "%s",
              err.message);
    /* stats need no body */
    uint64_t count, bytes;
    eng_coll_stats(c, victim, &count, &bytes);
    cr_assert_eq(count, 2);
    /* verify reports the record */
    eng_verify_report_t rep;
    cr_assert(eng_db_verify(db, &rep, &err), "%s", err.message);
    cr_assert_not(rep.valid);
    cr_assert_eq(rep.bad_seq, (uint64_t)victim);
    eng_db_close(db);
    t_rm_rf(path);
    free(path);
}
