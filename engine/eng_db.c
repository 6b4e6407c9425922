/*
 * eng_db.c: the database handle: opening a data directory (newest valid checkpoint, then
 * replay of the log after it into the store), closing it, snapshots and cluster times,
 * the catalog entry points, and the validation of provenance fields (DESIGN.md section 7)
 * before a write is queued.
 *
 * Open (DESIGN.md section 6): the checkpoints are tried newest first. One that does not
 * load (checksum, format) is skipped with a warning; one that loads is handed to
 * eng_log_open as the start of replay, which checks that the log's stored hash at the
 * checkpoint's seq is the checkpoint's head and then hashes, links and replays every
 * record after it. If that fails as corruption, the store is thrown away and the previous
 * checkpoint, then a full replay, is tried: a log that is really corrupt fails the full
 * replay too, with the error naming the seq, segment and offset. The replay uses the same
 * eng__store_apply() as the committer.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eng_store.h"

static const eng_db_options_t default_options; /* all zeros: every default */

static bool replay_record(void *ctx, const eng_record_t *rec, bq_error_t *err)
{
    eng_db_t *db = ctx;
    eng_op_t op;
    if (!eng_op_parse(rec->body, rec->len, &op, err) ||
        !eng__store_apply(&db->store, &op, err)) {
        bq_error_prefix(err, "replaying seq %llu", (unsigned long long)rec->seq);
        return false;
    }
    if (op.ts > db->last_ts)
        db->last_ts = op.ts;
    db->last_ct_t = op.ct_t;
    db->last_ct_i = op.ct_i;
    db->replayed_ops++;
    return true;
}

/* Appends a line to a malloc'd warnings string. */
static void warn(char **w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(char **w, const char *fmt, ...)
{
    char line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = *w ? strlen(*w) : 0, n = strlen(line);
    char *g = realloc(*w, old + n + 2);
    if (!g)
        abort();
    memcpy(g + old, line, n);
    g[old + n] = '\n';
    g[old + n + 1] = '\0';
    *w = g;
}

/* Loads checkpoint `seq` (if >= 0) and opens the log replaying what follows it. */
static bool open_from(eng_db_t *db, const char *dbpath, const eng_db_options_t *opts,
                      int64_t seq, char **warnings, bq_error_t *err)
{
    eng__store_init(&db->store);
    db->last_ts = 0;
    db->last_ct_t = db->last_ct_i = 0;
    db->replayed_ops = 0;
    eng_log_options_t lo = {0};
    lo.segment_size = opts->segment_size;
    lo.on_record = replay_record;
    lo.on_record_ctx = db;
    if (seq >= 0) {
        eng__ckpt_info_t info;
        if (!eng__ckpt_load(dbpath, (uint64_t)seq, &db->store, &info, err)) {
            warn(warnings, "checkpoint at seq %" PRId64 " skipped: %s", seq, err->message);
            eng__store_cleanup(&db->store);
            return false;
        }
        lo.verify_from_seq = info.seq + 1;
        memcpy(lo.verify_from_hash, info.head, ENG_HASH_SIZE);
        db->last_ts = info.ts;
        uint64_t ct = eng__vec_get(&db->store.cts, info.seq);
        db->last_ct_t = (uint32_t)(ct >> 32);
        db->last_ct_i = (uint32_t)ct;
    }
    if (!eng_log_open(dbpath, &lo, &db->log, err)) {
        if (seq >= 0 && err->code == ENG_ERR_CORRUPT)
            warn(warnings, "checkpoint at seq %" PRId64 " skipped: the log after it does not "
                 "replay: %s", seq, err->message);
        eng__store_cleanup(&db->store);
        return false;
    }
    db->store.log = db->log; /* versions the checkpoint left on disk are read from it */
    return true;
}

bool eng_db_open(const char *dbpath, const eng_db_options_t *opts, eng_db_t **out,
                 char **warnings, bq_error_t *err)
{
    *out = NULL;
    if (warnings)
        *warnings = NULL;
    if (!opts)
        opts = &default_options;
    eng_db_t *db = calloc(1, sizeof *db);
    if (!db) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory");
        return false;
    }
    char *warn_text = NULL;
    uint64_t *seqs = NULL;
    size_t nseqs = 0;
    bq_error_t lerr;
    bq_error_clear(&lerr);
    if (!opts->ignore_checkpoints && !eng__ckpt_list(dbpath, &seqs, &nseqs, &lerr))
        warn(&warn_text, "checkpoints ignored: %s", lerr.message);
    int64_t loaded = -1;
    bool opened = false;
    for (size_t k = 0; k <= nseqs && !opened; k++) {
        int64_t seq = k < nseqs ? (int64_t)seqs[k] : -1;
        bq_error_clear(&lerr);
        opened = open_from(db, dbpath, opts, seq, &warn_text, &lerr);
        if (opened) {
            loaded = seq;
        } else if (seq < 0 || (lerr.code != ENG_ERR_CORRUPT && lerr.code != ENG_ERR_IO)) {
            break; /* a full replay failed, or LOCK, options, memory: not the checkpoint */
        }
    }
    free(seqs);
    if (!opened) {
        if (err)
            *err = lerr;
        free(warn_text);
        free(db);
        return false;
    }
    uint64_t next;
    eng_log_head(db->log, &next, db->status_head);
    pthread_mutex_init(&db->status_lock, NULL);
    atomic_init(&db->committed, (int64_t)next - 1);
    atomic_init(&db->read_only, false);
    db->ckpt_at_close = !opts->no_close_checkpoint;
    if (!eng__seq_start(db, err)) {
        eng_log_close(db->log);
        eng__store_cleanup(&db->store);
        pthread_mutex_destroy(&db->status_lock);
        free(warn_text);
        free(db);
        return false;
    }
    if (!eng__ckpt_start(db, dbpath, opts, loaded, err)) {
        db->ckpt_at_close = false;
        free(warn_text);
        eng_db_close(db);
        return false;
    }
    if (warnings) {
        const char *lw = eng_log_warnings(db->log);
        size_t a = warn_text ? strlen(warn_text) : 0, b = strlen(lw);
        *warnings = malloc(a + b + 1);
        if (!*warnings)
            abort();
        memcpy(*warnings, warn_text ? warn_text : "", a);
        memcpy(*warnings + a, lw, b + 1);
    }
    free(warn_text);
    *out = db;
    return true;
}

void eng_db_close(eng_db_t *db)
{
    if (!db)
        return;
    eng__ckpt_stop(db);
    eng__seq_stop(db);
    if (db->ckpt && db->ckpt_at_close)
        eng_db_checkpoint(db, NULL); /* a failure leaves the previous one: still correct */
    eng__ckpt_free(db);
    eng_log_close(db->log);
    eng__store_cleanup(&db->store);
    pthread_mutex_destroy(&db->status_lock);
    free(db);
}

void eng_db_status(eng_db_t *db, eng_db_status_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&db->status_lock);
    out->committed = eng_db_snapshot(db);
    if (out->committed >= 0)
        eng_hash_hex(db->status_head, out->head_hex);
    out->batches = db->status_batches;
    out->batched_ops = db->status_ops;
    out->max_batch = db->status_max_batch;
    pthread_mutex_unlock(&db->status_lock);
    out->read_only = eng_db_read_only(db);
    out->replayed_ops = db->replayed_ops;
    eng__ckpt_status(db, out);
}

int64_t eng_db_snapshot(const eng_db_t *db)
{
    return atomic_load_explicit(&db->committed, memory_order_acquire);
}

bool eng_db_read_only(const eng_db_t *db)
{
    return atomic_load(&db->read_only);
}

void eng_db_cluster_time(const eng_db_t *db, int64_t snap, uint32_t *t, uint32_t *i)
{
    if (snap < 0 || (uint64_t)snap >= eng__vec_len(&db->store.cts)) {
        *t = *i = 0;
        return;
    }
    uint64_t ct = eng__vec_get(&db->store.cts, (uint64_t)snap);
    *t = (uint32_t)(ct >> 32);
    *i = (uint32_t)ct;
}

int64_t eng_db_snapshot_at(const eng_db_t *db, uint32_t t, uint32_t i)
{
    /* cts are strictly increasing with seq: bisect for the last one <= (t, i) */
    int64_t committed = eng_db_snapshot(db);
    uint64_t want = (uint64_t)t << 32 | i;
    int64_t lo = 0, hi = committed + 1; /* answer in [lo - 1, hi - 1] */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (eng__vec_get(&db->store.cts, (uint64_t)mid) <= want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

eng_coll_t *eng_coll_get(eng_db_t *db, const char *dbname, const char *name, int64_t snap)
{
    return eng__store_coll_get(&db->store, dbname, name, snap);
}

size_t eng_catalog_list(eng_db_t *db, const char *dbname, int64_t snap, eng_coll_info_t **out)
{
    return eng__store_list(&db->store, dbname, snap, out);
}

size_t eng_prov_effects(eng_db_t *db, int64_t cause, int64_t snap, int64_t *out, size_t max)
{
    return eng__store_prov_effects(&db->store, cause, snap, out, max);
}

bool eng_db_op_read(eng_db_t *db, int64_t snap, int64_t seq, bson_t *body, eng_op_t *op,
                    bq_error_t *err)
{
    if (seq < 0 || seq > snap || snap > eng_db_snapshot(db)) {
        bson_init(body);
        bq_error_set(err, BQ_ERR_BadValue, "no op with seq %" PRId64 " at snapshot %" PRId64,
                     seq, snap);
        return false;
    }
    /* committed seqs are flushed (eng_seq.c publishes after the sync) */
    if (!eng_log_read_seq(db->log, (uint64_t)seq, body, err))
        return false;
    if (!eng_op_parse(bson_get_data(body), body->len, op, err)) {
        bq_error_prefix(err, "log record %" PRId64, seq);
        return false;
    }
    if (op->seq != seq) {
        bq_error_set(err, ENG_ERR_CORRUPT, "the log record found for seq %" PRId64
                     " holds seq %" PRId64, seq, op->seq);
        return false;
    }
    return true;
}

/* ---- provenance ---- */

static const char *const evidence_values[] = {"user_message", "inference", "tool_result",
                                              "correction", "external"};

/* Resolves one _caused_by entry to a seq. */
static bool cause_resolve(eng_db_t *db, const char *dbname, int64_t snap, bson_iter_t *it,
                          int64_t *seq, bq_error_t *err)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_as_double(it);
        int64_t s = bson_iter_as_int64(it);
        if (BSON_ITER_HOLDS_DOUBLE(it) && (d != floor(d) || !isfinite(d))) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "_caused_by entries must be integer seqs or {coll, _id} references");
            return false;
        }
        if (s < 0 || s > snap) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "_caused_by seq %lld does not name an earlier op (newest is %lld)",
                         (long long)s, (long long)snap);
            return false;
        }
        *seq = s;
        return true;
    }
    case BSON_TYPE_DOCUMENT: {
        bson_iter_t ref;
        const char *coll = NULL, *rdb = dbname;
        bson_value_t idv; /* a shallow copy: the iterator's own value changes as it moves */
        const bson_value_t *id = NULL;
        bson_iter_recurse(it, &ref);
        while (bson_iter_next(&ref)) {
            const char *k = bson_iter_key(&ref);
            if (strcmp(k, "coll") == 0 && BSON_ITER_HOLDS_UTF8(&ref))
                coll = bson_iter_utf8(&ref, NULL);
            else if (strcmp(k, "db") == 0 && BSON_ITER_HOLDS_UTF8(&ref))
                rdb = bson_iter_utf8(&ref, NULL);
            else if (strcmp(k, "_id") == 0) {
                idv = *bson_iter_value(&ref);
                id = &idv;
            }
            else {
                bq_error_set(err, BQ_ERR_BadValue,
                             "_caused_by reference has an unknown or mistyped field '%s': "
                             "expected {coll: <string>, _id: <value>, db?: <string>}",
                             k);
                return false;
            }
        }
        if (!coll || !id) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "_caused_by reference needs coll (a string) and _id");
            return false;
        }
        eng_coll_t *c = eng_coll_get(db, rdb, coll, snap);
        eng_doc_t doc;
        bool found = false;
        if (c && !eng_coll_find_id_checked(c, snap, id, &doc, &found, err))
            return false;
        if (!found) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "_caused_by reference {coll: '%s'} names no existing document in %s",
                         coll, rdb);
            return false;
        }
        *seq = doc.seq;
        return true;
    }
    default:
        bq_error_set(err, BQ_ERR_BadValue,
                     "_caused_by entries must be integer seqs or {coll, _id} references, "
                     "not %s",
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
}

bool eng_prov_prepare(eng_db_t *db, const char *dbname, int64_t snap, const bson_t *doc,
                      bson_t *out, bson_t *prov, bool *has_prov, bq_error_t *err)
{
    bson_iter_t it;
    bson_t causes = BSON_INITIALIZER;
    const char *evidence = NULL;
    double confidence = 0;
    bool has_causes = false, has_conf = false;
    bson_init(out);
    bson_init(prov);
    *has_prov = false;

    if (!bson_iter_init(&it, doc)) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "invalid document");
        goto fail;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_caused_by") == 0) {
            if (!BSON_ITER_HOLDS_ARRAY(&it)) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "_caused_by must be an array of seqs or {coll, _id} references");
                goto fail;
            }
            bson_iter_t arr;
            bson_iter_recurse(&it, &arr);
            uint32_t n = 0;
            bson_t outarr;
            BSON_APPEND_ARRAY_BEGIN(out, "_caused_by", &outarr);
            while (bson_iter_next(&arr)) {
                int64_t seq;
                if (!cause_resolve(db, dbname, snap, &arr, &seq, err)) {
                    bson_append_array_end(out, &outarr);
                    goto fail;
                }
                char key[16];
                snprintf(key, sizeof key, "%u", n);
                BSON_APPEND_INT64(&outarr, key, seq);
                BSON_APPEND_INT64(&causes, key, seq);
                n++;
            }
            bson_append_array_end(out, &outarr);
            has_causes = true;
        } else if (strcmp(k, "_evidence") == 0) {
            evidence = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
            bool ok = false;
            for (size_t i = 0; evidence && i < sizeof evidence_values / sizeof *evidence_values;
                 i++)
                ok = ok || strcmp(evidence, evidence_values[i]) == 0;
            if (!ok) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "_evidence must be one of user_message, inference, tool_result, "
                             "correction, external");
                goto fail;
            }
            bson_append_iter(out, k, -1, &it);
        } else if (strcmp(k, "_confidence") == 0) {
            if (!BSON_ITER_HOLDS_NUMBER(&it) && !BSON_ITER_HOLDS_DECIMAL128(&it)) {
                bq_error_set(err, BQ_ERR_BadValue, "_confidence must be a number in [0, 1]");
                goto fail;
            }
            if (BSON_ITER_HOLDS_DECIMAL128(&it)) {
                bson_decimal128_t d;
                char s[BSON_DECIMAL128_STRING];
                bson_iter_decimal128(&it, &d);
                bson_decimal128_to_string(&d, s);
                confidence = strtod(s, NULL);
                if (strstr(s, "NaN") || strstr(s, "Inf"))
                    confidence = NAN;
            } else {
                confidence = bson_iter_as_double(&it);
            }
            if (!isfinite(confidence) || confidence < 0 || confidence > 1) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "_confidence must be a finite number in [0, 1]");
                goto fail;
            }
            BSON_APPEND_DOUBLE(out, k, confidence);
            has_conf = true;
        } else {
            bson_append_iter(out, k, -1, &it);
        }
    }
    if (has_causes)
        BSON_APPEND_ARRAY(prov, "caused_by", &causes);
    if (evidence)
        BSON_APPEND_UTF8(prov, "evidence", evidence);
    if (has_conf)
        BSON_APPEND_DOUBLE(prov, "confidence", confidence);
    *has_prov = has_causes || evidence || has_conf;
    bson_destroy(&causes);
    return true;
fail:
    bson_destroy(&causes);
    bson_reinit(out);
    bson_reinit(prov);
    return false;
}

/* ---- verify, on a live database ---- */

bool eng_db_verify(eng_db_t *db, eng_verify_report_t *rep, bq_error_t *err)
{
    memset(rep, 0, sizeof *rep);
    rep->valid = true;
    int64_t snap = eng_db_snapshot(db);
    uint8_t prev[ENG_HASH_SIZE] = {0};
    if (snap >= 0) {
        eng_log_iter_t *it = eng_log_iter_new(db->log, 0, err);
        if (!it)
            return false;
        eng_record_t rec;
        bq_error_t ierr;
        bq_error_clear(&ierr);
        while ((int64_t)rep->records <= snap && eng_log_iter_next(it, &rec, &ierr)) {
            uint8_t h[ENG_HASH_SIZE];
            eng__hash(prev, rec.body, rec.len, h);
            if (rec.seq != rep->records || memcmp(h, rec.hash, ENG_HASH_SIZE) != 0) {
                rep->valid = false;
                rep->reason = rec.seq != rep->records ? ENG_VERIFY_GAP : ENG_VERIFY_HASH_MISMATCH;
                rep->bad_seq = rep->records;
                snprintf(rep->detail, sizeof rep->detail, "record %llu: %s",
                         (unsigned long long)rec.seq, eng_verify_reason_name(rep->reason));
                break;
            }
            memcpy(prev, rec.hash, ENG_HASH_SIZE);
            rep->records++;
        }
        eng_log_iter_destroy(it);
        if (ierr.code) {
            rep->valid = false;
            rep->reason = ENG_VERIFY_BAD_LENGTH;
            rep->bad_seq = rep->records;
            snprintf(rep->detail, sizeof rep->detail, "%.200s", ierr.message);
        }
    }
    memcpy(rep->head, prev, ENG_HASH_SIZE);
    eng_hash_hex(prev, rep->head_hex);
    return true;
}
