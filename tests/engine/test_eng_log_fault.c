/*
 * test_eng_log_fault.c: crash and fault tests of engine/eng_log.c and eng_verify.c: a log
 * cut at every byte offset and reopened, one byte flipped anywhere in a record, gaps in
 * seq, damaged segments, and injected write and fsync failures.
 */
#include "eng_test_util.h"

typedef struct {
    char *db;
    char seg[1024];      /* path of the segment under test */
    uint8_t *orig;       /* its bytes as written */
    size_t len;
    eng_pos_t pos[400];
    uint32_t rec_len[400];
    uint64_t n;
} fx_t;

/* A log of n records of about `pad` bytes in segments of seg_size; fx.seg is the last. */
static void fx_make(fx_t *fx, uint64_t n, size_t pad, uint64_t seg_size)
{
    memset(fx, 0, sizeof *fx);
    fx->db = t_dbpath();
    fx->n = n;
    eng_log_t *log = t_open(fx->db, seg_size);
    t_append(log, n, pad, fx->pos);
    eng_log_close(log);
    for (uint64_t i = 0; i < n; i++) {
        bson_t b;
        t_op(i, pad, &b);
        fx->rec_len[i] = b.len + 36;
        bson_destroy(&b);
    }
    uint64_t first = 0;
    for (uint64_t i = 0; i < n; i++)
        if (fx->pos[i].seg == fx->pos[n - 1].seg) {
            first = i;
            break;
        }
    t_seg_path(fx->db, first, fx->seg, sizeof fx->seg);
    fx->orig = t_read_file(fx->seg, &fx->len);
}

static void fx_free(fx_t *fx)
{
    t_rm_rf(fx->db);
    free(fx->db);
    free(fx->orig);
}

/* Records wholly below `cut` in the last segment, counting earlier segments. */
static uint64_t whole_before(const fx_t *fx, size_t cut)
{
    uint32_t last = fx->pos[fx->n - 1].seg;
    uint64_t whole = 0;
    for (uint64_t i = 0; i < fx->n; i++)
        if (fx->pos[i].seg < last || fx->pos[i].off + fx->rec_len[i] <= cut)
            whole = i + 1;
    return whole;
}

static bool at_boundary(const fx_t *fx, size_t cut)
{
    uint32_t last = fx->pos[fx->n - 1].seg;
    if (cut == 16 || cut == fx->len)
        return true;
    for (uint64_t i = 0; i < fx->n; i++)
        if (fx->pos[i].seg == last && fx->pos[i].off + fx->rec_len[i] == cut)
            return true;
    return false;
}

static void check_cut(fx_t *fx, size_t cut)
{
    t_write_file(fx->seg, fx->orig, cut);
    uint64_t whole = whole_before(fx, cut);

    /* verify, before any open, sees the torn tail but a valid chain */
    eng_verify_report_t r = t_verify(fx->db);
    cr_assert(r.valid, "cut %zu: %s", cut, r.detail);
    cr_assert_eq(r.records, whole, "cut %zu", cut);

    /* a large segment size, so the appends below never start a segment of their own */
    eng_log_options_t opts = {.segment_size = ENG_LOG_SEGMENT_SIZE_MAX};
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_log_open(fx->db, &opts, &log, &err), "cut %zu: %s", cut, err.message);
    uint64_t next;
    eng_log_head(log, &next, NULL);
    cr_assert_eq(next, whole, "cut %zu: next %llu, want %llu", cut, (unsigned long long)next,
                 (unsigned long long)whole);
    const char *w = eng_log_warnings(log);
    if (at_boundary(fx, cut)) {
        cr_assert_str_eq(w, "", "cut %zu", cut);
    } else {
        cr_assert(strstr(w, "torn") || strstr(w, "header"), "cut %zu: warning '%s'", cut, w);
        char bytes[64];
        snprintf(bytes, sizeof bytes, "%zu bytes", cut < 16 ? cut : cut - (size_t)(
            fx->pos[whole].off));
        cr_assert(strstr(w, bytes), "cut %zu: warning '%s' lacks '%s'", cut, w, bytes);
    }
    /* appends carry on from the last whole record */
    t_append(log, 2, 40, NULL);
    eng_log_close(log);
    r = t_verify(fx->db);
    cr_assert(r.valid, "cut %zu after append: %s", cut, r.detail);
    cr_assert_eq(r.records, whole + 2);
    cr_assert_eq(r.torn_bytes, 0);
}

Test(eng_log_fault, cut_at_every_byte_of_the_last_records)
{
    fx_t fx;
    fx_make(&fx, 12, 40, 0);
    for (size_t cut = fx.pos[fx.n - 3].off; cut <= fx.len; cut++)
        check_cut(&fx, cut);
    fx_free(&fx);
}

Test(eng_log_fault, cut_at_every_byte_of_a_new_last_segment)
{
    fx_t fx;
    fx_make(&fx, 60, 60, 4096);
    cr_assert_gt(fx.pos[fx.n - 1].seg, 0);
    for (size_t cut = 0; cut <= fx.len; cut++)
        check_cut(&fx, cut);
    fx_free(&fx);
}

Test(eng_log_fault, flipping_any_byte_of_a_middle_record_is_caught_at_its_seq)
{
    fx_t fx;
    fx_make(&fx, 30, 40, 0);
    const uint64_t bad = 15;
    size_t start = fx.pos[bad].off, end = start + fx.rec_len[bad];
    for (size_t b = start; b < end; b++) {
        fx.orig[b] ^= 0xff;
        t_write_file(fx.seg, fx.orig, fx.len);
        fx.orig[b] ^= 0xff;

        eng_log_t *log = NULL;
        bq_error_t err;
        bq_error_clear(&err);
        cr_assert_not(eng_log_open(fx.db, NULL, &log, &err), "byte %zu accepted", b);
        cr_assert_eq(err.code, ENG_ERR_CORRUPT);
        char want[128];
        snprintf(want, sizeof want, "seq %llu (", (unsigned long long)bad);
        cr_assert(strstr(err.message, want), "byte %zu: %s", b, err.message);
        snprintf(want, sizeof want, "00000000000000000000.nlog, byte offset %zu", start);
        cr_assert(strstr(err.message, want), "byte %zu: %s", b, err.message);

        eng_verify_report_t r = t_verify(fx.db);
        cr_assert_not(r.valid, "byte %zu", b);
        cr_assert_eq(r.bad_seq, bad, "byte %zu: bad seq %llu", b,
                     (unsigned long long)r.bad_seq);
        cr_assert_eq(r.bad_offset, start);
        cr_assert_eq(r.records, bad);
        if (b >= end - 32)
            cr_assert_eq(r.reason, ENG_VERIFY_BROKEN_LINK, "byte %zu: %s", b,
                         eng_verify_reason_name(r.reason));
        else if (b >= start + 8 && b < end - 33)
            cr_assert_eq(r.reason, ENG_VERIFY_HASH_MISMATCH, "byte %zu: %s", b,
                         eng_verify_reason_name(r.reason));
        else
            cr_assert_eq(r.reason, ENG_VERIFY_BAD_LENGTH, "byte %zu: %s", b,
                         eng_verify_reason_name(r.reason));
    }
    fx_free(&fx);
}

Test(eng_log_fault, a_changed_length_in_the_last_record_is_not_taken_for_a_torn_tail)
{
    fx_t fx;
    fx_make(&fx, 10, 40, 0);
    size_t off = fx.pos[fx.n - 1].off;
    fx.orig[off + 1] ^= 0x01;   /* len grows by 256: runs past the end of the file */
    t_write_file(fx.seg, fx.orig, fx.len);
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_log_open(fx.db, NULL, &log, &err));
    cr_assert(strstr(err.message, "bad length"), "%s", err.message);
    eng_verify_report_t r = t_verify(fx.db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.bad_seq, fx.n - 1);
    fx_free(&fx);
}

Test(eng_log_fault, tampering_in_an_earlier_segment_is_caught)
{
    fx_t fx;
    fx_make(&fx, 80, 60, 4096);
    /* the first record of the second segment */
    uint64_t bad = 1;
    while (fx.pos[bad].seg == 0)
        bad++;
    char path[1024];
    t_seg_path(fx.db, bad, path, sizeof path);
    size_t len;
    uint8_t *d = t_read_file(path, &len);
    d[16 + 30] ^= 0x20;
    t_write_file(path, d, len);
    free(d);
    eng_verify_report_t r = t_verify(fx.db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.bad_seq, bad);
    cr_assert_eq(r.bad_offset, 16);
    cr_assert_eq(r.reason, ENG_VERIFY_HASH_MISMATCH);
    eng_log_t *log = NULL;
    bq_error_t err;
    cr_assert_not(eng_log_open(fx.db, NULL, &log, &err));
    fx_free(&fx);
}

static void raw_log(const char *db, const uint64_t *seqs, size_t n, size_t per_seg,
                    const uint64_t *names)
{
    bson_t *bodies[64];
    for (size_t i = 0; i < n; i++) {
        bson_t tmp;
        t_op(seqs[i], 20, &tmp);
        bodies[i] = bson_copy(&tmp);
        bson_destroy(&tmp);
    }
    t_write_raw(db, bodies, n, per_seg, names);
    for (size_t i = 0; i < n; i++)
        bson_destroy(bodies[i]);
}

Test(eng_log_fault, a_gap_in_seq_is_refused)
{
    char *db = t_dbpath();
    uint64_t seqs[] = {0, 1, 2, 4, 5};
    raw_log(db, seqs, 5, 100, NULL);
    eng_verify_report_t r = t_verify(db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.reason, ENG_VERIFY_GAP);
    cr_assert_eq(r.bad_seq, 3);
    cr_assert_eq(r.records, 3);
    eng_log_t *log = NULL;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert_not(eng_log_open(db, NULL, &log, &err));
    cr_assert(strstr(err.message, "seq 3 ("), "%s", err.message);
    cr_assert(strstr(err.message, "gap in seq"), "%s", err.message);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_fault, a_raw_log_written_by_the_format_opens)
{
    char *db = t_dbpath();
    uint64_t seqs[] = {0, 1, 2, 3, 4, 5, 6};
    raw_log(db, seqs, 7, 3, NULL);
    eng_log_t *log = t_open(db, 0);
    uint64_t next;
    eng_log_head(log, &next, NULL);
    cr_assert_eq(next, 7);
    eng_log_close(log);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_fault, a_misnamed_or_missing_segment_is_a_gap)
{
    char *db = t_dbpath();
    uint64_t seqs[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    uint64_t names[] = {0, 4, 6};
    raw_log(db, seqs, 9, 3, names);
    eng_verify_report_t r = t_verify(db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.reason, ENG_VERIFY_GAP);
    cr_assert_eq(r.bad_seq, 3);
    t_rm_rf(db);
    free(db);

    db = t_dbpath();
    raw_log(db, seqs, 9, 3, NULL);
    char path[1024];
    t_seg_path(db, 3, path, sizeof path);
    cr_assert_eq(unlink(path), 0);
    r = t_verify(db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.reason, ENG_VERIFY_GAP);
    cr_assert_eq(r.bad_seq, 3);
    cr_assert_str_eq(r.bad_segment, "00000000000000000006.nlog");
    t_rm_rf(db);
    free(db);
}

Test(eng_log_fault, a_cut_short_earlier_segment_is_refused)
{
    fx_t fx;
    fx_make(&fx, 80, 60, 4096);
    char path[1024];
    t_seg_path(fx.db, 0, path, sizeof path);
    size_t len;
    uint8_t *d = t_read_file(path, &len);
    t_write_file(path, d, len - 10);
    free(d);
    eng_verify_report_t r = t_verify(fx.db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.reason, ENG_VERIFY_BAD_LENGTH);
    eng_log_t *log = NULL;
    bq_error_t err;
    cr_assert_not(eng_log_open(fx.db, NULL, &log, &err));
    fx_free(&fx);
}

Test(eng_log_fault, an_unknown_segment_version_is_refused)
{
    fx_t fx;
    fx_make(&fx, 5, 10, 0);
    fx.orig[8] = 2;
    t_write_file(fx.seg, fx.orig, fx.len);
    eng_verify_report_t r = t_verify(fx.db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.reason, ENG_VERIFY_BAD_HEADER);
    eng_log_t *log = NULL;
    bq_error_t err;
    cr_assert_not(eng_log_open(fx.db, NULL, &log, &err));
    cr_assert(strstr(err.message, "version 2"), "%s", err.message);
    fx_free(&fx);
}

Test(eng_log_fault, a_failed_write_stops_the_log_and_loses_only_the_batch)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    t_append(log, 10, 30, NULL);
    bq_error_t err;
    bq_error_clear(&err);
    for (uint64_t i = 10; i < 15; i++) {
        bson_t b;
        t_op(i, 30, &b);
        cr_assert(eng_log_append(log, &b, NULL, NULL, &err), "%s", err.message);
        bson_destroy(&b);
    }
    eng__log_inject_fault(log, ENG__FAULT_WRITE);
    cr_assert_not(eng_log_sync(log, &err));
    cr_assert_eq(err.code, ENG_ERR_IO);
    cr_assert(strstr(err.message, "write failed"), "%s", err.message);
    /* nothing more is accepted */
    bson_t b;
    t_op(15, 30, &b);
    cr_assert_not(eng_log_append(log, &b, NULL, NULL, &err));
    cr_assert_not(eng_log_sync(log, &err));
    cr_assert_not(eng_log_flush(log, &err));
    bson_destroy(&b);
    eng_log_close(log);

    log = t_open(db, 0);
    uint64_t next;
    eng_log_head(log, &next, NULL);
    cr_assert_eq(next, 10);
    t_append(log, 3, 30, NULL);
    eng_log_close(log);
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid);
    cr_assert_eq(r.records, 13);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_fault, a_failed_fsync_is_reported_and_stops_the_log)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 0);
    t_append(log, 10, 30, NULL);
    bq_error_t err;
    bq_error_clear(&err);
    for (uint64_t i = 10; i < 14; i++) {
        bson_t b;
        t_op(i, 30, &b);
        cr_assert(eng_log_append(log, &b, NULL, NULL, &err), "%s", err.message);
        bson_destroy(&b);
    }
    eng__log_inject_fault(log, ENG__FAULT_SYNC);
    cr_assert_not(eng_log_sync(log, &err));
    cr_assert_eq(err.code, ENG_ERR_IO);
    cr_assert(strstr(err.message, "fdatasync failed"), "%s", err.message);
    bson_t b;
    t_op(14, 30, &b);
    cr_assert_not(eng_log_append(log, &b, NULL, NULL, &err));
    bson_destroy(&b);
    eng_log_close(log);
    /* the records reached the file (not known durable): whole, so they are kept */
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid);
    cr_assert_eq(r.records, 14);
    t_rm_rf(db);
    free(db);
}

Test(eng_log_fault, a_failed_write_during_rollover_is_an_error)
{
    char *db = t_dbpath();
    eng_log_t *log = t_open(db, 4096);
    t_append(log, 5, 60, NULL);
    bq_error_t err;
    bq_error_clear(&err);
    bool failed = false;
    for (uint64_t i = 5; i < 200 && !failed; i++) {
        if (i == 40)
            eng__log_inject_fault(log, ENG__FAULT_SYNC);
        bson_t b;
        t_op(i, 60, &b);
        failed = !eng_log_append(log, &b, NULL, NULL, &err);
        bson_destroy(&b);
    }
    cr_assert(failed, "the injected fsync failure at rollover was not reported");
    cr_assert_eq(err.code, ENG_ERR_IO);
    eng_log_close(log);
    eng_verify_report_t r = t_verify(db);
    cr_assert(r.valid, "%s", r.detail);
    t_rm_rf(db);
    free(db);
}

static bool count_only(void *ctx, const eng_record_t *rec, bq_error_t *err)
{
    (void)err;
    uint64_t *n = ctx;
    cr_assert_eq(rec->seq, *n, "records out of order");
    (*n)++;
    return true;
}

/* Big segments are hashed by several threads: the first bad record must still win. */
Test(eng_log_fault, the_first_bad_record_wins_in_a_segment_hashed_in_parallel)
{
    fx_t fx;
    memset(&fx, 0, sizeof fx);
    fx.db = t_dbpath();
    eng_log_t *log = t_open(fx.db, 0);
    t_append(log, 30000, 8, NULL);
    eng_pos_t p[2];
    bson_t b;
    eng_log_close(log);
    /* the offsets of seqs 3000 and 25000: every record here has the same length */
    t_op(0, 8, &b);
    uint32_t rec = b.len + 36;
    bson_destroy(&b);
    p[0] = (eng_pos_t){0, 16 + 3000 * rec};
    p[1] = (eng_pos_t){0, 16 + 25000 * rec};
    t_seg_path(fx.db, 0, fx.seg, sizeof fx.seg);
    fx.orig = t_read_file(fx.seg, &fx.len);
    cr_assert_eq(fx.len, 16 + 30000 * (size_t)rec);

    uint64_t seen = 0;
    eng_verify_options_t opts = {.check_ops = true, .on_record = count_only,
                                 .on_record_ctx = &seen};
    eng_verify_report_t r;
    bq_error_t err;
    bq_error_clear(&err);
    cr_assert(eng_verify_ex(fx.db, &opts, &r, &err), "%s", err.message);
    cr_assert(r.valid);
    cr_assert_eq(seen, 30000);

    fx.orig[p[1].off + 30] ^= 1;
    t_write_file(fx.seg, fx.orig, fx.len);
    r = t_verify(fx.db);
    cr_assert_not(r.valid);
    cr_assert_eq(r.bad_seq, 25000);
    cr_assert_eq(r.records, 25000);

    fx.orig[p[0].off + 4 + rec - 36 + 5] ^= 1;   /* a byte of the stored hash of 3000 */
    t_write_file(fx.seg, fx.orig, fx.len);
    seen = 0;
    cr_assert(eng_verify_ex(fx.db, &opts, &r, &err), "%s", err.message);
    cr_assert_not(r.valid);
    cr_assert_eq(r.bad_seq, 3000);
    cr_assert_eq(r.reason, ENG_VERIFY_BROKEN_LINK);
    cr_assert_eq(seen, 3000);
    fx_free(&fx);
}
