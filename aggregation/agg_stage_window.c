/*
 * agg_stage_window.c: the window family of pipeline stages (see agg_pipeline.h), MongoDB
 * 7.0 semantics:
 *
 *   $setWindowFields  {partitionBy, sortBy, output: {f: {<function>: arg, window: {...}}}}
 *   $fill             {partitionBy | partitionByFields, sortBy, output: {f: {value} |
 *                     {method: "locf" | "linear"}}}: rewritten, as mongod does, into an
 *                     $addFields of {$ifNull: ["$f", value]} and a $setWindowFields of
 *                     $locf / $linearFill, parsed as a sub-pipeline
 *   $densify          agg_window_densify.c
 *
 * $setWindowFields is blocking: it reads its whole input, sorts it by (partition key,
 * sortBy) as mongod's desugared $sort would, and computes every output field one partition
 * at a time. What it holds is charged to the run's memory limit (agg_mem_charge, 292).
 *
 * Window functions: the accumulators of agg_acc.c ($sum ... $percentile) over a window
 * ({documents: [lo, hi]} or {range: [lo, hi], unit}; the whole partition by default) kept
 * as a sliding agg_acc window state (windows only move forward: adds at the top, removals
 * of the oldest); and the functions only windows have, computed here: $covariancePop/Samp,
 * $rank, $denseRank, $documentNumber, $shift, $derivative, $integral, $expMovingAvg,
 * $locf, $linearFill.
 *
 * Range windows over a descending sortBy are positional as in mongod: [-1, 0] still means
 * "from one unit before the current document in sort order up to it", so the bounds are
 * negated against the key values.
 *
 * Errors are mongod's: 9 FailedToParse for most spec errors, 5339900 lower bound above
 * upper, 5339901 document bounds without sortBy, 5339902 range bounds without a single
 * sortBy field, 5371601 / 5371602 rank-style functions with a window / without a single
 * sortBy field, 605001 $linearFill without a single sortBy field, 14 partitionBy to an
 * array, 5429413 / 5429513 a range window over a non-number / non-date key, 5624900 /
 * 5624901 $derivative unit and key type disagree, 5423901 / 5423902 the same for
 * $integral, 6050106 repeated sort values for $linearFill.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg_acc.h"
#include "agg_expr_int.h"
#include "agg_pipeline.h"
#include "agg_window_int.h"
#include "bq_sort.h"

/* ================================================================ shared helpers */

static const struct {
    const char *name;
    int64_t ms; /* 0: calendar unit */
    int months;
} units[] = {
    {"millisecond", 1, 0},       {"second", 1000, 0},         {"minute", 60000, 0},
    {"hour", 3600000, 0},        {"day", 86400000, 0},        {"week", 604800000, 0},
    {"month", 0, 1},             {"quarter", 0, 3},           {"year", 0, 12},
};

int agg__window_unit_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof units / sizeof *units); i++)
        if (!strcmp(units[i].name, s))
            return i;
    return -1;
}

int64_t agg__window_unit_ms(int unit)
{
    return units[unit].ms;
}

bool agg__window_date_add(int64_t ms, int unit, int64_t amount, int64_t *out)
{
    if (units[unit].ms) {
        int64_t d;
        if (__builtin_mul_overflow(amount, units[unit].ms, &d) ||
            __builtin_add_overflow(ms, d, out))
            return false;
        return true;
    }
    int64_t days = agg__floor_div(ms, 86400000);
    int64_t rem = ms - days * 86400000;
    int64_t y;
    int m, d;
    agg__civil_from_days(days, &y, &m, &d);
    int64_t months;
    if (__builtin_mul_overflow(amount, (int64_t)units[unit].months, &months))
        return false;
    if (months > 12 * 300000LL || months < -12 * 300000LL)
        return false;
    int64_t total = y * 12 + (m - 1) + months;
    int64_t ny = agg__floor_div(total, 12);
    int nm = (int)(total - ny * 12) + 1;
    int dim = agg__days_in_month(ny, nm);
    if (d > dim)
        d = dim;
    int64_t nd = agg__days_from_civil(ny, nm, d);
    if (__builtin_mul_overflow(nd, (int64_t)86400000, out) ||
        __builtin_add_overflow(*out, rem, out))
        return false;
    return true;
}

void agg__window_set_path(const bson_t *src, char *const *parts, int n,
                          const bson_value_t *v, bson_t *out)
{
    bson_iter_t it;
    bool found = false;
    if (src && bson_iter_init(&it, src)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (found || strcmp(k, parts[0]) != 0) {
                bson_append_iter(out, k, -1, &it);
                continue;
            }
            found = true;
            if (n == 1) {
                if (v->value_type != BSON_TYPE_EOD)
                    bson_append_value(out, k, -1, v);
                continue;
            }
            bson_t child, sub;
            bool is_doc = BSON_ITER_HOLDS_DOCUMENT(&it);
            if (is_doc) {
                uint32_t len;
                const uint8_t *data;
                bson_iter_document(&it, &len, &data);
                bson_init_static(&sub, data, len);
            }
            bson_append_document_begin(out, k, -1, &child);
            agg__window_set_path(is_doc ? &sub : NULL, parts + 1, n - 1, v, &child);
            bson_append_document_end(out, &child);
        }
    }
    if (found)
        return;
    if (n == 1) {
        if (v->value_type != BSON_TYPE_EOD)
            bson_append_value(out, parts[0], -1, v);
        return;
    }
    bson_t child;
    bson_append_document_begin(out, parts[0], -1, &child);
    agg__window_set_path(NULL, parts + 1, n - 1, v, &child);
    bson_append_document_end(out, &child);
}

char **agg__window_path_split(const char *path, int *n, bq_error_t *err)
{
    if (!*path) {
        bq_error_set(err, 40352, "FieldPath cannot be constructed with empty string");
        return NULL;
    }
    if (path[strlen(path) - 1] == '.') {
        bq_error_set(err, 40353, "FieldPath must not end with a '.'.");
        return NULL;
    }
    int cnt = 1;
    for (const char *p = path; *p; p++)
        cnt += *p == '.';
    char **parts = calloc((size_t)cnt, sizeof *parts);
    if (!parts)
        abort();
    const char *start = path;
    for (int i = 0; i < cnt; i++) {
        const char *dot = strchr(start, '.');
        size_t len = dot ? (size_t)(dot - start) : strlen(start);
        parts[i] = bson_strndup(start, len);
        start += len + 1;
        const char *msg = len == 0 ? "FieldPath field names may not be empty strings."
                          : parts[i][0] == '$' ? "FieldPath field names may not start with '$'."
                                               : NULL;
        if (msg) {
            bq_error_set(err, len == 0 ? 15998 : 16410, "%s", msg);
            agg__window_path_free(parts, i + 1);
            return NULL;
        }
    }
    *n = cnt;
    return parts;
}

void agg__window_path_free(char **parts, int n)
{
    if (!parts)
        return;
    for (int i = 0; i < n; i++)
        bson_free(parts[i]);
    free(parts);
}

/* ================================================================ the parsed spec */

enum wf_kind {
    WF_ACC, WF_COV_POP, WF_COV_SAMP, WF_RANK, WF_DENSE_RANK, WF_DOCNUM, WF_SHIFT, WF_DERIV,
    WF_INTEGRAL, WF_EMA, WF_LOCF, WF_LINEAR,
};

enum bound_kind { B_UNBOUNDED, B_CURRENT, B_NUM };

typedef struct bound {
    enum bound_kind k;
    double num;
} bound_t;

typedef struct wf_out {
    char **parts;
    int nparts;
    enum wf_kind kind;
    const char *fname;
    agg_acc_t *acc;
    agg_expr_t *input, *input2;
    bool has_window, range;
    int range_unit;         /* the window's range unit; -1 none */
    int fn_unit;            /* $derivative / $integral unit; -1 none */
    bound_t lo, hi;
    int64_t shift_by;
    bson_value_t shift_default;
    double alpha;
} wf_out_t;

typedef struct swf_spec {
    agg_expr_t *partition;  /* NULL: one partition */
    bq_sort_t *sort;        /* NULL: no sortBy */
    int nsort;
    int sort_dir;           /* of the first key */
    agg_expr_t *sort_field; /* "$key" of a single-key sortBy, else NULL */
    int nout;
    wf_out_t *outs;
} swf_spec_t;

static void swf_free(void *p)
{
    swf_spec_t *s = p;
    if (!s)
        return;
    agg_expr_destroy(s->partition);
    bq_sort_destroy(s->sort);
    agg_expr_destroy(s->sort_field);
    for (int i = 0; i < s->nout; i++) {
        wf_out_t *o = &s->outs[i];
        agg__window_path_free(o->parts, o->nparts);
        agg_acc_destroy(o->acc);
        agg_expr_destroy(o->input);
        agg_expr_destroy(o->input2);
        agg_value_cleanup(&o->shift_default);
    }
    free(s->outs);
    free(s);
}

/* ---------------------------------------------------------------- window bounds */

static bool parse_bound(const bson_value_t *v, bool documents, bool with_unit, bound_t *b,
                        agg_scope_t *scope, bq_error_t *err)
{
    if (v->value_type == BSON_TYPE_UTF8) {
        if (!strcmp(v->value.v_utf8.str, "unbounded")) {
            b->k = B_UNBOUNDED;
            return true;
        }
        if (!strcmp(v->value.v_utf8.str, "current")) {
            b->k = B_CURRENT;
            b->num = 0;
            return true;
        }
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Window bounds must be 'unbounded', 'current', or a number.");
        return false;
    }
    agg_expr_t *e = agg_expr_compile(v, scope, err);
    if (!e)
        return false;
    const bson_value_t *c = agg_expr_constant(e);
    bool ok = false;
    double d = 0;
    if (!c) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Window bounds expression must be a constant.");
    } else if (!bq_num_is_number(c) || !bq_num_to_double(c, &d)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     documents ? "Numeric document-based bounds must be an integer"
                     : with_unit
                         ? "With 'unit', range-based bounds must be an integer"
                         : "Range-based bounds expression must be a number");
    } else if ((documents || with_unit) && (d != floor(d) || isnan(d) || fabs(d) > 2e9)) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     documents ? "Numeric document-based bounds must be an integer"
                               : "With 'unit', range-based bounds must be an integer");
    } else {
        b->k = B_NUM;
        b->num = d;
        ok = true;
    }
    agg_expr_destroy(e);
    return ok;
}

static bool parse_window(const bson_value_t *w, const swf_spec_t *s, wf_out_t *o,
                         agg_scope_t *scope, bq_error_t *err)
{
    if (w->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "'window' field must be an object");
        return false;
    }
    bson_iter_t it;
    bson_value_t docs = {0}, range = {0}, unit = {0};
    int nfields = 0;
    agg__iter_init(&it, w);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        nfields++;
        if (!strcmp(k, "documents"))
            docs = *bson_iter_value(&it);
        else if (!strcmp(k, "range"))
            range = *bson_iter_value(&it);
        else if (!strcmp(k, "unit"))
            unit = *bson_iter_value(&it);
        else {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "'window' field can only contain 'documents' as the only argument or "
                         "'range' with an optional 'unit' field");
            return false;
        }
    }
    bool has_docs = docs.value_type != BSON_TYPE_EOD;
    bool has_range = range.value_type != BSON_TYPE_EOD;
    bool has_unit = unit.value_type != BSON_TYPE_EOD;
    if (has_docs && has_range) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Window bounds can specify either 'documents' or 'unit', not both.");
        return false;
    }
    if (!has_range && has_unit) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "Window bounds can only specify 'unit' with range-based bounds.");
        return false;
    }
    o->range_unit = -1;
    if (!has_docs && !has_range) {
        /* {}: the default, the whole partition */
        o->lo.k = o->hi.k = B_UNBOUNDED;
        return true;
    }
    const bson_value_t *arr = has_docs ? &docs : &range;
    if (arr->value_type != BSON_TYPE_ARRAY || agg__array_len(arr) != 2) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Window bounds must be a 2-element array");
        return false;
    }
    if (has_unit) {
        if (unit.value_type != BSON_TYPE_UTF8) {
            bq_error_set(err, BQ_ERR_FailedToParse, "'unit' must be a string");
            return false;
        }
        if ((o->range_unit = agg__window_unit_parse(unit.value.v_utf8.str)) < 0) {
            bq_error_set(err, BQ_ERR_FailedToParse, "unknown time unit value: %s",
                         unit.value.v_utf8.str);
            return false;
        }
    }
    bson_iter_t ai;
    agg__iter_init(&ai, arr);
    bson_iter_next(&ai);
    bson_value_t lov;
    agg_value_copy(bson_iter_value(&ai), &lov);
    bson_iter_next(&ai);
    bool ok = parse_bound(&lov, has_docs, has_unit, &o->lo, scope, err) &&
              parse_bound(bson_iter_value(&ai), has_docs, has_unit, &o->hi, scope, err);
    agg_value_cleanup(&lov);
    if (!ok)
        return false;
    if (o->lo.k != B_UNBOUNDED && o->hi.k != B_UNBOUNDED && o->lo.num > o->hi.num) {
        bq_error_set(err, 5339900, "Lower bound must not exceed upper bound: [%g, %g]",
                     o->lo.num, o->hi.num);
        return false;
    }
    (void)nfields;
    o->has_window = true;
    o->range = has_range;
    bool unbounded = o->lo.k == B_UNBOUNDED && o->hi.k == B_UNBOUNDED;
    if (has_docs && !unbounded && !s->sort) {
        bq_error_set(err, 5339901, "Document-based bounds require a sortBy");
        return false;
    }
    if (has_range && s->nsort != 1) {
        bq_error_set(err, 5339902, "Range-based bounds require sortBy a single field");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- window functions */

static const struct {
    const char *name;
    enum wf_kind kind;
} wf_kinds[] = {
    {"$covariancePop", WF_COV_POP}, {"$covarianceSamp", WF_COV_SAMP},
    {"$rank", WF_RANK},             {"$denseRank", WF_DENSE_RANK},
    {"$documentNumber", WF_DOCNUM}, {"$shift", WF_SHIFT},
    {"$derivative", WF_DERIV},      {"$integral", WF_INTEGRAL},
    {"$expMovingAvg", WF_EMA},      {"$locf", WF_LOCF},
    {"$linearFill", WF_LINEAR},
};

static bool is_window_fn(const char *name, enum wf_kind *kind)
{
    for (size_t i = 0; i < sizeof wf_kinds / sizeof *wf_kinds; i++)
        if (!strcmp(wf_kinds[i].name, name)) {
            *kind = wf_kinds[i].kind;
            return true;
        }
    if (!strcmp(name, "$mergeObjects"))
        return false;
    if (agg_acc_exists(name)) {
        *kind = WF_ACC;
        return true;
    }
    return false;
}

/* {input, unit} of $derivative / $integral. */
static bool parse_input_unit(wf_out_t *o, const bson_value_t *arg, agg_scope_t *scope,
                             bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "%s expects an object, but got a %s",
                     o->fname, agg__type_name(arg));
        return false;
    }
    bson_iter_t it;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "input")) {
            agg_expr_destroy(o->input);
            if (!(o->input = agg_expr_compile(bson_iter_value(&it), scope, err)))
                return false;
        } else if (!strcmp(k, "unit")) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                bq_error_set(err, BQ_ERR_FailedToParse, "%s 'unit' must be a string",
                             o->fname);
                return false;
            }
            int u = agg__window_unit_parse(bson_iter_utf8(&it, NULL));
            if (u < 0) {
                bq_error_set(err, BQ_ERR_FailedToParse, "unknown time unit value: %s",
                             bson_iter_utf8(&it, NULL));
                return false;
            }
            if (!units[u].ms) {
                bq_error_set(err, 5490704, "unit must be 'week' or smaller");
                return false;
            }
            o->fn_unit = u;
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse, "%s got unexpected argument: %s",
                         o->fname, k);
            return false;
        }
    }
    if (!o->input) {
        bq_error_set(err, BQ_ERR_FailedToParse, "%s requires an 'input' expression", o->fname);
        return false;
    }
    return true;
}

static bool parse_shift(wf_out_t *o, const bson_value_t *arg, agg_scope_t *scope,
                        bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Argument to $shift must be an object");
        return false;
    }
    bson_iter_t it;
    bool has_by = false;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "output")) {
            agg_expr_destroy(o->input);
            if (!(o->input = agg_expr_compile(v, scope, err)))
                return false;
        } else if (!strcmp(k, "by")) {
            int64_t by;
            if (!agg__as_int64_exact(v, &by) || by > INT32_MAX || by < INT32_MIN) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "'$shift:by' field must be an integer, but found %s",
                             agg__type_name(v));
                return false;
            }
            o->shift_by = by;
            has_by = true;
        } else if (!strcmp(k, "default")) {
            agg_expr_t *e = agg_expr_compile(v, scope, err);
            if (!e)
                return false;
            const bson_value_t *c = agg_expr_constant(e);
            if (!c) {
                agg_expr_destroy(e);
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "'$shift:default' expression must yield a constant value.");
                return false;
            }
            agg_value_cleanup(&o->shift_default);
            agg_value_copy(c, &o->shift_default);
            agg_expr_destroy(e);
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse, "Unknown argument in $shift");
            return false;
        }
    }
    if (!o->input) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$shift requires an 'output' expression.");
        return false;
    }
    if (!has_by) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$shift requires 'by' as an integer value.");
        return false;
    }
    return true;
}

static bool parse_ema(wf_out_t *o, const bson_value_t *arg, agg_scope_t *scope,
                      bq_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$expMovingAvg must have exactly one argument "
                                                "that is an object");
        return false;
    }
    bson_iter_t it;
    bool has_n = false, has_alpha = false;
    agg__iter_init(&it, arg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "input")) {
            agg_expr_destroy(o->input);
            if (!(o->input = agg_expr_compile(v, scope, err)))
                return false;
        } else if (!strcmp(k, "N")) {
            int64_t n;
            if (!agg__as_int64_exact(v, &n) || n <= 0) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "'N' field must be an integer greater than zero");
                return false;
            }
            o->alpha = 2.0 / ((double)n + 1.0);
            has_n = true;
        } else if (!strcmp(k, "alpha")) {
            double a;
            if (!bq_num_is_number(v) || !bq_num_to_double(v, &a) || !(a > 0 && a < 1)) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "'alpha' must be a number between 0 and 1 exclusive");
                return false;
            }
            o->alpha = a;
            has_alpha = true;
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Got unrecognized field in $expMovingAvg: %s", k);
            return false;
        }
    }
    if (!o->input) {
        bq_error_set(err, BQ_ERR_FailedToParse, "$expMovingAvg requires an 'input' field");
        return false;
    }
    if (has_n == has_alpha) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "$expMovingAvg requires exactly one of 'N' or 'alpha' to be specified");
        return false;
    }
    return true;
}

static bool parse_output(const char *field, const bson_value_t *spec, swf_spec_t *s,
                         wf_out_t *o, agg_scope_t *scope, bq_error_t *err)
{
    o->range_unit = o->fn_unit = -1;
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse, "The field '%s' must be an object", field);
        return false;
    }
    if (!(o->parts = agg__window_path_split(field, &o->nparts, err)))
        return false;
    bson_iter_t it;
    bson_value_t fn_arg = {0}, window = {0};
    const char *fn = NULL;
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        enum wf_kind kind;
        if (!strcmp(k, "window")) {
            window = *bson_iter_value(&it);
        } else if (k[0] == '$' && is_window_fn(k, &kind)) {
            if (fn) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "Cannot specify multiple functions in window function spec");
                return false;
            }
            fn = k;
            o->kind = kind;
            fn_arg = *bson_iter_value(&it);
        } else if (k[0] == '$') {
            bq_error_set(err, BQ_ERR_FailedToParse, "Unrecognized window function, %s", k);
            return false;
        } else {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "Window function found an unknown argument: %s", k);
            return false;
        }
    }
    if (!fn) {
        bq_error_set(err, BQ_ERR_FailedToParse, "Expected a $-prefixed window function, %s",
                     field);
        return false;
    }
    for (size_t i = 0; i < sizeof wf_kinds / sizeof *wf_kinds; i++)
        if (wf_kinds[i].kind == o->kind)
            o->fname = wf_kinds[i].name;
    bool has_window = window.value_type != BSON_TYPE_EOD;
    o->lo.k = o->hi.k = B_UNBOUNDED;
    switch (o->kind) {
    case WF_ACC:
        if (!strcmp(fn, "$count") &&
            (fn_arg.value_type != BSON_TYPE_DOCUMENT || agg__array_len(&fn_arg) != 0)) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$count only accepts an empty object as input");
            return false;
        }
        if (!(o->acc = agg_acc_compile(fn, &fn_arg, scope, AGG_ACC_WINDOW, err)))
            return false;
        break;
    case WF_COV_POP:
    case WF_COV_SAMP:
        if (fn_arg.value_type != BSON_TYPE_ARRAY || agg__array_len(&fn_arg) != 2) {
            bq_error_set(err, BQ_ERR_FailedToParse, "%s requires an array of 2 expressions",
                         fn);
            return false;
        } else {
            bson_iter_t ai;
            agg__iter_init(&ai, &fn_arg);
            bson_iter_next(&ai);
            if (!(o->input = agg_expr_compile(bson_iter_value(&ai), scope, err)))
                return false;
            bson_iter_next(&ai);
            if (!(o->input2 = agg_expr_compile(bson_iter_value(&ai), scope, err)))
                return false;
        }
        break;
    case WF_RANK:
    case WF_DENSE_RANK:
    case WF_DOCNUM:
        if (has_window) {
            bq_error_set(err, 5371601, "Rank style window functions take no other arguments");
            return false;
        }
        if (fn_arg.value_type != BSON_TYPE_DOCUMENT || agg__array_len(&fn_arg) != 0) {
            bq_error_set(err, 5371603, "%s must be specified with '{}' as the value", fn);
            return false;
        }
        if (s->nsort != 1) {
            bq_error_set(err, 5371602,
                         "%s must be specified with a top level sortBy expression with "
                         "exactly one element",
                         fn);
            return false;
        }
        return true;
    case WF_SHIFT:
        if (!parse_shift(o, &fn_arg, scope, err))
            return false;
        if (has_window) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$shift does not accept a 'window' field");
            return false;
        }
        if (!s->sort) {
            bq_error_set(err, BQ_ERR_FailedToParse, "'$shift' requires a sortBy");
            return false;
        }
        return true;
    case WF_DERIV:
    case WF_INTEGRAL:
        if (!parse_input_unit(o, &fn_arg, scope, err))
            return false;
        if (!s->sort || s->nsort != 1) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "%s requires a sortBy that is a single field", fn);
            return false;
        }
        if (o->kind == WF_DERIV && !has_window) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$derivative requires explicit window bounds");
            return false;
        }
        break;
    case WF_EMA:
        if (!parse_ema(o, &fn_arg, scope, err))
            return false;
        if (has_window) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "$expMovingAvg does not accept a 'window' field");
            return false;
        }
        if (!s->sort) {
            bq_error_set(err, BQ_ERR_FailedToParse, "$expMovingAvg requires an explicit "
                                                    "'sortBy'");
            return false;
        }
        return true;
    case WF_LOCF:
    case WF_LINEAR:
        if (has_window) {
            bq_error_set(err, BQ_ERR_FailedToParse, "%s does not accept a 'window' field", fn);
            return false;
        }
        if (o->kind == WF_LINEAR && s->nsort != 1) {
            bq_error_set(err, 605001,
                         "$linearFill must be specified with a top level sortBy expression "
                         "with exactly one element");
            return false;
        }
        if (!(o->input = agg_expr_compile(&fn_arg, scope, err)))
            return false;
        return true;
    }
    if (has_window && !parse_window(&window, s, o, scope, err))
        return false;
    return true;
}

static bool swf_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                      bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "the $setWindowFields stage specification must be an object, found %s",
                     agg__type_name(spec));
        return false;
    }
    swf_spec_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    bson_iter_t it;
    bson_value_t output = {0}, partition = {0}, sort_by = {0};
    agg__iter_init(&it, spec);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!strcmp(k, "partitionBy")) {
            partition = *v;
        } else if (!strcmp(k, "sortBy")) {
            if (v->value_type != BSON_TYPE_DOCUMENT) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field '$setWindowFields.sortBy' is the wrong type '%s', "
                             "expected type 'object'",
                             agg__type_name(v));
                ok = false;
            }
            sort_by = *v;
        } else if (!strcmp(k, "output")) {
            if (v->value_type != BSON_TYPE_DOCUMENT) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field '$setWindowFields.output' is the wrong type '%s', "
                             "expected type 'object'",
                             agg__type_name(v));
                ok = false;
            }
            output = *v;
        } else {
            bq_error_set(err, 40415, "BSON field '$setWindowFields.%s' is an unknown field.", k);
            ok = false;
        }
    }
    if (ok && output.value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 40414,
                     "BSON field '$setWindowFields.output' is missing but a required field");
        ok = false;
    }
    if (ok && partition.value_type != BSON_TYPE_EOD) {
        ok = (s->partition = agg_expr_compile(&partition, pc->scope, err)) != NULL;
        const bson_value_t *c = ok ? agg_expr_constant(s->partition) : NULL;
        if (c && c->value_type == BSON_TYPE_ARRAY) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "An expression used to partition cannot evaluate to value of type "
                         "array");
            ok = false;
        } else if (c) {
            /* a constant partition is no partition */
            agg_expr_destroy(s->partition);
            s->partition = NULL;
        }
    }
    if (ok && sort_by.value_type != BSON_TYPE_EOD) {
        bson_t sdoc;
        bson_init_static(&sdoc, sort_by.value.v_doc.data, sort_by.value.v_doc.data_len);
        ok = (s->sort = bq_sort_compile(&sdoc, err)) != NULL;
        if (ok) {
            bq_sort_set_collation(s->sort, pc->collation);
            s->nsort = (int)bson_count_keys(&sdoc);
            if (s->nsort == 0) {
                bq_error_set(err, 15976, "$sort stage must have at least one sort key");
                ok = false;
            }
        }
        bson_iter_t si;
        if (ok && bson_iter_init(&si, &sdoc) && bson_iter_next(&si)) {
            double d = 1;
            if (BSON_ITER_HOLDS_DOCUMENT(&si)) {
                bq_error_set(err, BQ_ERR_NotImplemented,
                             "$setWindowFields: $meta sort keys are not supported");
                ok = false;
            }
            bq_num_to_double(bson_iter_value(&si), &d);
            s->sort_dir = d < 0 ? -1 : 1;
            if (ok && s->nsort == 1) {
                const char *key = bson_iter_key(&si);
                size_t kl = strlen(key);
                char *path = malloc(kl + 2);
                if (!path)
                    abort();
                path[0] = '$';
                memcpy(path + 1, key, kl + 1);
                ok = agg__field_path_parse(path, kl + 1, pc->scope, &s->sort_field, err);
                free(path);
            }
        }
    }
    if (ok) {
        int n = (int)agg__array_len(&output);
        s->outs = calloc(n ? (size_t)n : 1, sizeof *s->outs);
        if (!s->outs)
            abort();
        agg__iter_init(&it, &output);
        while (ok && bson_iter_next(&it)) {
            wf_out_t *o = &s->outs[s->nout++];
            bson_value_t v = *bson_iter_value(&it);
            ok = parse_output(bson_iter_key(&it), &v, s, o, pc->scope, err);
        }
    }
    if (!ok) {
        swf_free(s);
        return false;
    }
    *state = s;
    return true;
}

/* ================================================================ running */

typedef struct row {
    bson_t *doc;
    bson_value_t part; /* partition key (null when missing) */
    bson_value_t key;  /* the single sortBy field's value, EOD without one */
    size_t seq;
} row_t;

typedef struct swf_iter {
    agg_iter_t base;
    const swf_spec_t *s;
    bool loaded;
    bson_t **out;
    size_t n, pos;
    int64_t mem;
} swf_iter_t;

static int row_cmp(const swf_spec_t *s, const row_t *a, const row_t *b)
{
    int c = 0;
    if (s->partition)
        c = agg__value_compare(&a->part, &b->part);
    if (!c && s->sort)
        c = bq_sort_compare(s->sort, a->doc, b->doc);
    if (!c)
        c = a->seq < b->seq ? -1 : a->seq > b->seq;
    return c;
}

static void rows_sort(const swf_spec_t *s, row_t **r, row_t **tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    rows_sort(s, r, tmp, h);
    rows_sort(s, r + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = row_cmp(s, r[j], r[i]) < 0 ? r[j++] : r[i++];
    while (i < h)
        tmp[k++] = r[i++];
    while (j < n)
        tmp[k++] = r[j++];
    memcpy(r, tmp, n * sizeof *r);
}

/* The key of a row as a number for range windows and $derivative/$integral: doubles for
 * numbers, ms for dates (*is_date). False when neither. */
static bool key_num(const bson_value_t *k, double *d, int64_t *ms, bool *is_date)
{
    *is_date = false;
    if (k->value_type == BSON_TYPE_DATE_TIME) {
        *is_date = true;
        *ms = k->value.v_datetime;
        *d = (double)*ms;
        return true;
    }
    return bq_num_is_number(k) && bq_num_to_double(k, d);
}

/* Computes the window [*lo, *hi] (inclusive, indexes into the partition; *lo > *hi when
 * empty) of row i of a partition of n rows. */
static bool window_of(const wf_out_t *o, const swf_spec_t *s, row_t **r, size_t n, size_t i,
                      int64_t *lo, int64_t *hi, bq_error_t *err)
{
    if (!o->range) {
        *lo = o->lo.k == B_UNBOUNDED ? 0 : (int64_t)i + (int64_t)o->lo.num;
        *hi = o->hi.k == B_UNBOUNDED ? (int64_t)n - 1 : (int64_t)i + (int64_t)o->hi.num;
        if (*lo < 0)
            *lo = 0;
        if (*hi > (int64_t)n - 1)
            *hi = (int64_t)n - 1;
        return true;
    }
    int unit = o->range_unit;
    if (o->lo.k == B_UNBOUNDED && o->hi.k == B_UNBOUNDED) {
        *lo = 0;
        *hi = (int64_t)n - 1;
        return true;
    }
    /* every key must be of the right type */
    double x = 0;
    int64_t xms = 0;
    bool is_date;
    const bson_value_t *kx = &r[i]->key;
    if (!key_num(kx, &x, &xms, &is_date) || is_date != (unit >= 0)) {
        if (unit >= 0)
            bq_error_set(err, 5429513,
                         "Invalid range: Expected the sortBy field to be a Date, but it was %s",
                         agg__type_name(kx->value_type == BSON_TYPE_EOD ? &(bson_value_t){
                                                                              .value_type =
                                                                                  BSON_TYPE_NULL}
                                                                        : kx));
        else
            bq_error_set(err, 5429413,
                         "Invalid range: Expected the sortBy field to be a number, but it was "
                         "%s",
                         kx->value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(kx));
        return false;
    }
    int dir = s->sort_dir;
    /* the bounds as key limits: [lim_lo, lim_hi] in key order */
    double dlo = -INFINITY, dhi = INFINITY;
    int64_t mlo = INT64_MIN, mhi = INT64_MAX;
    const bound_t *blo = dir > 0 ? &o->lo : &o->hi, *bhi = dir > 0 ? &o->hi : &o->lo;
    if (blo->k != B_UNBOUNDED) {
        double off = dir > 0 ? blo->num : -blo->num;
        if (unit >= 0) {
            if (!agg__window_date_add(xms, unit, (int64_t)off, &mlo))
                mlo = off < 0 ? INT64_MIN : INT64_MAX;
        } else {
            dlo = x + off;
        }
    }
    if (bhi->k != B_UNBOUNDED) {
        double off = dir > 0 ? bhi->num : -bhi->num;
        if (unit >= 0) {
            if (!agg__window_date_add(xms, unit, (int64_t)off, &mhi))
                mhi = off < 0 ? INT64_MIN : INT64_MAX;
        } else {
            dhi = x + off;
        }
    }
    /* scan: rows are sorted by key in direction dir */
    int64_t first = -1, last = -2;
    for (size_t j = 0; j < n; j++) {
        double y;
        int64_t yms;
        bool ydate;
        const bson_value_t *ky = &r[j]->key;
        if (!key_num(ky, &y, &yms, &ydate) || ydate != (unit >= 0)) {
            if (unit >= 0)
                bq_error_set(err, 5429513,
                             "Invalid range: Expected the sortBy field to be a Date, but it "
                             "was %s",
                             ky->value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(ky));
            else
                bq_error_set(err, 5429413,
                             "Invalid range: Expected the sortBy field to be a number, but it "
                             "was %s",
                             ky->value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(ky));
            return false;
        }
        bool in = unit >= 0 ? (yms >= mlo && yms <= mhi) : (y >= dlo && y <= dhi);
        if (in) {
            if (first < 0)
                first = (int64_t)j;
            last = (int64_t)j;
        }
    }
    if (first < 0) {
        *lo = 1;
        *hi = 0;
    } else {
        *lo = first;
        *hi = last;
    }
    return true;
}

static void set_root(agg_run_t *run, const bson_t *doc)
{
    agg_env_set_root(&run->env, doc);
}

static bool eval_on(agg_run_t *run, const agg_expr_t *e, const bson_t *doc, bson_value_t *out,
                    bq_error_t *err)
{
    set_root(run, doc);
    return agg_expr_eval(e, &run->env, out, err);
}

/* Sliding accumulator over the windows of a partition. */
static bool compute_acc(swf_iter_t *si, const wf_out_t *o, row_t **r, size_t n,
                        bson_value_t *res, bq_error_t *err)
{
    agg_run_t *run = si->base.run;
    const swf_spec_t *s = si->s;
    bson_value_t *in = calloc(n ? n : 1, sizeof *in);
    if (!in)
        abort();
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        set_root(run, r[i]->doc);
        ok = agg_acc_input(o->acc, &run->env, &in[i], err);
    }
    bson_t empty = BSON_INITIALIZER;
    set_root(run, &empty);
    agg_acc_state_t *st = ok ? agg_acc_state_new_window(o->acc, &run->env, err) : NULL;
    ok = st != NULL;
    bool whole = !o->has_window || (o->lo.k == B_UNBOUNDED && o->hi.k == B_UNBOUNDED);
    int64_t wl = 0, wh = 0; /* inputs [wl, wh) are in the state */
    int64_t mem = 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (whole && i > 0) {
            agg_value_copy(&res[0], &res[i]);
            continue;
        }
        int64_t lo, hi;
        if (!window_of(o, s, r, n, i, &lo, &hi, err)) {
            ok = false;
            break;
        }
        if (lo > hi) {
            /* an empty window: the sliding state stays for the next rows */
            agg_acc_state_t *e = agg_acc_state_new_window(o->acc, &run->env, err);
            ok = e && agg_acc_result(o->acc, e, &res[i], err);
            agg_acc_state_destroy(e);
            continue;
        }
        while (ok && wl < lo && wl < wh) {
            ok = agg_acc_remove(o->acc, st, &in[wl], &mem, err);
            wl++;
        }
        if (wl < lo)
            wl = wh = lo;
        while (ok && wh <= hi) {
            ok = agg_acc_add(o->acc, st, &in[wh], &mem, err);
            wh++;
        }
        if (ok)
            ok = agg_acc_result(o->acc, st, &res[i], err);
    }
    agg_acc_state_destroy(st);
    for (size_t i = 0; i < n; i++)
        agg_value_cleanup(&in[i]);
    free(in);
    bson_destroy(&empty);
    return ok;
}

static bool compute_cov(swf_iter_t *si, const wf_out_t *o, row_t **r, size_t n,
                        bson_value_t *res, bq_error_t *err)
{
    agg_run_t *run = si->base.run;
    double *xs = calloc(n ? n : 1, sizeof *xs), *ys = calloc(n ? n : 1, sizeof *ys);
    bool *okv = calloc(n ? n : 1, sizeof *okv);
    if (!xs || !ys || !okv)
        abort();
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        bson_value_t a, b;
        ok = eval_on(run, o->input, r[i]->doc, &a, err) &&
             eval_on(run, o->input2, r[i]->doc, &b, err);
        int64_t ms;
        bool d1, d2;
        if (ok)
            okv[i] = key_num(&a, &xs[i], &ms, &d1) && key_num(&b, &ys[i], &ms, &d2);
        agg_value_cleanup(&a);
        agg_value_cleanup(&b);
    }
    for (size_t i = 0; ok && i < n; i++) {
        int64_t lo, hi;
        if (!window_of(o, si->s, r, n, i, &lo, &hi, err)) {
            ok = false;
            break;
        }
        double mx = 0, my = 0, c = 0;
        int64_t cnt = 0;
        for (int64_t j = lo; j <= hi; j++) {
            if (!okv[j])
                continue;
            cnt++;
            double dx = xs[j] - mx;
            mx += dx / (double)cnt;
            my += (ys[j] - my) / (double)cnt;
            c += dx * (ys[j] - my);
        }
        if (cnt == 0 || (o->kind == WF_COV_SAMP && cnt == 1))
            agg__set_null(&res[i]);
        else
            agg__set_double(&res[i], c / (double)(o->kind == WF_COV_SAMP ? cnt - 1 : cnt));
    }
    free(xs);
    free(ys);
    free(okv);
    return ok;
}

/* $derivative / $integral: x from the sort key, y from the input. */
static bool xy_at(swf_iter_t *si, const wf_out_t *o, row_t *row, double *x, double *y,
                  bson_value_t *yv, bool *y_ok, bq_error_t *err)
{
    int64_t ms;
    bool is_date;
    const bson_value_t *k = &row->key;
    bool knum = key_num(k, x, &ms, &is_date);
    bool deriv = o->kind == WF_DERIV;
    if (o->fn_unit >= 0 && (!knum || !is_date)) {
        bq_error_set(err, deriv ? 5624900 : 5423901,
                     "%s with unit expects the sortBy field to be a Date", o->fname);
        return false;
    }
    if (o->fn_unit < 0 && knum && is_date) {
        bq_error_set(err, deriv ? 5624901 : 5423902,
                     "%s where the sortBy is a Date requires an 'unit'", o->fname);
        return false;
    }
    if (!knum) {
        bq_error_set(err, deriv ? 5624902 : 5423903,
                     "%s requires the sortBy field to be a number or a date, but it was %s",
                     o->fname, k->value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(k));
        return false;
    }
    if (o->fn_unit >= 0)
        *x = (double)ms / (double)units[o->fn_unit].ms;
    bson_value_t v;
    if (!eval_on(si->base.run, o->input, row->doc, &v, err))
        return false;
    *y_ok = bq_num_is_number(&v) && bq_num_to_double(&v, y);
    if (*y_ok)
        *yv = v; /* a number: a plain value, nothing to free */
    agg_value_cleanup(&v);
    return true;
}

/* Window arithmetic keeps MongoDB's numeric types: doubles normally, Decimal128 as soon as
 * an input is one (bq_num_* promote). dnum wraps a double as an operand. */
static bson_value_t dnum(double d)
{
    bson_value_t v;
    agg__set_double(&v, d);
    return v;
}

static bool is_dec(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_DECIMAL128;
}

static bool compute_deriv_integral(swf_iter_t *si, const wf_out_t *o, row_t **r, size_t n,
                                   bson_value_t *res, bq_error_t *err)
{
    double *xs = calloc(n ? n : 1, sizeof *xs), *ys = calloc(n ? n : 1, sizeof *ys);
    bson_value_t *yv = calloc(n ? n : 1, sizeof *yv);
    bool *yok = calloc(n ? n : 1, sizeof *yok);
    if (!xs || !ys || !yv || !yok)
        abort();
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++)
        ok = xy_at(si, o, r[i], &xs[i], &ys[i], &yv[i], &yok[i], err);
    for (size_t i = 0; ok && i < n; i++) {
        int64_t lo, hi;
        if (!window_of(o, si->s, r, n, i, &lo, &hi, err)) {
            ok = false;
            break;
        }
        if (o->kind == WF_DERIV) {
            if (lo >= hi || !yok[lo] || !yok[hi] || xs[hi] == xs[lo]) {
                agg__set_null(&res[i]);
            } else if (is_dec(&yv[lo]) || is_dec(&yv[hi])) {
                bson_value_t dy, dx = dnum(xs[hi] - xs[lo]);
                ok = bq_num_sub(&yv[hi], &yv[lo], &dy, err) &&
                     bq_num_div(&dy, &dx, &res[i], err);
            } else {
                agg__set_double(&res[i], (ys[hi] - ys[lo]) / (xs[hi] - xs[lo]));
            }
            continue;
        }
        if (lo > hi) {
            agg__set_null(&res[i]);
            continue;
        }
        bool dec = false;
        for (int64_t j = lo; j <= hi; j++)
            dec = dec || (yok[j] && is_dec(&yv[j]));
        double sum = 0;
        bson_value_t dsum = {.value_type = BSON_TYPE_DECIMAL128}, two = dnum(2);
        bson_decimal128_from_string("0", &dsum.value.v_decimal128); /* the inputs' type */
        int64_t prev = -1;
        for (int64_t j = lo; ok && j <= hi; j++) {
            if (!yok[j])
                continue;
            if (prev >= 0 && dec) {
                bson_value_t ysum, dx = dnum(xs[j] - xs[prev]), area, half, prior = dsum;
                /* (bq_num_* clear their output first: it must not be an operand) */
                ok = bq_num_add(&yv[j], &yv[prev], &ysum, err) &&
                     bq_num_mul(&dx, &ysum, &area, err) && bq_num_div(&area, &two, &half, err) &&
                     bq_num_add(&prior, &half, &dsum, err);
            } else if (prev >= 0) {
                sum += (xs[j] - xs[prev]) * (ys[j] + ys[prev]) / 2.0;
            }
            prev = j;
        }
        if (prev < 0)
            agg__set_null(&res[i]);
        else if (dec)
            res[i] = dsum;
        else
            agg__set_double(&res[i], sum);
    }
    free(xs);
    free(ys);
    free(yv);
    free(yok);
    return ok;
}

static bool compute_linear(swf_iter_t *si, const wf_out_t *o, row_t **r, size_t n,
                           bson_value_t *res, bq_error_t *err)
{
    agg_run_t *run = si->base.run;
    double *xs = calloc(n ? n : 1, sizeof *xs), *ys = calloc(n ? n : 1, sizeof *ys);
    bson_value_t *yvals = calloc(n ? n : 1, sizeof *yvals);
    bool *yok = calloc(n ? n : 1, sizeof *yok);
    if (!xs || !ys || !yvals || !yok)
        abort();
    bool ok = true;
    int key_type = -1;
    for (size_t i = 0; ok && i < n; i++) {
        ok = eval_on(run, o->input, r[i]->doc, &res[i], err);
        if (!ok)
            break;
        int64_t ms;
        bool is_date;
        const bson_value_t *k = &r[i]->key;
        if (!key_num(k, &xs[i], &ms, &is_date)) {
            bq_error_set(err, 6050104,
                         "The sortBy field of $linearFill must be either a number or a date, "
                         "but found %s",
                         k->value_type == BSON_TYPE_EOD ? "missing" : agg__type_name(k));
            ok = false;
            break;
        }
        if (key_type >= 0 && key_type != (int)is_date) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "The sortBy field of $linearFill must be either numeric or a date, "
                         "but not both");
            ok = false;
            break;
        }
        key_type = is_date;
        if (i > 0 && xs[i] == xs[i - 1]) {
            bq_error_set(err, 6050106,
                         "There can be no repeated values in the sort field in the same "
                         "partition");
            ok = false;
            break;
        }
        if (agg__nullish(&res[i])) {
            yok[i] = false;
        } else if (bq_num_is_number(&res[i]) && bq_num_to_double(&res[i], &ys[i])) {
            yok[i] = true;
            yvals[i] = res[i]; /* a number: a plain value */
        } else {
            bq_error_set(err, 6050105,
                         "Value to be filled must be numeric or nullish, but found %s",
                         agg__type_name(&res[i]));
            ok = false;
        }
    }
    int64_t prev = -1;
    for (size_t i = 0; ok && i < n; i++) {
        if (yok[i]) {
            prev = (int64_t)i;
            continue;
        }
        size_t next = i + 1;
        while (next < n && !yok[next])
            next++;
        agg_value_cleanup(&res[i]);
        if (prev < 0 || next >= n) {
            agg__set_null(&res[i]);
            continue;
        }
        if (is_dec(&yvals[prev]) || is_dec(&yvals[next])) {
            bson_value_t dy, part, frac, dx = dnum(xs[i] - xs[prev]),
                                         span = dnum(xs[next] - xs[prev]);
            ok = bq_num_sub(&yvals[next], &yvals[prev], &dy, err) &&
                 bq_num_mul(&dy, &dx, &part, err) && bq_num_div(&part, &span, &frac, err) &&
                 bq_num_add(&yvals[prev], &frac, &res[i], err);
        } else {
            double y =
                ys[prev] + (ys[next] - ys[prev]) * (xs[i] - xs[prev]) / (xs[next] - xs[prev]);
            agg__set_double(&res[i], y);
        }
    }
    free(xs);
    free(ys);
    free(yvals);
    free(yok);
    return ok;
}

static bool compute_output(swf_iter_t *si, const wf_out_t *o, row_t **r, size_t n,
                           bson_value_t *res, bq_error_t *err)
{
    agg_run_t *run = si->base.run;
    const swf_spec_t *s = si->s;
    switch (o->kind) {
    case WF_ACC:
        return compute_acc(si, o, r, n, res, err);
    case WF_COV_POP:
    case WF_COV_SAMP:
        return compute_cov(si, o, r, n, res, err);
    case WF_RANK:
    case WF_DENSE_RANK:
    case WF_DOCNUM: {
        int64_t rank = 0;
        for (size_t i = 0; i < n; i++) {
            bool tie = i > 0 && bq_sort_compare(s->sort, r[i - 1]->doc, r[i]->doc) == 0;
            if (o->kind == WF_DOCNUM)
                rank = (int64_t)i + 1;
            else if (!tie)
                rank = o->kind == WF_RANK ? (int64_t)i + 1 : rank + 1;
            if (rank <= INT32_MAX)
                agg__set_int32(&res[i], (int32_t)rank);
            else
                agg__set_int64(&res[i], rank);
        }
        return true;
    }
    case WF_SHIFT:
        for (size_t i = 0; i < n; i++) {
            int64_t j = (int64_t)i + o->shift_by;
            if (j < 0 || j >= (int64_t)n) {
                if (o->shift_default.value_type == BSON_TYPE_EOD)
                    agg__set_null(&res[i]);
                else
                    agg_value_copy(&o->shift_default, &res[i]);
                continue;
            }
            if (!eval_on(run, o->input, r[j]->doc, &res[i], err))
                return false;
            if (res[i].value_type == BSON_TYPE_EOD)
                agg__set_null(&res[i]);
        }
        return true;
    case WF_DERIV:
    case WF_INTEGRAL:
        return compute_deriv_integral(si, o, r, n, res, err);
    case WF_EMA: {
        /* cur = v * alpha + cur * (1 - alpha): doubles, or Decimal128 once an input is
         * one; the first value is taken as it is */
        bson_value_t cur = {0}, alpha = dnum(o->alpha), rest = dnum(1 - o->alpha);
        bool has = false;
        for (size_t i = 0; i < n; i++) {
            bson_value_t v;
            if (!eval_on(run, o->input, r[i]->doc, &v, err))
                return false;
            if (bq_num_is_number(&v)) {
                bson_value_t a, b;
                if (!has)
                    cur = v; /* numbers are plain values */
                else if (!bq_num_mul(&v, &alpha, &a, err) || !bq_num_mul(&cur, &rest, &b, err) ||
                         !bq_num_add(&a, &b, &cur, err))
                    return false;
                has = true;
            }
            agg_value_cleanup(&v);
            if (has)
                res[i] = cur;
            else
                agg__set_null(&res[i]);
        }
        return true;
    }
    case WF_LOCF: {
        bson_value_t last = {.value_type = BSON_TYPE_NULL};
        for (size_t i = 0; i < n; i++) {
            bson_value_t v;
            if (!eval_on(run, o->input, r[i]->doc, &v, err)) {
                agg_value_cleanup(&last);
                return false;
            }
            if (!agg__nullish(&v)) {
                agg_value_cleanup(&last);
                agg_value_copy(&v, &last);
            }
            agg_value_cleanup(&v);
            agg_value_copy(&last, &res[i]);
        }
        agg_value_cleanup(&last);
        return true;
    }
    case WF_LINEAR:
        return compute_linear(si, o, r, n, res, err);
    }
    return true;
}

static void rows_free(row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bson_destroy(rows[i].doc);
        agg_value_cleanup(&rows[i].part);
        agg_value_cleanup(&rows[i].key);
    }
    free(rows);
}

static bool swf_load(swf_iter_t *si, bq_error_t *err)
{
    const swf_spec_t *s = si->s;
    agg_run_t *run = si->base.run;
    size_t n = 0, cap = 64;
    row_t *rows = calloc(cap, sizeof *rows);
    if (!rows)
        abort();
    bson_t *doc;
    int rc;
    bool ok = true;
    while (ok && (rc = agg_iter_next(si->base.input, &doc, err)) == 1) {
        if (n == cap) {
            rows = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!rows)
                abort();
        }
        row_t *row = &rows[n++];
        memset(row, 0, sizeof *row);
        row->doc = doc;
        row->seq = n;
        ok = agg_mem_charge(run, &si->mem, (int64_t)doc->len + (int64_t)sizeof *row,
                            "$setWindowFields", err);
        if (ok && (n & 1023) == 0 && agg_run_expired(run, err))
            ok = false;
        if (ok && s->partition) {
            ok = eval_on(run, s->partition, doc, &row->part, err);
            if (ok && row->part.value_type == BSON_TYPE_ARRAY) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "An expression used to partition cannot evaluate to value of "
                             "type array");
                ok = false;
            }
            if (ok && row->part.value_type == BSON_TYPE_EOD)
                agg__set_null(&row->part);
        }
        if (ok && s->sort_field)
            ok = eval_on(run, s->sort_field, doc, &row->key, err);
    }
    if (ok && rc < 0)
        ok = false;
    row_t **r = calloc(n ? n : 1, sizeof *r), **tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!r || !tmp)
        abort();
    for (size_t i = 0; i < n; i++)
        r[i] = &rows[i];
    if (ok)
        rows_sort(s, r, tmp, n);
    free(tmp);
    si->out = calloc(n ? n : 1, sizeof *si->out);
    bson_value_t *res = calloc((n ? n : 1) * (size_t)(s->nout ? s->nout : 1), sizeof *res);
    if (!si->out || !res)
        abort();
    size_t a = 0;
    while (ok && a < n) {
        size_t b = a + 1;
        while (s->partition && b < n && agg__value_compare(&r[a]->part, &r[b]->part) == 0)
            b++;
        if (!s->partition)
            b = n;
        size_t pn = b - a;
        for (int k = 0; ok && k < s->nout; k++)
            ok = compute_output(si, &s->outs[k], r + a, pn, res + (size_t)k * n + a, err);
        a = b;
    }
    for (size_t i = 0; ok && i < n; i++) {
        bson_t *cur = r[i]->doc;
        bson_t *owned = NULL;
        for (int k = 0; k < s->nout; k++) {
            const wf_out_t *o = &s->outs[k];
            bson_value_t *v = &res[(size_t)k * n + i];
            if (v->value_type == BSON_TYPE_EOD)
                agg__set_null(v);
            bson_t *next = bson_new();
            agg__window_set_path(cur, o->parts, o->nparts, v, next);
            if (owned)
                bson_destroy(owned);
            owned = cur = next;
        }
        si->out[si->n++] = owned ? owned : bson_copy(cur);
    }
    for (size_t i = 0; i < n * (size_t)s->nout; i++)
        agg_value_cleanup(&res[i]);
    free(res);
    free(r);
    rows_free(rows, n);
    return ok;
}

static int swf_next(agg_iter_t *it, bson_t **out, bq_error_t *err)
{
    swf_iter_t *si = (swf_iter_t *)it;
    if (!si->loaded) {
        si->loaded = true;
        if (!swf_load(si, err))
            return -1;
    }
    if (si->pos >= si->n)
        return 0;
    *out = si->out[si->pos];
    si->out[si->pos++] = NULL;
    return 1;
}

static void swf_close(agg_iter_t *it)
{
    swf_iter_t *si = (swf_iter_t *)it;
    for (size_t i = si->pos; i < si->n; i++)
        bson_destroy(si->out[i]);
    free(si->out);
    agg_iter_close(it->input);
    free(si);
}

static agg_iter_t *swf_open(const void *state, agg_iter_t *input, agg_run_t *run,
                            bq_error_t *err)
{
    (void)err;
    swf_iter_t *si = calloc(1, sizeof *si);
    if (!si)
        abort();
    si->s = state;
    si->base.next = swf_next;
    si->base.close = swf_close;
    si->base.input = input;
    si->base.run = run;
    return &si->base;
}

/* ================================================================ $fill */

/* $fill is parsed into a sub-pipeline of an $addFields (value outputs) and a
 * $setWindowFields (method outputs). */
typedef struct fill_spec {
    agg_pipeline_t *sub;
} fill_spec_t;

static void fill_free(void *p)
{
    fill_spec_t *f = p;
    if (!f)
        return;
    agg_pipeline_destroy(f->sub);
    free(f);
}

static bool fill_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                       bq_error_t *err)
{
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        bq_error_set(err, BQ_ERR_FailedToParse,
                     "the $fill stage specification must be an object, found %s",
                     agg__type_name(spec));
        return false;
    }
    bson_iter_t it;
    bson_value_t partition = {0}, fields = {0}, sort_by = {0}, output = {0};
    agg__iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        const char *want = NULL;
        if (!strcmp(k, "partitionBy")) {
            partition = *v;
        } else if (!strcmp(k, "partitionByFields")) {
            fields = *v;
            want = v->value_type == BSON_TYPE_ARRAY ? NULL : "array";
        } else if (!strcmp(k, "sortBy")) {
            sort_by = *v;
            want = v->value_type == BSON_TYPE_DOCUMENT ? NULL : "object";
        } else if (!strcmp(k, "output")) {
            output = *v;
            want = v->value_type == BSON_TYPE_DOCUMENT ? NULL : "object";
        } else {
            bq_error_set(err, 40415, "BSON field '$fill.%s' is an unknown field.", k);
            return false;
        }
        if (want) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '$fill.%s' is the wrong type '%s', expected type '%s'", k,
                         agg__type_name(v), want);
            return false;
        }
    }
    if (output.value_type == BSON_TYPE_EOD) {
        bq_error_set(err, 40414, "BSON field '$fill.output' is missing but a required field");
        return false;
    }
    if (partition.value_type != BSON_TYPE_EOD && fields.value_type != BSON_TYPE_EOD) {
        bq_error_set(err, 6050204,
                     "Maximum one of 'partitionBy' and 'partitionByFields can be specified in "
                     "'$fill'");
        return false;
    }
    bson_t add, swf_out;
    bson_init(&add);
    bson_init(&swf_out);
    int nmethod = 0, nvalue = 0;
    bool ok = true;
    agg__iter_init(&it, &output);
    while (ok && bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bq_error_set(err, BQ_ERR_TypeMismatch,
                         "BSON field '$fill.output.%s' is the wrong type, expected type "
                         "'object'",
                         f);
            ok = false;
            break;
        }
        bson_iter_t fi;
        bson_iter_recurse(&it, &fi);
        bson_value_t value = {0}, method = {0};
        int nf = 0;
        while (ok && bson_iter_next(&fi)) {
            const char *k = bson_iter_key(&fi);
            nf++;
            if (!strcmp(k, "value"))
                value = *bson_iter_value(&fi);
            else if (!strcmp(k, "method"))
                method = *bson_iter_value(&fi);
            else {
                bq_error_set(err, 40415, "BSON field '$fill.output.%s.%s' is an unknown field.",
                             f, k);
                ok = false;
            }
        }
        if (!ok)
            break;
        if (nf != 1) {
            bq_error_set(err, 6050203,
                         "Exactly one of 'value' or 'method' must be specified in '$fill' "
                         "output field '%s'",
                         f);
            ok = false;
            break;
        }
        size_t fl = strlen(f);
        char *path = malloc(fl + 2);
        if (!path)
            abort();
        path[0] = '$';
        memcpy(path + 1, f, fl + 1);
        if (value.value_type != BSON_TYPE_EOD) {
            bson_t ifn, arr;
            bson_append_document_begin(&add, f, -1, &ifn);
            bson_append_array_begin(&ifn, "$ifNull", -1, &arr);
            bson_append_utf8(&arr, "0", 1, path, -1);
            bson_append_value(&arr, "1", 1, &value);
            bson_append_array_end(&ifn, &arr);
            bson_append_document_end(&add, &ifn);
            nvalue++;
        } else {
            const char *fn = NULL;
            if (method.value_type == BSON_TYPE_UTF8 && !strcmp(method.value.v_utf8.str, "locf"))
                fn = "$locf";
            else if (method.value_type == BSON_TYPE_UTF8 &&
                     !strcmp(method.value.v_utf8.str, "linear"))
                fn = "$linearFill";
            if (!fn) {
                bq_error_set(err, 6050202,
                             "Method must be either 'locf' or 'linear' in '$fill' output field "
                             "'%s'",
                             f);
                ok = false;
            } else {
                bson_t w;
                bson_append_document_begin(&swf_out, f, -1, &w);
                bson_append_utf8(&w, fn, -1, path, -1);
                bson_append_document_end(&swf_out, &w);
                nmethod++;
            }
        }
        free(path);
    }
    bson_t pipeline;
    bson_init(&pipeline);
    int idx = 0;
    if (ok && nvalue) {
        bson_t st;
        bson_append_document_begin(&pipeline, "0", 1, &st);
        bson_append_document(&st, "$addFields", -1, &add);
        bson_append_document_end(&pipeline, &st);
        idx++;
    }
    if (ok && nmethod) {
        bson_t st, swf;
        char key[16];
        snprintf(key, sizeof key, "%d", idx);
        bson_append_document_begin(&pipeline, key, -1, &st);
        bson_append_document_begin(&st, "$setWindowFields", -1, &swf);
        if (partition.value_type != BSON_TYPE_EOD)
            bson_append_value(&swf, "partitionBy", -1, &partition);
        if (fields.value_type != BSON_TYPE_EOD) {
            bson_t pb;
            bson_iter_t fi;
            bson_append_document_begin(&swf, "partitionBy", -1, &pb);
            agg__iter_init(&fi, &fields);
            int i = 0;
            while (ok && bson_iter_next(&fi)) {
                if (!BSON_ITER_HOLDS_UTF8(&fi)) {
                    bq_error_set(err, BQ_ERR_TypeMismatch,
                                 "BSON field '$fill.partitionByFields' must be an array of "
                                 "strings");
                    ok = false;
                    break;
                }
                const char *pf = bson_iter_utf8(&fi, NULL);
                char name[24];
                snprintf(name, sizeof name, "f%d", i++);
                size_t pl = strlen(pf);
                char *path = malloc(pl + 2);
                if (!path)
                    abort();
                path[0] = '$';
                memcpy(path + 1, pf, pl + 1);
                bson_append_utf8(&pb, name, -1, path, -1);
                free(path);
            }
            bson_append_document_end(&swf, &pb);
        }
        if (sort_by.value_type != BSON_TYPE_EOD)
            bson_append_value(&swf, "sortBy", -1, &sort_by);
        bson_append_document(&swf, "output", -1, &swf_out);
        bson_append_document_end(&st, &swf);
        bson_append_document_end(&pipeline, &st);
    }
    bson_destroy(&add);
    bson_destroy(&swf_out);
    fill_spec_t *fs = NULL;
    if (ok) {
        fs = calloc(1, sizeof *fs);
        if (!fs)
            abort();
        fs->sub = agg_pipeline_parse_sub(&pipeline, pc, pc->scope, pc->coll, err);
        if (!fs->sub) {
            free(fs);
            fs = NULL;
            ok = false;
        }
    }
    bson_destroy(&pipeline);
    if (!ok)
        return false;
    *state = fs;
    return true;
}

static agg_iter_t *fill_open(const void *state, agg_iter_t *input, agg_run_t *run,
                             bq_error_t *err)
{
    const fill_spec_t *fs = state;
    return agg_pipeline_open(fs->sub, input, run, err);
}

/* ================================================================ the family */

const agg_stage_kind_t agg__stages_window[] = {
    {"$setWindowFields", 0, swf_parse, swf_open, swf_free},
    {"$fill", 0, fill_parse, fill_open, fill_free},
    {"$densify", 0, agg__densify_parse, agg__densify_open, agg__densify_free},
    {NULL, 0, NULL, NULL, NULL},
};
