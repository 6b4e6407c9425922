/*
 * eng_op.c: the op document (DESIGN.md section 4), the body of every log record.
 *
 * This file turns an eng_op_t into BSON with the fields in their fixed order
 * (seq, ts, ct, op, ns, id, o, prov, txn; absent fields omitted, never null) and parses such
 * bytes back, checking types, order and the per-kind rules listed in eng.h. It knows
 * nothing of files or hashes: the log (eng_log.c) stores whatever bytes it is given, and
 * the hash covers them exactly as built here, so the same op must always build to the same
 * bytes. It must not allocate in eng_op_parse: recovery calls it for every record.
 */
#include <math.h>
#include <string.h>

#include "eng.h"
#include "eng_int.h"

/* The fields in their order; the index is the rank a parsed field must exceed. */
enum { F_SEQ, F_TS, F_CT, F_OP, F_NS, F_ID, F_O, F_PROV, F_TXN, F_COUNT };

static const char *const field_names[F_COUNT] = {
    "seq", "ts", "ct", "op", "ns", "id", "o", "prov", "txn",
};

static const char *const evidence_values[] = {
    "user_message", "inference", "tool_result", "correction", "external",
};

static bool kind_valid(int kind)
{
    return kind == ENG_OP_INSERT || kind == ENG_OP_UPDATE || kind == ENG_OP_DELETE ||
           kind == ENG_OP_CATALOG || kind == ENG_OP_MARKER;
}

/* Checks the prov document: known fields, their types and ranges. */
static bool prov_check(const uint8_t *data, uint32_t len, int64_t seq, int32_t code,
                       bq_error_t *err)
{
    bson_t doc;
    bson_iter_t it;
    if (!bson_init_static(&doc, data, len) || !bson_iter_init(&it, &doc)) {
        bq_error_set(err, code, "op field 'prov' is not a valid document");
        return false;
    }
    int seen = 0;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "caused_by") == 0) {
            bson_iter_t arr;
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
                bq_error_set(err, code, "prov.caused_by must be an array of int64 seqs");
                return false;
            }
            while (bson_iter_next(&arr)) {
                if (!BSON_ITER_HOLDS_INT64(&arr)) {
                    bq_error_set(err, code, "prov.caused_by must be an array of int64 seqs");
                    return false;
                }
                int64_t s = bson_iter_int64(&arr);
                if (s < 0 || s >= seq) {
                    bq_error_set(err, code,
                                 "prov.caused_by entry %lld must be an earlier seq "
                                 "(0 <= s < %lld)",
                                 (long long)s, (long long)seq);
                    return false;
                }
            }
        } else if (strcmp(key, "evidence") == 0) {
            bool ok = false;
            if (BSON_ITER_HOLDS_UTF8(&it)) {
                const char *v = bson_iter_utf8(&it, NULL);
                for (size_t i = 0; i < sizeof evidence_values / sizeof *evidence_values; i++)
                    if (strcmp(v, evidence_values[i]) == 0)
                        ok = true;
            }
            if (!ok) {
                bq_error_set(err, code,
                             "prov.evidence must be one of user_message, inference, "
                             "tool_result, correction, external");
                return false;
            }
        } else if (strcmp(key, "confidence") == 0) {
            double c = BSON_ITER_HOLDS_DOUBLE(&it) ? bson_iter_double(&it) : NAN;
            if (!isfinite(c) || c < 0.0 || c > 1.0) {
                bq_error_set(err, code, "prov.confidence must be a double in [0, 1]");
                return false;
            }
        } else {
            bq_error_set(err, code, "unknown field 'prov.%s'", key);
            return false;
        }
        seen++;
    }
    if (it.err_off) {
        bq_error_set(err, code, "op field 'prov' is not a valid document");
        return false;
    }
    if (seen == 0) {
        bq_error_set(err, code, "op field 'prov' must not be empty");
        return false;
    }
    return true;
}

/* The rules shared by build and parse; `code` is the error code to report. */
static bool op_check(const eng_op_t *op, int32_t code, bq_error_t *err)
{
    if (op->seq < 0) {
        bq_error_set(err, code, "op seq %lld must not be negative", (long long)op->seq);
        return false;
    }
    if (op->ts < 0 || op->ct_t != (uint64_t)(op->ts / 1000)) {
        bq_error_set(err, code, "op %lld: ct.t (%u) must be the seconds of ts (%lld ms)",
                     (long long)op->seq, op->ct_t, (long long)op->ts);
        return false;
    }
    if (op->ct_i < 1) {
        bq_error_set(err, code, "op %lld: ct.i must be at least 1", (long long)op->seq);
        return false;
    }
    if (!kind_valid(op->op)) {
        bq_error_set(err, code, "op %lld: op must be one of i, u, d, c, n",
                     (long long)op->seq);
        return false;
    }
    bool need_ns = op->op != ENG_OP_MARKER;
    bool need_id = op->op == ENG_OP_INSERT || op->op == ENG_OP_UPDATE ||
                   op->op == ENG_OP_DELETE;
    bool need_o = op->op == ENG_OP_INSERT || op->op == ENG_OP_UPDATE ||
                  op->op == ENG_OP_CATALOG;
    bool may_o = need_o || op->op == ENG_OP_MARKER;
    bool may_prov = op->op == ENG_OP_INSERT || op->op == ENG_OP_UPDATE;
    char k = (char)op->op;
    if (need_ns && !op->ns) {
        bq_error_set(err, code, "op %lld ('%c') needs ns", (long long)op->seq, k);
        return false;
    }
    if (op->ns && (op->ns_len == 0 || memchr(op->ns, '\0', op->ns_len))) {
        bq_error_set(err, code, "op %lld: ns must be a non-empty string without NUL",
                     (long long)op->seq);
        return false;
    }
    if (need_id != op->has_id) {
        bq_error_set(err, code, "op %lld ('%c') %s id", (long long)op->seq, k,
                     need_id ? "needs" : "must not have");
        return false;
    }
    if ((need_o && !op->o) || (!may_o && op->o)) {
        bq_error_set(err, code, "op %lld ('%c') %s o", (long long)op->seq, k,
                     need_o ? "needs" : "must not have");
        return false;
    }
    if (op->prov) {
        if (!may_prov) {
            bq_error_set(err, code, "op %lld ('%c') must not have prov", (long long)op->seq,
                         k);
            return false;
        }
        if (!prov_check(op->prov, op->prov_len, op->seq, code, err))
            return false;
    }
    return true;
}

static bool append_doc(bson_t *out, const char *key, const uint8_t *data, uint32_t len)
{
    bson_t sub;
    return bson_init_static(&sub, data, len) && bson_append_document(out, key, -1, &sub);
}

bool eng_op_build(const eng_op_t *op, bson_t *out, bq_error_t *err)
{
    bson_init(out);
    if (!op_check(op, BQ_ERR_BadValue, err))
        return false;
    bool ok = bson_append_int64(out, "seq", 3, op->seq) &&
              bson_append_date_time(out, "ts", 2, op->ts) &&
              bson_append_timestamp(out, "ct", 2, op->ct_t, op->ct_i);
    char kind[2] = {(char)op->op, '\0'};
    ok = ok && bson_append_utf8(out, "op", 2, kind, 1);
    if (ok && op->ns)
        ok = bson_append_utf8(out, "ns", 2, op->ns, (int)op->ns_len);
    if (ok && op->has_id)
        ok = bson_append_value(out, "id", 2, &op->id);
    if (ok && op->o)
        ok = append_doc(out, "o", op->o, op->o_len);
    if (ok && op->prov)
        ok = append_doc(out, "prov", op->prov, op->prov_len);
    if (ok && op->txn)
        ok = append_doc(out, "txn", op->txn, op->txn_len);
    if (!ok) {
        bson_reinit(out);
        bq_error_set(err, BQ_ERR_BadValue,
                     "op %lld: cannot build the op document (a field is not valid BSON "
                     "or the document is too large)",
                     (long long)op->seq);
        return false;
    }
    return true;
}

bool eng_op_peek_seq(const uint8_t *data, size_t len, int64_t *seq)
{
    /* int32 doclen | 0x12 "seq\0" | int64: the first 13 bytes of every op document */
    if (len < 18 || data[4] != BSON_TYPE_INT64 || memcmp(data + 5, "seq", 4) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | data[9 + i];
    *seq = (int64_t)v;
    return true;
}

static int field_index(const char *key)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(key, field_names[i]) == 0)
            return i;
    return -1;
}

static bool doc_field(const bson_iter_t *it, const uint8_t **data, uint32_t *len)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it))
        return false;
    bson_iter_document(it, len, data);
    return true;
}

bool eng_op_parse(const uint8_t *data, size_t len, eng_op_t *op, bq_error_t *err)
{
    memset(op, 0, sizeof *op);
    bson_t doc;
    bson_iter_t it;
    if (len > UINT32_MAX || !bson_init_static(&doc, data, len) ||
        !bson_iter_init(&it, &doc)) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "op document is not valid BSON");
        return false;
    }
    const int32_t code = BQ_ERR_FailedToParse;
    int last = -1;
    bool have[F_COUNT] = {false};
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int f = field_index(key);
        if (f < 0) {
            bq_error_set(err, code, "op document has an unknown field '%s'", key);
            return false;
        }
        if (f <= last) {
            bq_error_set(err, code, "op document field '%s' is out of order or repeated",
                         key);
            return false;
        }
        last = f;
        have[f] = true;
        bool ok = true;
        switch (f) {
        case F_SEQ:
            ok = BSON_ITER_HOLDS_INT64(&it);
            if (ok)
                op->seq = bson_iter_int64(&it);
            break;
        case F_TS:
            ok = BSON_ITER_HOLDS_DATE_TIME(&it);
            if (ok)
                op->ts = bson_iter_date_time(&it);
            break;
        case F_CT:
            ok = BSON_ITER_HOLDS_TIMESTAMP(&it);
            if (ok)
                bson_iter_timestamp(&it, &op->ct_t, &op->ct_i);
            break;
        case F_OP: {
            uint32_t n = 0;
            const char *s = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, &n) : NULL;
            ok = s && n == 1 && kind_valid(s[0]);
            if (ok)
                op->op = (eng_op_kind_t)s[0];
            break;
        }
        case F_NS:
            ok = BSON_ITER_HOLDS_UTF8(&it);
            if (ok)
                op->ns = bson_iter_utf8(&it, &op->ns_len);
            break;
        case F_ID:
            op->has_id = true;
            op->id = *bson_iter_value(&it);
            break;
        case F_O:
            ok = doc_field(&it, &op->o, &op->o_len);
            break;
        case F_PROV:
            ok = doc_field(&it, &op->prov, &op->prov_len);
            break;
        case F_TXN:
            ok = doc_field(&it, &op->txn, &op->txn_len);
            break;
        }
        if (!ok) {
            static const char *const want[F_COUNT] = {
                "int64", "date", "timestamp", "one of \"i\", \"u\", \"d\", \"c\", \"n\"",
                "string", "any", "document", "document", "document",
            };
            bq_error_set(err, code, "op document field '%s' must be %s", key, want[f]);
            return false;
        }
    }
    if (it.err_off) {
        bq_error_set(err, BQ_ERR_InvalidBSON, "op document is not valid BSON (at byte %u)",
                     it.err_off);
        return false;
    }
    for (int f = F_SEQ; f <= F_OP; f++) {
        if (!have[f]) {
            bq_error_set(err, code, "op document lacks field '%s'", field_names[f]);
            return false;
        }
    }
    return op_check(op, code, err);
}

size_t eng_op_caused_by(const eng_op_t *op, int64_t *out, size_t max)
{
    bson_t prov;
    bson_iter_t it, arr;
    size_t n = 0;
    if (!op->prov || !bson_init_static(&prov, op->prov, op->prov_len) ||
        !bson_iter_init_find(&it, &prov, "caused_by") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;
    while (bson_iter_next(&arr)) {
        if (!BSON_ITER_HOLDS_INT64(&arr))
            continue;
        if (n < max)
            out[n] = bson_iter_int64(&arr);
        n++;
    }
    return n;
}
