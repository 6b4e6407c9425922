/*
 * agg_acc.c: the accumulators of MongoDB 7.0 (agg_acc.h): $sum $avg $min $max $first $last
 * $push $addToSet $count $stdDevPop $stdDevSamp $mergeObjects $top $bottom $topN $bottomN
 * $firstN $lastN $maxN $minN $median $percentile, and the folds the expression forms use.
 *
 * One compiled agg_acc_t per accumulator (its argument expressions and parsed options);
 * one agg_acc_state_t per group. Group states are incremental (a running sum, the best n
 * values so far); window states keep every input in a FIFO and recompute the result from
 * it, which makes removal trivial and the results identical to a group over the window.
 *
 * Numeric rules, as mongod's AccumulatorSum/Avg: integers are summed exactly in an int64,
 * doubles in a compensated (double-double) sum; the result has the widest type seen, an
 * int32 sum that overflows becomes an int64 and an int64 one a double; any Decimal128 makes
 * the result a Decimal128. Non-numeric inputs are ignored by $sum/$avg/$stdDev*.
 *
 * This file does not evaluate documents by itself beyond the argument expressions, and
 * knows nothing of stages.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg_acc.h"
#include "agg_expr_int.h"
#include "bq_sort.h"

enum kind {
    K_SUM, K_AVG, K_MIN, K_MAX, K_FIRST, K_LAST, K_PUSH, K_ADDTOSET, K_STDPOP, K_STDSAMP,
    K_MERGE, K_TOP, K_BOTTOM, K_TOPN, K_BOTTOMN, K_FIRSTN, K_LASTN, K_MAXN, K_MINN,
    K_MEDIAN, K_PERCENTILE, K_COUNT,
};

static const struct {
    const char *name;
    enum kind kind;
} kinds[] = {
    {"$sum", K_SUM},         {"$avg", K_AVG},           {"$min", K_MIN},
    {"$max", K_MAX},         {"$first", K_FIRST},       {"$last", K_LAST},
    {"$push", K_PUSH},       {"$addToSet", K_ADDTOSET}, {"$stdDevPop", K_STDPOP},
    {"$stdDevSamp", K_STDSAMP}, {"$mergeObjects", K_MERGE}, {"$top", K_TOP},
    {"$bottom", K_BOTTOM},   {"$topN", K_TOPN},         {"$bottomN", K_BOTTOMN},
    {"$firstN", K_FIRSTN},   {"$lastN", K_LASTN},       {"$maxN", K_MAXN},
    {"$minN", K_MINN},       {"$median", K_MEDIAN},     {"$percentile", K_PERCENTILE},
    {"$count", K_COUNT},
};

struct agg_acc {
    enum kind kind;
    const char *name;
    agg_expr_t *arg;    /* the input (output for $top...; NULL for $count: constant 1) */
    agg_expr_t *n;      /* N family, $topN/$bottomN */
    int nsort;          /* $top family: sort keys */
    agg_expr_t **sort_exprs;
    int *sort_dirs;
    double *ps;         /* $percentile / $median (one p = 0.5) */
    int nps;
};

/* ================================================================ value lists */

typedef struct vlist {
    bson_value_t *v;
    size_t n, cap, head; /* live entries are v[head .. n) */
} vlist_t;

static void vl_push(vlist_t *l, const bson_value_t *v)
{
    if (l->n == l->cap) {
        if (l->head > 0) { /* compact before growing */
            memmove(l->v, l->v + l->head, (l->n - l->head) * sizeof *l->v);
            l->n -= l->head;
            l->head = 0;
        }
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 8;
            l->v = realloc(l->v, l->cap * sizeof *l->v);
            if (!l->v)
                abort();
        }
    }
    agg_value_copy(v, &l->v[l->n++]);
}

static size_t vl_len(const vlist_t *l) { return l->n - l->head; }
static bson_value_t *vl_at(const vlist_t *l, size_t i) { return &l->v[l->head + i]; }

static void vl_insert(vlist_t *l, size_t pos, const bson_value_t *v)
{
    vl_push(l, v);
    bson_value_t tmp = l->v[l->n - 1];
    size_t abs = l->head + pos;
    memmove(&l->v[abs + 1], &l->v[abs], (l->n - 1 - abs) * sizeof *l->v);
    l->v[abs] = tmp;
}

static void vl_remove(vlist_t *l, size_t pos)
{
    size_t abs = l->head + pos;
    agg_value_cleanup(&l->v[abs]);
    if (pos == 0) {
        l->head++;
        return;
    }
    memmove(&l->v[abs], &l->v[abs + 1], (l->n - abs - 1) * sizeof *l->v);
    l->n--;
}

static void vl_clear(vlist_t *l)
{
    for (size_t i = l->head; i < l->n; i++)
        agg_value_cleanup(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Approximate bytes a value holds. */
static int64_t value_size(const bson_value_t *v)
{
    int64_t s = (int64_t)sizeof *v;
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        s += v->value.v_utf8.len;
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        s += v->value.v_doc.data_len;
        break;
    case BSON_TYPE_BINARY:
        s += v->value.v_binary.data_len;
        break;
    default:
        break;
    }
    return s;
}

static void mem_add(int64_t *mem, int64_t n)
{
    if (mem)
        *mem += n;
}

/* Builds an array value from values (EOD skipped). */
static void make_array(bson_value_t *out, bson_value_t *const *vals, size_t n)
{
    bson_t *arr = bson_new();
    uint32_t idx = 0;
    for (size_t i = 0; i < n; i++)
        agg__array_append(arr, &idx, vals[i]);
    agg__set_array_steal(out, arr);
}

/* ================================================================ sums */

typedef struct sum {
    int widest;          /* 0 int32, 1 int64, 2 double, 3 decimal */
    int64_t isum;        /* integers, exact while !ioverflow */
    bool ioverflow;      /* isum moved into the double sum */
    double hi, lo;       /* compensated sum of doubles (and of integers after overflow) */
    double plain;        /* plain sum: tells infinities/NaN apart */
    bool has_double;
    bson_decimal128_t dec;
    bool has_dec;
    int64_t count;       /* numeric inputs */
} sum_t;

static void dd_add(sum_t *s, double x)
{
    double t = s->hi + x;
    if (fabs(s->hi) >= fabs(x))
        s->lo += (s->hi - t) + x;
    else
        s->lo += (x - t) + s->hi;
    s->hi = t;
    s->plain += x;
}

static void sum_add(sum_t *s, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64: {
        int64_t x = v->value_type == BSON_TYPE_INT32 ? v->value.v_int32 : v->value.v_int64;
        int w = v->value_type == BSON_TYPE_INT32 ? 0 : 1;
        if (w > s->widest)
            s->widest = w;
        if (s->ioverflow) {
            dd_add(s, (double)x);
        } else {
            int64_t r;
            if (__builtin_add_overflow(s->isum, x, &r)) {
                s->ioverflow = true;
                dd_add(s, (double)s->isum);
                dd_add(s, (double)x);
                s->isum = 0;
            } else {
                s->isum = r;
            }
        }
        break;
    }
    case BSON_TYPE_DOUBLE:
        if (s->widest < 2)
            s->widest = 2;
        s->has_double = true;
        dd_add(s, v->value.v_double);
        break;
    case BSON_TYPE_DECIMAL128:
        s->widest = 3;
        s->dec = s->has_dec ? bq_dec_add(s->dec, v->value.v_decimal128) : v->value.v_decimal128;
        s->has_dec = true;
        break;
    default:
        return;
    }
    s->count++;
}

/* The non-decimal part as a double. */
static double sum_double(const sum_t *s)
{
    if (!isfinite(s->plain))
        return s->plain + (double)s->isum;
    if (s->ioverflow || s->has_double) {
        /* add the exact integer part into the compensated sum */
        sum_t t = *s;
        dd_add(&t, (double)s->isum);
        return t.hi + t.lo;
    }
    return (double)s->isum;
}

static bson_decimal128_t sum_decimal(const sum_t *s)
{
    bson_decimal128_t d = s->has_dec ? s->dec : bq_dec_from_int64(0);
    if (!s->ioverflow)
        d = bq_dec_add(d, bq_dec_from_int64(s->isum));
    if (s->has_double || s->ioverflow) {
        double x = s->ioverflow ? sum_double(s) : s->hi + s->lo;
        if (s->ioverflow || x != 0)
            d = bq_dec_add(d, bq_dec_from_double(x, 15));
    }
    return d;
}

static void sum_result(const sum_t *s, bson_value_t *out)
{
    switch (s->widest) {
    case 3:
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = sum_decimal(s);
        return;
    case 2:
        agg__set_double(out, sum_double(s));
        return;
    default:
        if (s->ioverflow)
            agg__set_double(out, sum_double(s));
        else if (s->widest == 0 && s->isum >= INT32_MIN && s->isum <= INT32_MAX)
            agg__set_int32(out, (int32_t)s->isum);
        else
            agg__set_int64(out, s->isum);
    }
}

static void avg_result(const sum_t *s, bson_value_t *out)
{
    if (s->count == 0) {
        agg__set_null(out);
    } else if (s->has_dec) {
        out->value_type = BSON_TYPE_DECIMAL128;
        out->value.v_decimal128 = bq_dec_div(sum_decimal(s), bq_dec_from_int64(s->count));
    } else {
        agg__set_double(out, sum_double(s) / (double)s->count);
    }
}

/* ================================================================ sort keys ($top...) */

/* The representative of one sort key component: arrays give their smallest (ascending)
 * or largest (descending) element, as a sort does; an empty array sorts before null. */
static int key_rank_cmp(const bson_value_t *a, const bson_value_t *b, int dir)
{
    bson_value_t na = *a, nb = *b;
    bool ea = false, eb = false;
    const bson_value_t *sides[2] = {a, b};
    bson_value_t *picks[2] = {&na, &nb};
    bool *empties[2] = {&ea, &eb};
    for (int s = 0; s < 2; s++) {
        const bson_value_t *v = sides[s];
        if (v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_UNDEFINED) {
            picks[s]->value_type = BSON_TYPE_NULL;
        } else if (v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t it;
            bool any = false;
            if (agg__iter_init(&it, v)) {
                while (bson_iter_next(&it)) {
                    const bson_value_t *e = bson_iter_value(&it);
                    int c = any ? agg__value_compare(e, picks[s]) : 0;
                    if (!any || (dir > 0 ? c < 0 : c > 0)) {
                        *picks[s] = *e; /* points into v, valid while v is */
                        any = true;
                    }
                }
            }
            if (!any)
                *empties[s] = true;
        }
    }
    if (ea || eb)
        return ea && eb ? 0 : ea ? -1 : 1;
    return agg__value_compare(&na, &nb);
}

/* Inputs of the $top family are arrays [output, key0, key1, ...]. */
static int top_cmp(const agg_acc_t *a, const bson_value_t *x, const bson_value_t *y)
{
    bson_iter_t ix, iy;
    agg__iter_init(&ix, x);
    agg__iter_init(&iy, y);
    bson_iter_next(&ix);
    bson_iter_next(&iy);
    for (int i = 0; i < a->nsort; i++) {
        bson_value_t kx, ky;
        memset(&kx, 0, sizeof kx);
        memset(&ky, 0, sizeof ky);
        if (bson_iter_next(&ix))
            kx = *bson_iter_value(&ix);
        if (bson_iter_next(&iy))
            ky = *bson_iter_value(&iy);
        int c = key_rank_cmp(&kx, &ky, a->sort_dirs[i]);
        if (c)
            return c * a->sort_dirs[i];
    }
    return 0;
}

static void top_output(const bson_value_t *pair, bson_value_t *out)
{
    bson_iter_t it;
    memset(out, 0, sizeof *out);
    if (agg__iter_init(&it, pair) && bson_iter_next(&it))
        agg_value_copy(bson_iter_value(&it), out);
}

/* ================================================================ states */

struct agg_acc_state {
    const agg_acc_t *a;
    bool window;
    vlist_t win;        /* window: every input still in the window */
    sum_t sum;          /* $sum $avg $count */
    double mean, m2;    /* $stdDev*: Welford */
    int64_t cnt;
    bson_value_t cur;   /* $min $max $first $last */
    bool has;
    vlist_t list;       /* $push $addToSet N-family $top-family $mergeObjects(pairs) */
    double *nums;       /* $median $percentile */
    size_t nnums, capnums;
    int64_t n;          /* N-family bound */
};

static bool eval_n(const agg_acc_t *a, agg_env_t *env, int64_t *n, bq_error_t *err)
{
    bson_value_t v;
    bool ok = agg_expr_eval(a->n, env, &v, err);
    if (ok) {
        ok = false;
        double d;
        if (!bq_num_is_number(&v)) {
            bq_error_set(err, 5787902, "Value for 'n' must be of integral type, but found %s",
                         agg__type_name(&v));
        } else if (!agg__as_int64_exact(&v, n)) {
            bq_num_to_double(&v, &d);
            bq_error_set(err, 5787903, "Value for 'n' must be of integral type, but found %g",
                         d);
        } else if (*n <= 0) {
            bq_error_set(err, 5787908, "'n' must be greater than 0, found %lld", (long long)*n);
        } else {
            ok = true;
        }
    }
    agg_value_cleanup(&v);
    return ok;
}

static agg_acc_state_t *state_new(const agg_acc_t *a, agg_env_t *env, bool window,
                                  bq_error_t *err)
{
    agg_acc_state_t *st = calloc(1, sizeof *st);
    if (!st)
        abort();
    st->a = a;
    st->window = window;
    switch (a->kind) {
    case K_TOP:
    case K_BOTTOM:
        st->n = 1;
        break;
    case K_TOPN:
    case K_BOTTOMN:
    case K_FIRSTN:
    case K_LASTN:
    case K_MAXN:
    case K_MINN:
        if (!eval_n(a, env, &st->n, err)) {
            free(st);
            return NULL;
        }
        break;
    default:
        break;
    }
    return st;
}

agg_acc_state_t *agg_acc_state_new(const agg_acc_t *a, agg_env_t *env, bq_error_t *err)
{
    return state_new(a, env, false, err);
}

agg_acc_state_t *agg_acc_state_new_window(const agg_acc_t *a, agg_env_t *env,
                                          bq_error_t *err)
{
    return state_new(a, env, true, err);
}

/* Resets the incremental part of a state (keeps a, window, n). */
static void state_clear(agg_acc_state_t *st)
{
    memset(&st->sum, 0, sizeof st->sum);
    st->mean = st->m2 = 0;
    st->cnt = 0;
    agg_value_cleanup(&st->cur);
    st->has = false;
    vl_clear(&st->list);
    free(st->nums);
    st->nums = NULL;
    st->nnums = st->capnums = 0;
}

void agg_acc_state_destroy(agg_acc_state_t *st)
{
    if (!st)
        return;
    state_clear(st);
    vl_clear(&st->win);
    free(st);
}

/* Finds key k in the $mergeObjects pair list (stored as single-field documents). */
static bool merge_add(agg_acc_state_t *st, const bson_value_t *in, int64_t *mem,
                      bq_error_t *err)
{
    if (agg__nullish(in))
        return true;
    if (in->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 40400,
                     "$mergeObjects requires object inputs, but input %s is of type %s",
                     in->value_type == BSON_TYPE_UTF8 ? "a string" : "a value",
                     agg__type_name(in));
        return false;
    }
    /* cur holds the merged document so far */
    bson_t *merged = bson_new();
    bson_iter_t it, nit;
    bson_t incoming;
    bson_init_static(&incoming, in->value.v_doc.data, in->value.v_doc.data_len);
    if (st->has) {
        agg__iter_init(&it, &st->cur);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (bson_iter_init_find(&nit, &incoming, k))
                bson_append_value(merged, k, -1, bson_iter_value(&nit));
            else
                bson_append_value(merged, k, -1, bson_iter_value(&it));
        }
    }
    bson_t old;
    if (st->has)
        bson_init_static(&old, st->cur.value.v_doc.data, st->cur.value.v_doc.data_len);
    bson_iter_init(&it, &incoming);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (st->has && bson_iter_init_find(&nit, &old, k))
            continue;
        bson_append_value(merged, k, -1, bson_iter_value(&it));
    }
    int64_t before = st->has ? value_size(&st->cur) : 0;
    agg_value_cleanup(&st->cur);
    agg__set_doc_steal(&st->cur, merged);
    st->has = true;
    mem_add(mem, value_size(&st->cur) - before);
    return true;
}

/* Inserts into the sorted bounded list of the $top family and $minN/$maxN. cmp(x, y) < 0
 * means x ranks before y in the result. "before" keeps the n best; ties keep the first
 * seen. For $bottom (keep_last) the n LAST of the order are kept. */
static void bounded_insert(agg_acc_state_t *st, const bson_value_t *in, int64_t *mem,
                           int (*cmp)(const agg_acc_t *, const bson_value_t *,
                                      const bson_value_t *),
                           bool keep_last)
{
    vlist_t *l = &st->list;
    size_t len = vl_len(l);
    if ((int64_t)len == st->n) {
        if (!keep_last) {
            if (cmp(st->a, in, vl_at(l, len - 1)) >= 0)
                return;
            mem_add(mem, -value_size(vl_at(l, len - 1)));
            vl_remove(l, len - 1);
        } else {
            if (cmp(st->a, in, vl_at(l, 0)) <= 0)
                return;
            mem_add(mem, -value_size(vl_at(l, 0)));
            vl_remove(l, 0);
        }
        len--;
    }
    /* stable: after all equal elements */
    size_t lo = 0, hi = len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp(st->a, in, vl_at(l, mid)) >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    vl_insert(l, lo, in);
    mem_add(mem, value_size(in));
}

static int cmp_min(const agg_acc_t *a, const bson_value_t *x, const bson_value_t *y)
{
    (void)a;
    return agg__value_compare(x, y);
}

static int cmp_max(const agg_acc_t *a, const bson_value_t *x, const bson_value_t *y)
{
    (void)a;
    return -agg__value_compare(x, y);
}

static bool state_add(agg_acc_state_t *st, const bson_value_t *in, int64_t *mem,
                      bq_error_t *err)
{
    const agg_acc_t *a = st->a;
    switch (a->kind) {
    case K_SUM:
    case K_AVG:
    case K_COUNT:
        sum_add(&st->sum, in);
        return true;
    case K_STDPOP:
    case K_STDSAMP: {
        double x;
        if (!bq_num_is_number(in) || !bq_num_to_double(in, &x))
            return true;
        st->cnt++;
        double delta = x - st->mean;
        st->mean += delta / (double)st->cnt;
        st->m2 += delta * (x - st->mean);
        return true;
    }
    case K_MIN:
    case K_MAX:
        if (agg__nullish(in))
            return true;
        if (st->has) {
            int c = agg__value_compare(in, &st->cur);
            if (a->kind == K_MIN ? c >= 0 : c <= 0)
                return true;
            mem_add(mem, -value_size(&st->cur));
            agg_value_cleanup(&st->cur);
        }
        agg_value_copy(in, &st->cur);
        st->has = true;
        mem_add(mem, value_size(in));
        return true;
    case K_FIRST:
    case K_LAST:
        if (st->has) {
            if (a->kind == K_FIRST)
                return true;
            mem_add(mem, -value_size(&st->cur));
            agg_value_cleanup(&st->cur);
        }
        if (in->value_type == BSON_TYPE_EOD)
            agg__set_null(&st->cur);
        else
            agg_value_copy(in, &st->cur);
        st->has = true;
        mem_add(mem, value_size(&st->cur));
        return true;
    case K_PUSH:
        if (in->value_type != BSON_TYPE_EOD) {
            vl_push(&st->list, in);
            mem_add(mem, value_size(in));
        }
        return true;
    case K_ADDTOSET:
        if (in->value_type == BSON_TYPE_EOD)
            return true;
        for (size_t i = 0; i < vl_len(&st->list); i++)
            if (agg__value_compare(vl_at(&st->list, i), in) == 0)
                return true;
        vl_push(&st->list, in);
        mem_add(mem, value_size(in));
        return true;
    case K_MERGE:
        return merge_add(st, in, mem, err);
    case K_FIRSTN:
    case K_LASTN: {
        bson_value_t nul = {.value_type = BSON_TYPE_NULL};
        const bson_value_t *v = in->value_type == BSON_TYPE_EOD ? &nul : in;
        if ((int64_t)vl_len(&st->list) == st->n) {
            if (a->kind == K_FIRSTN)
                return true;
            mem_add(mem, -value_size(vl_at(&st->list, 0)));
            vl_remove(&st->list, 0);
        }
        vl_push(&st->list, v);
        mem_add(mem, value_size(v));
        return true;
    }
    case K_MINN:
    case K_MAXN:
        if (agg__nullish(in))
            return true;
        bounded_insert(st, in, mem, a->kind == K_MINN ? cmp_min : cmp_max, false);
        return true;
    case K_TOP:
    case K_TOPN:
        bounded_insert(st, in, mem, top_cmp, false);
        return true;
    case K_BOTTOM:
    case K_BOTTOMN:
        bounded_insert(st, in, mem, top_cmp, true);
        return true;
    case K_MEDIAN:
    case K_PERCENTILE: {
        double x;
        if (!bq_num_is_number(in) || !bq_num_to_double(in, &x))
            return true;
        if (st->nnums == st->capnums) {
            st->capnums = st->capnums ? st->capnums * 2 : 16;
            st->nums = realloc(st->nums, st->capnums * sizeof *st->nums);
            if (!st->nums)
                abort();
        }
        st->nums[st->nnums++] = x;
        mem_add(mem, (int64_t)sizeof x);
        return true;
    }
    }
    return true;
}

bool agg_acc_add(const agg_acc_t *a, agg_acc_state_t *st, const bson_value_t *in,
                 int64_t *mem, bq_error_t *err)
{
    (void)a;
    if (st->window) {
        /* validate now so the error comes from the add that caused it */
        if (st->a->kind == K_MERGE && !agg__nullish(in) &&
            in->value_type != BSON_TYPE_DOCUMENT)
            return merge_add(st, in, NULL, err);
        vl_push(&st->win, in);
        mem_add(mem, value_size(in));
        return true;
    }
    return state_add(st, in, mem, err);
}

bool agg_acc_remove(const agg_acc_t *a, agg_acc_state_t *st, const bson_value_t *in,
                    int64_t *mem, bq_error_t *err)
{
    (void)a;
    (void)in;
    if (!st->window || vl_len(&st->win) == 0) {
        bq_error_set(err, BQ_ERR_InternalError, "%s: remove without a matching add",
                     st->a->name);
        return false;
    }
    mem_add(mem, -value_size(vl_at(&st->win, 0)));
    vl_remove(&st->win, 0);
    return true;
}

/* ------------------------------------------------------------ percentiles */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    if (isnan(a) || isnan(b))
        return isnan(a) ? (isnan(b) ? 0 : -1) : 1;
    return a < b ? -1 : a > b;
}

/* Nearest rank, as mongod's discrete percentile (and its t-digest on small inputs). */
static double pct_of_sorted(const double *v, size_t n, double p)
{
    if (p >= 1.0)
        return v[n - 1];
    double r = ceil(p * (double)n) - 1;
    size_t i = r < 0 ? 0 : (size_t)r;
    return v[i < n ? i : n - 1];
}

static void pct_result(double *nums, size_t n, const double *ps, int nps, bool single,
                       bson_value_t *out)
{
    if (n)
        qsort(nums, n, sizeof *nums, cmp_double);
    if (single) {
        if (n)
            agg__set_double(out, pct_of_sorted(nums, n, ps[0]));
        else
            agg__set_null(out);
        return;
    }
    bson_t *arr = bson_new();
    char key[16];
    for (int i = 0; i < nps; i++) {
        const char *k;
        size_t kl = bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        if (n)
            bson_append_double(arr, k, (int)kl, pct_of_sorted(nums, n, ps[i]));
        else
            bson_append_null(arr, k, (int)kl);
    }
    agg__set_array_steal(out, arr);
}

static bool state_result(const agg_acc_state_t *st, bson_value_t *out, bq_error_t *err)
{
    (void)err;
    const agg_acc_t *a = st->a;
    memset(out, 0, sizeof *out);
    switch (a->kind) {
    case K_SUM:
    case K_COUNT:
        sum_result(&st->sum, out);
        return true;
    case K_AVG:
        avg_result(&st->sum, out);
        return true;
    case K_STDPOP:
        if (st->cnt == 0)
            agg__set_null(out);
        else
            agg__set_double(out, sqrt(st->m2 / (double)st->cnt));
        return true;
    case K_STDSAMP:
        if (st->cnt < 2)
            agg__set_null(out);
        else
            agg__set_double(out, sqrt(st->m2 / (double)(st->cnt - 1)));
        return true;
    case K_MIN:
    case K_MAX:
    case K_FIRST:
    case K_LAST:
        if (st->has)
            agg_value_copy(&st->cur, out);
        else
            agg__set_null(out);
        return true;
    case K_MERGE:
        if (st->has)
            agg_value_copy(&st->cur, out);
        else
            agg__set_doc_steal(out, bson_new());
        return true;
    case K_PUSH:
    case K_ADDTOSET:
    case K_FIRSTN:
    case K_LASTN:
    case K_MINN:
    case K_MAXN: {
        size_t n = vl_len(&st->list);
        bson_value_t **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!ptrs)
            abort();
        for (size_t i = 0; i < n; i++)
            ptrs[i] = vl_at(&st->list, i);
        make_array(out, ptrs, n);
        free(ptrs);
        return true;
    }
    case K_TOP:
    case K_BOTTOM:
        if (vl_len(&st->list))
            top_output(vl_at(&st->list, 0), out);
        if (out->value_type == BSON_TYPE_EOD)
            agg__set_null(out);
        return true;
    case K_TOPN:
    case K_BOTTOMN: {
        bson_t *arr = bson_new();
        uint32_t idx = 0;
        for (size_t i = 0; i < vl_len(&st->list); i++) {
            bson_value_t o;
            top_output(vl_at(&st->list, i), &o);
            if (o.value_type == BSON_TYPE_EOD)
                agg__set_null(&o);
            agg__array_append(arr, &idx, &o);
            agg_value_cleanup(&o);
        }
        agg__set_array_steal(out, arr);
        return true;
    }
    case K_MEDIAN:
    case K_PERCENTILE: {
        double *copy = malloc((st->nnums ? st->nnums : 1) * sizeof *copy);
        if (!copy)
            abort();
        if (st->nnums) /* nums is NULL before the first value */
            memcpy(copy, st->nums, st->nnums * sizeof *copy);
        pct_result(copy, st->nnums, a->ps, a->nps, a->kind == K_MEDIAN, out);
        free(copy);
        return true;
    }
    }
    return true;
}

bool agg_acc_result(const agg_acc_t *a, const agg_acc_state_t *st, bson_value_t *out,
                    bq_error_t *err)
{
    (void)a;
    if (!st->window)
        return state_result(st, out, err);
    /* recompute from the window's inputs */
    agg_acc_state_t tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.a = st->a;
    tmp.n = st->n;
    bool ok = true;
    for (size_t i = 0; ok && i < vl_len(&st->win); i++)
        ok = state_add(&tmp, vl_at(&st->win, i), NULL, err);
    if (ok)
        ok = state_result(&tmp, out, err);
    else
        memset(out, 0, sizeof *out);
    state_clear(&tmp);
    return ok;
}

/* ================================================================ inputs */

bool agg_acc_input(const agg_acc_t *a, agg_env_t *env, bson_value_t *in, bq_error_t *err)
{
    if (a->kind == K_COUNT) {
        memset(in, 0, sizeof *in);
        agg__set_int32(in, 1);
        return true;
    }
    if (a->kind != K_TOP && a->kind != K_BOTTOM && a->kind != K_TOPN &&
        a->kind != K_BOTTOMN)
        return agg_expr_eval(a->arg, env, in, err);
    /* [output, key0, key1, ...]; a missing output is null */
    memset(in, 0, sizeof *in);
    bson_t *arr = bson_new();
    bson_value_t v;
    bool ok = agg_expr_eval(a->arg, env, &v, err);
    if (ok) {
        if (v.value_type == BSON_TYPE_EOD)
            agg__set_null(&v);
        bson_append_value(arr, "0", 1, &v);
    }
    agg_value_cleanup(&v);
    char key[16];
    for (int i = 0; ok && i < a->nsort; i++) {
        ok = agg_expr_eval(a->sort_exprs[i], env, &v, err);
        if (ok) {
            const char *k;
            size_t kl = bson_uint32_to_string((uint32_t)i + 1, &k, key, sizeof key);
            if (v.value_type == BSON_TYPE_EOD)
                agg__set_null(&v);
            bson_append_value(arr, k, (int)kl, &v);
        }
        agg_value_cleanup(&v);
    }
    if (!ok) {
        bson_destroy(arr);
        return false;
    }
    agg__set_array_steal(in, arr);
    return true;
}

bool agg_acc_add_doc(const agg_acc_t *a, agg_acc_state_t *st, agg_env_t *env, int64_t *mem,
                     bq_error_t *err)
{
    bson_value_t in;
    bool ok = agg_acc_input(a, env, &in, err) && agg_acc_add(a, st, &in, mem, err);
    agg_value_cleanup(&in);
    return ok;
}

/* ================================================================ compiling */

bool agg_acc_exists(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kinds[i].name, name))
            return true;
    return false;
}

const char *agg_acc_name(const agg_acc_t *a)
{
    return a->name;
}

void agg_acc_destroy(agg_acc_t *a)
{
    if (!a)
        return;
    agg_expr_destroy(a->arg);
    agg_expr_destroy(a->n);
    for (int i = 0; i < a->nsort; i++)
        agg_expr_destroy(a->sort_exprs[i]);
    free(a->sort_exprs);
    free(a->sort_dirs);
    free(a->ps);
    free(a);
}

/* {input, n} of the N family. */
static bool compile_n_family(agg_acc_t *a, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    bool minmax = a->kind == K_MINN || a->kind == K_MAXN;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, minmax ? 5787900 : 5787801,
                     "specification must be an object; found %s", agg__type_name(arg));
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        agg_expr_t **slot = !strcmp(k, "input") ? &a->arg : !strcmp(k, "n") ? &a->n : NULL;
        if (!slot) {
            bq_error_set(err, 5787901, "Unknown argument for 'n' operator: %s", k);
            return false;
        }
        agg_expr_destroy(*slot);
        if (!(*slot = agg_expr_compile(bson_iter_value(&it), scope, err)))
            return false;
    }
    if (!a->n) {
        bq_error_set(err, 5787906, "Missing value for 'n'");
        return false;
    }
    if (!a->arg) {
        bq_error_set(err, 5787907, "Missing value for 'input'");
        return false;
    }
    return true;
}

/* {output, sortBy[, n]} of the $top family. */
static bool compile_top(agg_acc_t *a, const bson_value_t *arg, agg_scope_t *scope,
                        bq_error_t *err)
{
    bool single = a->kind == K_TOP || a->kind == K_BOTTOM;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, 5788001, "specification must be an object; found %s",
                     agg__type_name(arg));
        return false;
    }
    bson_iter_t it;
    bson_value_t sort_by_v; /* a copy: iterator values change as it advances */
    const bson_value_t *sort_by = NULL;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!single && !strcmp(k, "n")) {
            agg_expr_destroy(a->n);
            if (!(a->n = agg_expr_compile(bson_iter_value(&it), scope, err)))
                return false;
        } else if (!strcmp(k, "output")) {
            agg_expr_destroy(a->arg);
            if (!(a->arg = agg_expr_compile(bson_iter_value(&it), scope, err)))
                return false;
        } else if (!strcmp(k, "sortBy")) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bq_error_set(err, 10065, "invalid parameter: expected an object (sortBy)");
                return false;
            }
            sort_by_v = *bson_iter_value(&it);
            sort_by = &sort_by_v;
        } else {
            bq_error_set(err, 5788002, "Unknown argument to %s '%s'", a->name, k);
            return false;
        }
    }
    if (!single && !a->n) {
        bq_error_set(err, 5788003, "Missing value for 'n'");
        return false;
    }
    if (!a->arg) {
        bq_error_set(err, 5788004, "Missing value for 'output'");
        return false;
    }
    if (!sort_by) {
        bq_error_set(err, 5788005, "Missing value for 'sortBy'");
        return false;
    }
    bson_t sdoc;
    bson_init_static(&sdoc, sort_by->value.v_doc.data, sort_by->value.v_doc.data_len);
    bq_sort_t *check = bq_sort_compile(&sdoc, err);
    if (!check)
        return false;
    bq_sort_destroy(check);
    int n = (int)bson_count_keys(&sdoc);
    if (n == 0) {
        bq_error_set(err, 15976, "$sort stage must have at least one sort key");
        return false;
    }
    a->sort_exprs = calloc((size_t)n, sizeof *a->sort_exprs);
    a->sort_dirs = calloc((size_t)n, sizeof *a->sort_dirs);
    if (!a->sort_exprs || !a->sort_dirs)
        abort();
    bson_iter_init(&it, &sdoc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_NotImplemented, "%s: $meta sort keys are not supported",
                         a->name);
            return false;
        }
        double d = 0;
        bq_num_to_double(bson_iter_value(&it), &d);
        size_t kl = strlen(k);
        char *path = malloc(kl + 2);
        if (!path)
            abort();
        path[0] = '$';
        memcpy(path + 1, k, kl + 1);
        agg_expr_t *e = NULL;
        bool ok = agg__field_path_parse(path, kl + 1, scope, &e, err);
        free(path);
        if (!ok)
            return false;
        a->sort_dirs[a->nsort] = d < 0 ? -1 : 1;
        a->sort_exprs[a->nsort++] = e;
    }
    return true;
}

/* The IDL-style errors of {$percentile: {input, p, method}} / {$median: {input, method}}. */
static bool compile_quantile(agg_acc_t *a, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    bool median = a->kind == K_MEDIAN;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, median ? 7436100 : 7429703,
                     "specification must be an object; found %s", agg__type_name(arg));
        return false;
    }
    bson_iter_t it;
    bson_value_t p_v, method_v; /* copies: iterator values change as it advances */
    const bson_value_t *p = NULL, *method = NULL;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "input")) {
            agg_expr_destroy(a->arg);
            if (!(a->arg = agg_expr_compile(bson_iter_value(&it), scope, err)))
                return false;
        } else if (!median && !strcmp(k, "p")) {
            p_v = *bson_iter_value(&it);
            p = &p_v;
        } else if (!strcmp(k, "method")) {
            method_v = *bson_iter_value(&it);
            method = &method_v;
        } else {
            bq_error_set(err, 40415, "BSON field '%s.%s' is an unknown field.", a->name, k);
            return false;
        }
    }
    const char *missing = !a->arg ? "input" : (!median && !p) ? "p" : !method ? "method" : NULL;
    if (missing) {
        bq_error_set(err, 40414, "BSON field '%s.%s' is missing but a required field", a->name,
                     missing);
        return false;
    }
    if (method->value_type != BSON_TYPE_UTF8) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field '%s.method' is the wrong type '%s', expected type 'string'",
                     a->name, agg__type_name(method));
        return false;
    }
    if (strcmp(method->value.v_utf8.str, "approximate") != 0) {
        bq_error_set(err, BQ_ERR_BadValue,
                     "Currently only 'approximate' can be used as percentile 'method'.");
        return false;
    }
    if (median) {
        a->ps = malloc(sizeof *a->ps);
        if (!a->ps)
            abort();
        a->ps[0] = 0.5;
        a->nps = 1;
        return true;
    }
    agg_expr_t *pe = agg_expr_compile(p, scope, err);
    if (!pe)
        return false;
    const bson_value_t *pv = agg_expr_constant(pe);
    bool ok = false;
    if (!pv) {
        bq_error_set(err, 7750300,
                     "The $percentile 'p' field must be an array of constant values, but "
                     "found value: %s.",
                     agg__type_name(p));
    } else if (pv->value_type != BSON_TYPE_ARRAY || agg__array_len(pv) == 0) {
        bq_error_set(err, 7750301,
                     "The $percentile 'p' field must be an array of numbers from [0.0, 1.0], "
                     "but found: %s",
                     agg__type_name(pv));
    } else {
        uint32_t n = agg__array_len(pv);
        a->ps = calloc(n, sizeof *a->ps);
        if (!a->ps)
            abort();
        bson_iter_t pit;
        agg__iter_init(&pit, pv);
        ok = true;
        while (ok && bson_iter_next(&pit)) {
            const bson_value_t *e = bson_iter_value(&pit);
            double d;
            if (!bq_num_is_number(e) || !bq_num_to_double(e, &d)) {
                bq_error_set(err, 7750302,
                             "The $percentile 'p' field must be an array of numbers from "
                             "[0.0, 1.0], but found: %s",
                             agg__type_name(e));
                ok = false;
            } else if (!(d >= 0 && d <= 1)) {
                bq_error_set(err, 7750303,
                             "The $percentile 'p' field must be an array of numbers from "
                             "[0.0, 1.0], but found: %g",
                             d);
                ok = false;
            } else {
                a->ps[a->nps++] = d;
            }
        }
    }
    agg_expr_destroy(pe);
    return ok;
}

agg_acc_t *agg_acc_compile(const char *name, const bson_value_t *arg, agg_scope_t *scope,
                           enum agg_acc_ctx ctx, bq_error_t *err)
{
    (void)ctx;
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kinds[i].name, name))
            break;
    if (i == sizeof kinds / sizeof *kinds) {
        bq_error_set(err, 15952, "unknown group operator '%s'", name);
        return NULL;
    }
    agg_acc_t *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    a->kind = kinds[i].kind;
    a->name = kinds[i].name;
    bool ok;
    switch (a->kind) {
    case K_COUNT:
        ok = arg->value_type == BSON_TYPE_DOCUMENT && agg__array_len(arg) == 0;
        if (!ok)
            bq_error_set(err, BQ_ERR_TypeMismatch, "$count takes no arguments, i.e. $count:{}");
        break;
    case K_FIRSTN:
    case K_LASTN:
    case K_MINN:
    case K_MAXN:
        ok = compile_n_family(a, arg, scope, err);
        break;
    case K_TOP:
    case K_BOTTOM:
    case K_TOPN:
    case K_BOTTOMN:
        ok = compile_top(a, arg, scope, err);
        break;
    case K_MEDIAN:
    case K_PERCENTILE:
        ok = compile_quantile(a, arg, scope, err);
        break;
    default:
        ok = (a->arg = agg_expr_compile(arg, scope, err)) != NULL;
        break;
    }
    if (!ok) {
        agg_acc_destroy(a);
        return NULL;
    }
    return a;
}

agg_acc_t *agg_acc_compile_field(const char *field, const bson_value_t *spec,
                                 agg_scope_t *scope, bq_error_t *err)
{
    bson_iter_t it;
    if (spec->value_type != BSON_TYPE_DOCUMENT || !agg__iter_init(&it, spec) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        bq_error_set(err, 40234, "The field '%s' must be an accumulator object", field);
        return NULL;
    }
    if (strchr(field, '.')) {
        bq_error_set(err, 40235, "The field name '%s' cannot contain '.'", field);
        return NULL;
    }
    if (field[0] == '$') {
        bq_error_set(err, 40236, "The field name '%s' cannot be an operator name", field);
        return NULL;
    }
    if (agg__array_len(spec) != 1) {
        bq_error_set(err, 40238, "The field '%s' must specify one accumulator", field);
        return NULL;
    }
    const char *name = bson_iter_key(&it);
    if (!agg_acc_exists(name)) {
        bq_error_set(err, 15952, "unknown group operator '%s'", name);
        return NULL;
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bq_error_set(err, 40237, "The %s accumulator is a unary operator", name);
        return NULL;
    }
    return agg_acc_compile(name, bson_iter_value(&it), scope, AGG_ACC_GROUP, err);
}

/* ================================================================ expression forms */

bool agg_acc_fold(const char *name, const bson_value_t *vals, size_t n, bson_value_t *out,
                  bq_error_t *err)
{
    agg_acc_t a;
    memset(&a, 0, sizeof a);
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kinds[i].name, name))
            break;
    memset(out, 0, sizeof *out);
    if (i == sizeof kinds / sizeof *kinds) {
        bq_error_set(err, BQ_ERR_InternalError, "no accumulator %s", name);
        return false;
    }
    a.kind = kinds[i].kind;
    a.name = kinds[i].name;
    agg_acc_state_t st;
    memset(&st, 0, sizeof st);
    st.a = &a;
    bool ok = true;
    for (size_t j = 0; ok && j < n; j++)
        ok = state_add(&st, &vals[j], NULL, err);
    if (ok)
        ok = state_result(&st, out, err);
    state_clear(&st);
    return ok;
}

bool agg_acc_quantile_value(const agg_acc_t *a, const bson_value_t *input, bson_value_t *out,
                            bq_error_t *err)
{
    (void)err;
    memset(out, 0, sizeof *out);
    size_t n = 0;
    double one;
    double *nums = &one;
    if (bq_num_is_number(input)) {
        bq_num_to_double(input, &one);
        n = 1;
    } else if (input->value_type == BSON_TYPE_ARRAY) {
        uint32_t len = agg__array_len(input);
        nums = malloc((len ? len : 1) * sizeof *nums);
        if (!nums)
            abort();
        bson_iter_t it;
        agg__iter_init(&it, input);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            if (bq_num_is_number(e) && bq_num_to_double(e, &nums[n]))
                n++;
        }
    }
    pct_result(nums, n, a->ps, a->nps, a->kind == K_MEDIAN, out);
    if (nums != &one)
        free(nums);
    return true;
}
