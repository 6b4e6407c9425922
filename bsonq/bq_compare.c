/*
 * bq_compare.c: MongoDB's total order over BSON values (simple collation).
 *
 * Owns the canonical type ranks, the comparison of any two values (sort order, range
 * predicates, index keys, $min/$max all rest on it) and document comparison. Numbers are
 * compared by bq_num.c.
 * Must not allocate: comparisons run inside sorts and index probes.
 */
#include <string.h>

#include "bq_int.h"

int bq_type_rank(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_MINKEY:
        return -1;
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
        return 0;
    case BSON_TYPE_NULL:
        return 5;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return 10;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return 15;
    case BSON_TYPE_DOCUMENT:
        return 20;
    case BSON_TYPE_ARRAY:
        return 25;
    case BSON_TYPE_BINARY:
        return 30;
    case BSON_TYPE_OID:
        return 35;
    case BSON_TYPE_BOOL:
        return 40;
    case BSON_TYPE_DATE_TIME:
        return 45;
    case BSON_TYPE_TIMESTAMP:
        return 47;
    case BSON_TYPE_REGEX:
        return 50;
    case BSON_TYPE_DBPOINTER:
        return 55;
    case BSON_TYPE_CODE:
        return 60;
    case BSON_TYPE_CODEWSCOPE:
        return 65;
    case BSON_TYPE_MAXKEY:
        return 127;
    }
    return 127;
}

static int sign_of(int c)
{
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}

/* Bytes first, then length: "ab" < "abc" < "b". */
static int cmp_bytes(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c)
        return sign_of(c);
    return la < lb ? -1 : la > lb ? 1 : 0;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

/* Objects (and arrays): element by element, each by type rank, field name, value. A
 * document that runs out first is smaller. Malformed BSON compares as empty. */
static int cmp_docs(const uint8_t *da, uint32_t la, const uint8_t *db, uint32_t lb)
{
    bson_iter_t ia, ib;
    bool oka = bson_iter_init_from_data(&ia, da, la);
    bool okb = bson_iter_init_from_data(&ib, db, lb);
    for (;;) {
        bool ma = oka && bson_iter_next(&ia);
        bool mb = okb && bson_iter_next(&ib);
        if (!ma || !mb)
            return ma == mb ? 0 : ma ? 1 : -1;
        int ra = bq_type_rank(bson_iter_type(&ia)), rb = bq_type_rank(bson_iter_type(&ib));
        if (ra != rb)
            return ra < rb ? -1 : 1;
        int c = strcmp(bson_iter_key(&ia), bson_iter_key(&ib));
        if (c)
            return sign_of(c);
        c = bq_value_compare(bson_iter_value(&ia), bson_iter_value(&ib));
        if (c)
            return c;
    }
}

int bq_value_compare(const bson_value_t *a, const bson_value_t *b)
{
    int ra = bq_type_rank(a->value_type), rb = bq_type_rank(b->value_type);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    const bson_value_t *x = a, *y = b;
    switch (a->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return 0;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return bq_num_compare(a, b);
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL: {
        const char *sa = x->value_type == BSON_TYPE_UTF8 ? x->value.v_utf8.str
                                                         : x->value.v_symbol.symbol;
        size_t la = x->value_type == BSON_TYPE_UTF8 ? x->value.v_utf8.len
                                                    : x->value.v_symbol.len;
        const char *sb = y->value_type == BSON_TYPE_UTF8 ? y->value.v_utf8.str
                                                         : y->value.v_symbol.symbol;
        size_t lb = y->value_type == BSON_TYPE_UTF8 ? y->value.v_utf8.len
                                                    : y->value.v_symbol.len;
        bool collated;
        int c = bq__collate_strings(sa, la, sb, lb, &collated);
        return collated ? c : cmp_bytes(sa, la, sb, lb);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return cmp_docs(x->value.v_doc.data, x->value.v_doc.data_len, y->value.v_doc.data,
                        y->value.v_doc.data_len);
    case BSON_TYPE_BINARY: {
        uint32_t la = x->value.v_binary.data_len, lb = y->value.v_binary.data_len;
        if (la != lb)
            return la < lb ? -1 : 1;
        if (x->value.v_binary.subtype != y->value.v_binary.subtype)
            return x->value.v_binary.subtype < y->value.v_binary.subtype ? -1 : 1;
        return la ? sign_of(memcmp(x->value.v_binary.data, y->value.v_binary.data, la)) : 0;
    }
    case BSON_TYPE_OID:
        return sign_of(memcmp(x->value.v_oid.bytes, y->value.v_oid.bytes, 12));
    case BSON_TYPE_BOOL:
        return (int)x->value.v_bool - (int)y->value.v_bool;
    case BSON_TYPE_DATE_TIME:
        return cmp_i64(x->value.v_datetime, y->value.v_datetime);
    case BSON_TYPE_TIMESTAMP: {
        int c = cmp_u64(x->value.v_timestamp.timestamp, y->value.v_timestamp.timestamp);
        return c ? c : cmp_u64(x->value.v_timestamp.increment, y->value.v_timestamp.increment);
    }
    case BSON_TYPE_REGEX: {
        int c = strcmp(x->value.v_regex.regex, y->value.v_regex.regex);
        if (c)
            return sign_of(c);
        return sign_of(strcmp(x->value.v_regex.options ? x->value.v_regex.options : "",
                              y->value.v_regex.options ? y->value.v_regex.options : ""));
    }
    case BSON_TYPE_DBPOINTER: {
        uint32_t la = x->value.v_dbpointer.collection_len,
                 lb = y->value.v_dbpointer.collection_len;
        if (la != lb)
            return la < lb ? -1 : 1;
        int c = strcmp(x->value.v_dbpointer.collection, y->value.v_dbpointer.collection);
        if (c)
            return sign_of(c);
        return sign_of(memcmp(x->value.v_dbpointer.oid.bytes, y->value.v_dbpointer.oid.bytes,
                              12));
    }
    case BSON_TYPE_CODE:
        return cmp_bytes(x->value.v_code.code, x->value.v_code.code_len, y->value.v_code.code,
                         y->value.v_code.code_len);
    case BSON_TYPE_CODEWSCOPE: {
        int c = cmp_bytes(x->value.v_codewscope.code, x->value.v_codewscope.code_len,
                          y->value.v_codewscope.code, y->value.v_codewscope.code_len);
        if (c)
            return c;
        return cmp_docs(x->value.v_codewscope.scope_data, x->value.v_codewscope.scope_len,
                        y->value.v_codewscope.scope_data, y->value.v_codewscope.scope_len);
    }
    }
    return 0;
}

bool bq_value_equal(const bson_value_t *a, const bson_value_t *b)
{
    return bq_value_compare(a, b) == 0;
}

int bq_doc_compare(const bson_t *a, const bson_t *b)
{
    return cmp_docs(bson_get_data(a), a->len, bson_get_data(b), b->len);
}
