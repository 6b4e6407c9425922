/*
 * bq_update_arr.c: the array update operators of bq_update.h ($push with $each,
 * $position, $sort and $slice; $addToSet with $each; $pop; $pull; $pullAll) and $bit.
 * Owns parsing their arguments into a leaf of the update tree and applying them to one
 * field of the mutable document (bq_update_int.h). The tree walk, paths and _id rules
 * are bq_update.c's.
 *
 * $pull conditions are query filters evaluated by bq_match (bq.h): a condition whose
 * keys are query operators ({$gte: 6}) tests each element as a value, a plain document
 * ({score: 8}) tests elements that are documents as a query, anything else is equality.
 */
#include <string.h>

#include "bq_update_int.h"

/* ---------------------------------------------------------------- compile */

static bool compile_push(bq__unode_t *n, const bson_iter_t *it, bq_error_t *err)
{
    n->items = n->arg;
    if (n->arg.value_type != BSON_TYPE_DOCUMENT)
        return true;
    bson_iter_t f;
    bson_iter_recurse(it, &f);
    bool has_each = false;
    while (bson_iter_next(&f))
        if (strcmp(bson_iter_key(&f), "$each") == 0)
            has_each = true;
    if (!has_each)
        return true;
    n->each = true;
    /* iterate over our own copy so borrowed values live as long as the update */
    bson_t own;
    bson_init_static(&own, n->arg.value.v_doc.data, n->arg.value.v_doc.data_len);
    bson_iter_init(&f, &own);
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (strcmp(k, "$each") == 0) {
            if (!BSON_ITER_HOLDS_ARRAY(&f)) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "The argument to $each in %s must be an array but it was of "
                             "type: %s",
                             n->op == BQ__U_PUSH ? "$push" : "$addToSet",
                             bq_type_name(bson_iter_type(&f)));
                return false;
            }
            n->items = *bson_iter_value(&f);
        } else if (n->op == BQ__U_ADDTOSET) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "Found unexpected fields after $each in $addToSet: %s", k);
            return false;
        } else if (strcmp(k, "$slice") == 0) {
            int64_t v;
            bool exact = false;
            if (!bq_num_to_int64(bson_iter_value(&f), &v, &exact) || !exact) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "The value for $slice must be an integer value but was given "
                             "type: %s",
                             bq_type_name(bson_iter_type(&f)));
                return false;
            }
            n->has_slice = true;
            n->slice = v;
        } else if (strcmp(k, "$position") == 0) {
            int64_t v;
            bool exact = false;
            if (!bq_num_to_int64(bson_iter_value(&f), &v, &exact) || !exact) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "The value for $position must be an integer value, not of type: "
                             "%s",
                             bq_type_name(bson_iter_type(&f)));
                return false;
            }
            n->has_position = true;
            n->position = v;
        } else if (strcmp(k, "$sort") == 0) {
            double d;
            if (bq_num_to_double(bson_iter_value(&f), &d)) {
                if (d != 1 && d != -1) {
                    bq_error_set(err, BQ_ERR_BadValue,
                                 "The $sort element value must be either 1 or -1");
                    return false;
                }
                n->sort_kind = d > 0 ? 1 : -1;
            } else if (BSON_ITER_HOLDS_DOCUMENT(&f)) {
                uint32_t len;
                const uint8_t *data;
                bson_t spec;
                bson_iter_document(&f, &len, &data);
                bson_init_static(&spec, data, len);
                if (bson_empty(&spec)) {
                    bq_error_set(err, BQ_ERR_BadValue, "The $sort pattern is empty when it "
                                                       "should be a set of fields.");
                    return false;
                }
                bson_iter_t s;
                bson_iter_init(&s, &spec);
                while (bson_iter_next(&s)) {
                    const char *sk = bson_iter_key(&s);
                    double sd = 0;
                    if (sk[0] == '\0' || sk[0] == '.' || sk[strlen(sk) - 1] == '.' ||
                        strstr(sk, "..") || strchr(sk, '$')) {
                        bq_error_set(err, BQ_ERR_BadValue,
                                     "The $sort field is a dotted field but has an empty "
                                     "part: %s",
                                     sk);
                        return false;
                    }
                    if (!bq_num_to_double(bson_iter_value(&s), &sd) || (sd != 1 && sd != -1)) {
                        bq_error_set(err, BQ_ERR_BadValue,
                                     "The $sort element value must be either 1 or -1");
                        return false;
                    }
                }
                n->sort = bq_sort_compile(&spec, err);
                if (!n->sort)
                    return false;
                n->sort_kind = 2;
            } else {
                bq_error_set(err, BQ_ERR_BadValue,
                             "The $sort is invalid: use 1/-1 to sort the whole element, or "
                             "{field:1/-1} to sort embedded fields");
                return false;
            }
        } else {
            bq_error_set(err, BQ_ERR_BadValue, "Unrecognized clause in $push: %s", k);
            return false;
        }
    }
    return true;
}

static bool compile_pull(bq__unode_t *n, bq_error_t *err)
{
    bson_t own;
    if (n->arg.value_type == BSON_TYPE_DOCUMENT) {
        bson_init_static(&own, n->arg.value.v_doc.data, n->arg.value.v_doc.data_len);
        bson_iter_t f;
        bool op = false;
        if (bson_iter_init(&f, &own) && bson_iter_next(&f)) {
            const char *k = bson_iter_key(&f);
            op = k[0] == '$' && strcmp(k, "$and") != 0 && strcmp(k, "$or") != 0 &&
                 strcmp(k, "$nor") != 0 && strcmp(k, "$expr") != 0 &&
                 strcmp(k, "$where") != 0 && strcmp(k, "$comment") != 0 &&
                 strcmp(k, "$text") != 0 && strcmp(k, "$jsonSchema") != 0;
        }
        if (!op) {
            n->pull_kind = 1;
            n->match = bq_match_compile(&own, err);
            return n->match != NULL;
        }
    } else if (n->arg.value_type != BSON_TYPE_REGEX) {
        n->pull_kind = 0;
        return true;
    }
    /* operators or a regex: match each element as the value of field "v" */
    bson_t wrap = BSON_INITIALIZER;
    bson_append_value(&wrap, "v", 1, &n->arg);
    n->pull_kind = 2;
    n->match = bq_match_compile(&wrap, err);
    bson_destroy(&wrap);
    return n->match != NULL;
}

static bool compile_bit(bq__unode_t *n, const bson_iter_t *it, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "The $bit modifier is not compatible with a %s. You must pass in an "
                     "embedded document: {$bit: {field: {and/or/xor: #}}.",
                     bq_type_name(bson_iter_type(it)));
        return false;
    }
    bson_t own;
    bson_iter_t f;
    bson_init_static(&own, n->arg.value.v_doc.data, n->arg.value.v_doc.data_len);
    bson_iter_init(&f, &own);
    while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        char op = strcmp(k, "and") == 0 ? 'a'
                  : strcmp(k, "or") == 0 ? 'o'
                  : strcmp(k, "xor") == 0 ? 'x'
                                          : 0;
        if (!op) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "The $bit modifier only supports 'and', 'or', and 'xor', not '%s' "
                         "which is an unknown operator",
                         k);
            return false;
        }
        if (!BSON_ITER_HOLDS_INT32(&f) && !BSON_ITER_HOLDS_INT64(&f)) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "The $bit modifier field must be an Integer(32/64 bit); a '%s' is not "
                         "supported here",
                         bq_type_name(bson_iter_type(&f)));
            return false;
        }
        if (n->nbits == 3) {
            bq_error_set(err, BQ_ERR_BadValue, "Too many $bit operations");
            return false;
        }
        n->bit_op[n->nbits] = op;
        n->bit_val[n->nbits] = *bson_iter_value(&f);
        n->nbits++;
    }
    if (n->nbits == 0) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "You must pass in at least one bitwise operation. The format is: "
                     "{$bit: {field: {and/or/xor: #}}.");
        return false;
    }
    return true;
}

bool bq__upd_compile_array_op(bq__unode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    char vb[256];
    switch (n->op) {
    case BQ__U_PUSH:
    case BQ__U_ADDTOSET:
        return compile_push(n, arg, err);
    case BQ__U_POP: {
        double d;
        if (!bq_num_to_double(&n->arg, &d)) {
            bq__upd_fmt_value(&n->arg, vb, sizeof vb);
            bq_error_set(err, BQ_ERR_FailedToParse, "Expected a number in: %s: %s",
                         bson_iter_key(arg), vb);
            return false;
        }
        if (d != 1 && d != -1) {
            bq__upd_fmt_value(&n->arg, vb, sizeof vb);
            bq_error_set(err, BQ_ERR_FailedToParse, "$pop expects 1 or -1, found: %s", vb);
            return false;
        }
        n->position = d > 0 ? 1 : -1;
        return true;
    }
    case BQ__U_PULL:
        return compile_pull(n, err);
    case BQ__U_PULLALL:
        if (n->arg.value_type != BSON_TYPE_ARRAY) {
            bq_error_set(err, BQ_ERR_BadValue,
                         "$pullAll requires an array argument but was given a %s",
                         bq_type_name(n->arg.value_type));
            return false;
        }
        n->items = n->arg;
        return true;
    case BQ__U_BIT:
        return compile_bit(n, arg, err);
    default:
        return true;
    }
}

/* ---------------------------------------------------------------- apply helpers */

/* Values of the kids of an expanded array node (scratch documents kept alongside). */
typedef struct elems {
    bq__mnode_t **node;
    bson_value_t *val;
    bson_t *scratch;
    size_t n;
} elems_t;

static void elems_load(elems_t *e, bq__mnode_t *arr)
{
    e->n = arr->n;
    e->node = bson_malloc0(sizeof *e->node * (e->n + 1));
    e->val = bson_malloc0(sizeof *e->val * (e->n + 1));
    e->scratch = bson_malloc0(sizeof *e->scratch * (e->n + 1));
    for (size_t i = 0; i < e->n; i++) {
        e->node[i] = arr->kids[i];
        bq__mn_value(arr->kids[i], &e->scratch[i], &e->val[i]);
    }
}

static void elems_free(elems_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        bson_destroy(&e->scratch[i]);
    bson_free(e->node);
    bson_free(e->val);
    bson_free(e->scratch);
}

static int push_cmp(const bq__unode_t *n, const bson_value_t *a, const bson_value_t *b)
{
    if (n->sort_kind == 2)
        return bq_sort_compare_values(n->sort, a, b);
    int c = bq_value_compare(a, b);
    return n->sort_kind > 0 ? c : -c;
}

/* Stable merge sort of e[lo, hi) using tmp arrays. */
static void push_msort(const bq__unode_t *n, elems_t *e, elems_t *t, size_t lo, size_t hi)
{
    if (hi - lo < 2)
        return;
    size_t mid = lo + (hi - lo) / 2;
    push_msort(n, e, t, lo, mid);
    push_msort(n, e, t, mid, hi);
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi) {
        size_t src = push_cmp(n, &e->val[j], &e->val[i]) < 0 ? j++ : i++;
        t->node[k] = e->node[src];
        t->val[k] = e->val[src];
        k++;
    }
    for (; i < mid; i++, k++) {
        t->node[k] = e->node[i];
        t->val[k] = e->val[i];
    }
    for (; j < hi; j++, k++) {
        t->node[k] = e->node[j];
        t->val[k] = e->val[j];
    }
    memcpy(e->node + lo, t->node + lo, sizeof *e->node * (hi - lo));
    memcpy(e->val + lo, t->val + lo, sizeof *e->val * (hi - lo));
}

static void push_sort(const bq__unode_t *n, bq__mnode_t *arr)
{
    elems_t e, t;
    elems_load(&e, arr);
    t.node = bson_malloc0(sizeof *t.node * (e.n + 1));
    t.val = bson_malloc0(sizeof *t.val * (e.n + 1));
    push_msort(n, &e, &t, 0, e.n);
    memcpy(arr->kids, e.node, sizeof *arr->kids * e.n);
    bson_free(t.node);
    bson_free(t.val);
    elems_free(&e);
}

/* Calls cb for each value to add ($each elements, or the single argument). */
static size_t items_count(const bq__unode_t *n)
{
    if (!n->each)
        return 1;
    bson_t a;
    bson_init_static(&a, n->items.value.v_doc.data, n->items.value.v_doc.data_len);
    return bson_count_keys(&a);
}

static void items_get(const bq__unode_t *n, bson_value_t *out, size_t cap)
{
    if (!n->each) {
        out[0] = n->items;
        return;
    }
    bson_t a;
    bson_iter_t it;
    size_t i = 0;
    bson_init_static(&a, n->items.value.v_doc.data, n->items.value.v_doc.data_len);
    bson_iter_init(&it, &a);
    while (bson_iter_next(&it) && i < cap)
        out[i++] = *bson_iter_value(&it);
}

static const char *field_name(const bq__unode_t *n, const bq__mnode_t *m)
{
    return m->key ? m->key : n->name;
}

static bool apply_push(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m)
{
    (void)c;
    size_t cnt = items_count(n);
    bson_value_t *items = bson_malloc0(sizeof *items * (cnt + 1));
    items_get(n, items, cnt);
    size_t at = m->n;
    if (n->has_position) {
        if (n->position < 0) {
            int64_t p = (int64_t)m->n + n->position;
            at = p < 0 ? 0 : (size_t)p;
        } else if ((uint64_t)n->position < m->n) {
            at = (size_t)n->position;
        }
    }
    for (size_t i = 0; i < cnt; i++)
        bq__mn_insert(m, at + i, bq__mn_new(NULL, &items[i]));
    bson_free(items);
    if (n->sort_kind)
        push_sort(n, m);
    if (n->has_slice) {
        if (n->slice >= 0) {
            while ((int64_t)m->n > n->slice)
                bq__mn_free(bq__mn_detach(m, m->n - 1));
        } else {
            uint64_t keep = n->slice == INT64_MIN ? (uint64_t)INT64_MAX + 1
                                                  : (uint64_t)(-n->slice);
            while (m->n > keep)
                bq__mn_free(bq__mn_detach(m, 0));
        }
    }
    return true;
}

static bool apply_addtoset(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m)
{
    (void)c;
    size_t cnt = items_count(n);
    bson_value_t *items = bson_malloc0(sizeof *items * (cnt + 1));
    items_get(n, items, cnt);
    elems_t e;
    elems_load(&e, m);
    for (size_t i = 0; i < cnt; i++) {
        bool dup = false;
        for (size_t j = 0; j < e.n && !dup; j++)
            dup = bq_value_equal(&e.val[j], &items[i]);
        for (size_t j = 0; j < i && !dup; j++)
            dup = bq_value_equal(&items[j], &items[i]);
        if (!dup)
            bq__mn_insert(m, m->n, bq__mn_new(NULL, &items[i]));
    }
    elems_free(&e);
    bson_free(items);
    return true;
}

static bool pull_matches(const bq__unode_t *n, const bson_value_t *v)
{
    switch (n->pull_kind) {
    case 0:
        return bq_value_equal(v, &n->arg);
    case 1: {
        if (v->value_type != BSON_TYPE_DOCUMENT)
            return false;
        bson_t d;
        bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len);
        return bq_match_eval(n->match, &d);
    }
    default: {
        bson_t wrap = BSON_INITIALIZER;
        bson_append_value(&wrap, "v", 1, v);
        bool r = bq_match_eval(n->match, &wrap);
        bson_destroy(&wrap);
        return r;
    }
    }
}

static bool apply_pull(const bq__unode_t *n, bq__mnode_t *m)
{
    elems_t e;
    elems_load(&e, m);
    bool *drop = bson_malloc0(sizeof *drop * (e.n + 1));
    size_t cnt = n->op == BQ__U_PULLALL ? items_count(&(bq__unode_t){.each = true,
                                                                     .items = n->items})
                                        : 0;
    bson_value_t *items = NULL;
    if (n->op == BQ__U_PULLALL) {
        items = bson_malloc0(sizeof *items * (cnt + 1));
        items_get(&(bq__unode_t){.each = true, .items = n->items}, items, cnt);
    }
    for (size_t i = 0; i < e.n; i++) {
        if (n->op == BQ__U_PULL) {
            drop[i] = pull_matches(n, &e.val[i]);
        } else {
            for (size_t j = 0; j < cnt && !drop[i]; j++)
                drop[i] = bq_value_equal(&e.val[i], &items[j]);
        }
    }
    for (size_t i = e.n; i-- > 0;)
        if (drop[i])
            bq__mn_free(bq__mn_detach(m, i));
    bson_free(drop);
    bson_free(items);
    elems_free(&e);
    return true;
}

static bool apply_bit(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m, bool create)
{
    bson_value_t cur = {.value_type = BSON_TYPE_INT32};
    if (!create) {
        if (m->val.value_type != BSON_TYPE_INT32 && m->val.value_type != BSON_TYPE_INT64) {
            char idb[300];
            bq__upd_fmt_id(c, idb, sizeof idb);
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "Cannot apply $bit to a value of non-integral type.%s has the field "
                         "%s of non-integer type %s",
                         idb, field_name(n, m), bq_type_name(m->val.value_type));
            return false;
        }
        cur = m->val;
    }
    for (int i = 0; i < n->nbits; i++) {
        const bson_value_t *o = &n->bit_val[i];
        bool wide = cur.value_type == BSON_TYPE_INT64 || o->value_type == BSON_TYPE_INT64;
        int64_t a = cur.value_type == BSON_TYPE_INT64 ? cur.value.v_int64 : cur.value.v_int32;
        int64_t b = o->value_type == BSON_TYPE_INT64 ? o->value.v_int64 : o->value.v_int32;
        int64_t r = n->bit_op[i] == 'a' ? (a & b) : n->bit_op[i] == 'o' ? (a | b) : (a ^ b);
        if (wide) {
            cur.value_type = BSON_TYPE_INT64;
            cur.value.v_int64 = r;
        } else {
            cur.value_type = BSON_TYPE_INT32;
            cur.value.v_int32 = (int32_t)r;
        }
    }
    bq__mn_set(m, &cur);
    return true;
}

/* ---------------------------------------------------------------- apply */

bool bq__upd_apply_array_op(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m, bool create,
                            bool *noop)
{
    char idb[300];
    *noop = false;
    if (n->op == BQ__U_BIT)
        return apply_bit(c, n, m, create);
    if (create) {
        bq__mn_set(m, &(bson_value_t){.value_type = BSON_TYPE_ARRAY});
        m->expanded = true;
        return n->op == BQ__U_PUSH ? apply_push(c, n, m) : apply_addtoset(c, n, m);
    }
    if (m->val.value_type != BSON_TYPE_ARRAY) {
        const char *t = bq_type_name(m->val.value_type);
        switch (n->op) {
        case BQ__U_PUSH:
            bq__upd_fmt_id(c, idb, sizeof idb);
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "The field '%s' must be an array but is of type %s in document %s",
                         field_name(n, m), t, idb);
            break;
        case BQ__U_ADDTOSET:
            bq_error_set(c->err, BQ_ERR_BadValue,
                         "Cannot apply $addToSet to non-array field. Field named '%s' has "
                         "non-array type %s",
                         field_name(n, m), t);
            break;
        case BQ__U_POP:
            bq_error_set(c->err, BQ_ERR_TypeMismatch,
                         "Path '%s' contains an element of non-array type '%s'", n->path, t);
            break;
        default:
            bq_error_set(c->err, BQ_ERR_BadValue, "Cannot apply $pull to a non-array value");
            break;
        }
        return false;
    }
    if (c->had_id && strncmp(n->path, "_id", 3) == 0 &&
        (n->path[3] == '\0' || n->path[3] == '.')) {
        bq_error_set(c->err, BQ_ERR_ImmutableField,
                     "Performing an update on the path '%s' would modify the immutable field "
                     "'_id'",
                     n->path);
        return false;
    }
    bq__mn_expand(m);
    switch (n->op) {
    case BQ__U_PUSH:
        return apply_push(c, n, m);
    case BQ__U_ADDTOSET:
        return apply_addtoset(c, n, m);
    case BQ__U_POP:
        if (m->n == 0) {
            *noop = true;
            return true;
        }
        bq__mn_free(bq__mn_detach(m, n->position > 0 ? m->n - 1 : 0));
        return true;
    case BQ__U_PULL:
    case BQ__U_PULLALL:
        return apply_pull(n, m);
    default:
        return true;
    }
}
