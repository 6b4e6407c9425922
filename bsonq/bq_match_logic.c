/*
 * bq_match_logic.c: the logical operators of queries: $and, $or, $nor (top level, arrays
 * of filter documents) and $not (field level, a regex or an operator document).
 *
 * Owns their argument checks and error messages; the nodes they build are evaluated by
 * bq_match.c. $not negates at the path level: {a: {$not: {$gt: 5}}} matches documents
 * where no value of a is above 5, including documents without a.
 */
#include <string.h>

#include "bq_int.h"

static bq__mnode_t *new_node(enum bq__mkind kind, bq_error_t *err)
{
    bq__mnode_t *n = bq__mnode_new(kind);
    if (!n)
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
    return n;
}

static bool attach(bq__mnode_t *into, bq__mnode_t *n, bq_error_t *err)
{
    if (!bq__mnode_add(into, n)) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory compiling a filter");
        return false;
    }
    return true;
}

bool bq__match_parse_logic(bq__mnode_t *into, const char *op, const bson_iter_t *arg,
                           bq_error_t *err)
{
    bson_iter_t it;
    if (bson_iter_type(arg) != BSON_TYPE_ARRAY || !bson_iter_recurse(arg, &it)) {
        bq_error_set(err, BQ_ERR_BadValue, "%s must be an array", op);
        return false;
    }
    enum bq__mkind kind = !strcmp(op, "$and") ? BQ__M_AND
                          : !strcmp(op, "$or") ? BQ__M_OR
                                               : BQ__M_NOR;
    bq__mnode_t *n = new_node(kind, err);
    if (!n)
        return false;
    while (bson_iter_next(&it)) {
        if (bson_iter_type(&it) != BSON_TYPE_DOCUMENT) {
            bq_error_set(err, BQ_ERR_BadValue, "$or/$and/$nor entries need to be full objects");
            bq__mnode_free(n);
            return false;
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_t sub;
        if (!bson_init_static(&sub, data, len)) {
            bq_error_set(err, BQ_ERR_InvalidBSON, "invalid BSON in %s", op);
            bq__mnode_free(n);
            return false;
        }
        bq__mnode_t *kid = new_node(BQ__M_AND, err);
        if (!kid) {
            bq__mnode_free(n);
            return false;
        }
        if (!bq__match_parse_doc(kid, &sub, false, err)) {
            bq__mnode_free(kid);
            bq__mnode_free(n);
            return false;
        }
        if (!attach(n, kid, err)) { /* bq__mnode_add freed kid */
            bq__mnode_free(n);
            return false;
        }
    }
    if (n->nkids == 0) {
        bq_error_set(err, BQ_ERR_BadValue, "$and/$or/$nor must be a nonempty array");
        bq__mnode_free(n);
        return false;
    }
    return attach(into, n, err);
}

bool bq__match_parse_not(bq__mnode_t *into, const char *path, const bson_iter_t *arg,
                         bq_error_t *err)
{
    bq__mnode_t *inner = new_node(BQ__M_AND, err);
    if (!inner)
        return false;
    bool ok;
    if (bson_iter_type(arg) == BSON_TYPE_REGEX) {
        bq__mnode_t *leaf = bq__match_regex_leaf(path, arg, NULL, err);
        ok = leaf && attach(inner, leaf, err); /* attach frees leaf on failure */
    } else if (bson_iter_type(arg) == BSON_TYPE_DOCUMENT) {
        bson_iter_t ch;
        if (!bson_iter_recurse(arg, &ch) || !bson_iter_next(&ch)) {
            bq_error_set(err, BQ_ERR_BadValue, "$not cannot be empty");
            ok = false;
        } else {
            ok = bq__match_parse_ops(inner, path, arg, err);
        }
    } else {
        bq_error_set(err, BQ_ERR_BadValue, "$not needs a regex or a document");
        ok = false;
    }
    bq__mnode_t *not = ok ? new_node(BQ__M_NOT, err) : NULL;
    if (!not) {
        bq__mnode_free(inner);
        return false;
    }
    if (!attach(not, inner, err)) {
        bq__mnode_free(not);
        return false;
    }
    return attach(into, not, err);
}
