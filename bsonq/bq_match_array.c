/*
 * bq_match_array.c: the array operators of queries: $size, $elemMatch and $all.
 *
 * Owns their argument checks and semantics. $size and $elemMatch see the array stored at
 * the path as a whole (arrays met before the end of the path still fan out). $elemMatch
 * has two forms, chosen by its first field as mongod chooses: operators ({$gt: 1, $lt: 5})
 * test each element as a value; anything else ({b: 1, c: {$gt: 2}}, or $and/$or/$nor) is a
 * filter each element must match as a document. $all is an AND of equality (or regex, or
 * $elemMatch) leaves on the same path; an empty $all matches nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

/* ---------------------------------------------------------------- $size */

static bool compile_size(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    bson_value_t v = *bson_iter_value((bson_iter_t *)arg);
    if (!bq_num_is_number(&v)) {
        bq_error_set(err, BQ_ERR_BadValue, "$size needs a number");
        return false;
    }
    int64_t size;
    bool exact;
    if (!bq_num_to_int64(&v, &size, &exact) || !exact) {
        bq_error_set(err, BQ_ERR_BadValue, "$size must be a whole number");
        return false;
    }
    if (size < 0) {
        bq_error_set(err, BQ_ERR_BadValue, "$size may not be negative");
        return false;
    }
    n->arg.value_type = BSON_TYPE_INT64;
    n->arg.value.v_int64 = size;
    return true;
}

static bool match_size(const bq__mnode_t *n, const bson_value_t *v)
{
    if (!v || v->value_type != BSON_TYPE_ARRAY)
        return false;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return false;
    int64_t count = 0;
    while (bson_iter_next(&it))
        count++;
    return count == n->arg.value.v_int64;
}

/* ---------------------------------------------------------------- $elemMatch */

enum { ELEM_VALUE = 1, ELEM_OBJECT = 2 };

static bool compile_elem_match(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_BadValue, "$elemMatch needs an Object");
        return false;
    }
    bson_iter_t ch;
    bson_iter_recurse(arg, &ch);
    bool value_form = false;
    if (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        value_form = k[0] == '$' && strcmp(k, "$and") && strcmp(k, "$or") &&
                     strcmp(k, "$nor") && strcmp(k, "$where") && strcmp(k, "$expr") &&
                     strcmp(k, "$jsonSchema") && strcmp(k, "$comment") &&
                     strcmp(k, "$alwaysTrue") && strcmp(k, "$alwaysFalse") &&
                     strcmp(k, "$ref") && strcmp(k, "$id") && strcmp(k, "$db");
    }
    bq__mnode_t *inner = bq__mnode_new(BQ__M_AND);
    if (!inner) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    bool ok;
    if (value_form) {
        ok = bq__match_parse_ops(inner, NULL, arg, err);
    } else {
        uint32_t len;
        const uint8_t *data;
        bson_t sub;
        bson_iter_document(arg, &len, &data);
        ok = bson_init_static(&sub, data, len) && bq__match_parse_doc(inner, &sub, false, err);
    }
    if (!ok) {
        bq__mnode_free(inner);
        return false;
    }
    if (!bq__mnode_add(n, inner)) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    n->data = (void *)(intptr_t)(value_form ? ELEM_VALUE : ELEM_OBJECT);
    return true;
}

static bool match_elem_match(const bq__mnode_t *n, const bson_value_t *v)
{
    if (!v || v->value_type != BSON_TYPE_ARRAY)
        return false;
    bool object_form = (intptr_t)n->data == ELEM_OBJECT;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return false;
    while (bson_iter_next(&it)) {
        const bson_value_t *el = bson_iter_value(&it);
        if (object_form && el->value_type != BSON_TYPE_DOCUMENT &&
            el->value_type != BSON_TYPE_ARRAY)
            continue;
        if (bq__mnode_eval(n->kids[0], el))
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- $all */

static bool is_elem_match_doc(const bson_iter_t *it)
{
    bson_iter_t ch;
    return bson_iter_type(it) == BSON_TYPE_DOCUMENT && bson_iter_recurse(it, &ch) &&
           bson_iter_next(&ch) && strcmp(bson_iter_key(&ch), "$elemMatch") == 0;
}

static const bq__mop_t elem_match_op;

static bool compile_all(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) != BSON_TYPE_ARRAY) {
        bq_error_set(err, BQ_ERR_BadValue, "$all needs an array");
        return false;
    }
    /* The node becomes an AND of leaves on the same path (FALSE when empty). */
    n->kind = BQ__M_AND;
    n->op = NULL;
    n->negate = false;
    bson_iter_t it;
    bson_iter_recurse(arg, &it);
    bool first = true, elem_match = false, any = false;
    while (bson_iter_next(&it)) {
        bool em = is_elem_match_doc(&it);
        if (first)
            elem_match = em;
        else if (em != elem_match) {
            bq_error_set(err, BQ_ERR_BadValue, "$all/$elemMatch has to be consistent");
            return false;
        }
        first = false;
        bq__mnode_t *kid;
        if (em) {
            bson_iter_t ch; /* positioned on the $elemMatch field */
            bson_iter_recurse(&it, &ch);
            bson_iter_next(&ch);
            kid = bq__match_leaf(&elem_match_op, n->path, &ch, err);
        } else {
            bson_iter_t ch;
            if (bson_iter_type(&it) == BSON_TYPE_DOCUMENT && bson_iter_recurse(&it, &ch) &&
                bson_iter_next(&ch) && bson_iter_key(&ch)[0] == '$' &&
                strcmp(bson_iter_key(&ch), "$ref") && strcmp(bson_iter_key(&ch), "$id") &&
                strcmp(bson_iter_key(&ch), "$db")) {
                bq_error_set(err, BQ_ERR_BadValue, "no $ expressions in $all");
                return false;
            }
            kid = bq__match_eq_leaf(n->path, &it, err);
        }
        if (!kid)
            return false;
        if (!bq__mnode_add(n, kid)) {
            bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
            return false;
        }
        any = true;
    }
    if (!any)
        n->kind = BQ__M_FALSE;
    return true;
}

static bool match_never(const bq__mnode_t *n, const bson_value_t *v)
{
    (void)n;
    (void)v;
    return false;
}

static const bq__mop_t elem_match_op = {"$elemMatch", compile_elem_match, match_elem_match,
                                        NULL, BQ__MOP_WHOLE_ARRAY};

const bq__mop_t bq__match_array_ops[] = {
    {"$size", compile_size, match_size, NULL, BQ__MOP_WHOLE_ARRAY},
    {"$elemMatch", compile_elem_match, match_elem_match, NULL, BQ__MOP_WHOLE_ARRAY},
    {"$all", compile_all, match_never, NULL, 0},
    {NULL, NULL, NULL, NULL, 0},
};
