/*
 * agg_expr_int.h: what the expression files (agg_expr*.c) share and nothing else sees:
 * the compiled node, the operator table entry, and small value helpers. The public API is
 * agg_expr.h.
 *
 * A compiled expression is a tree of agg_expr_t nodes. An operator node points at its
 * table entry (agg__op_t) and holds compiled arguments; operators with named arguments
 * ({$cond: {if, then, else}}, $map, $let, ...) compile them into args[] at fixed
 * positions (NULL when absent), in the order the operator documents. Per-operator
 * compile-time data (a precompiled regex, a sort spec) hangs off `data`.
 */
#ifndef AGG_EXPR_INT_H
#define AGG_EXPR_INT_H

#include "agg_expr.h"

enum agg__kind {
    AGG__CONST,   /* value */
    AGG__VAR,     /* slot + optional path (parts); "$a.b" is VAR CURRENT with path a.b */
    AGG__REMOVE,  /* $$REMOVE (optionally with a path): always missing */
    AGG__OBJECT,  /* names[i]: args[i] */
    AGG__ARRAY,   /* args */
    AGG__OP,      /* op(args) */
};

typedef bool (*agg__eval_fn)(const agg_expr_t *e, agg_env_t *env, bson_value_t *out,
                             bq_error_t *err);
/* Compiles the argument of {$op: arg} into e (e->op is set). Returns false with err. */
typedef bool (*agg__compile_fn)(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                                bq_error_t *err);

enum agg__op_flags {
    AGG__FOLD = 1,  /* pure: folded at compile time when every argument is constant */
};

typedef struct agg__op {
    const char *name;        /* "$add" */
    agg__compile_fn compile; /* NULL: generic (array of operands, or one operand) */
    agg__eval_fn eval;
    int min_args, max_args;  /* generic compile only; max -1 = no limit */
    int flags;
} agg__op_t;

struct agg_expr {
    enum agg__kind kind;
    bson_value_t value;      /* CONST (owned) */
    int slot;                /* VAR */
    char *path;              /* VAR: dotted path after the variable, NULL for none */
    char **parts;
    int nparts;
    const agg__op_t *op;     /* OP */
    agg_expr_t **args;       /* OP, OBJECT, ARRAY (entries may be NULL for named args) */
    int nargs;
    char **names;            /* OBJECT field names */
    int slots[4];            /* variables an OP defines ($let vars use data) */
    int64_t ival;            /* op-specific */
    void *data;              /* op-specific, freed with data_free */
    void (*data_free)(void *);
};

/* Operator tables, one per family file, each ending with a {NULL} entry. */
extern const agg__op_t agg__ops_core[];
extern const agg__op_t agg__ops_arith[];
extern const agg__op_t agg__ops_cmp[];
extern const agg__op_t agg__ops_bool[];
extern const agg__op_t agg__ops_cond[];
extern const agg__op_t agg__ops_str[];
extern const agg__op_t agg__ops_array[];
extern const agg__op_t agg__ops_set[];
extern const agg__op_t agg__ops_type[];
extern const agg__op_t agg__ops_obj[];
extern const agg__op_t agg__ops_misc[];
extern const agg__op_t agg__ops_date[];
extern const agg__op_t agg__ops_acc[];  /* agg_expr_acc.c */

/* ---------------------------------------------------------------- compile helpers */

agg_expr_t *agg__expr_new(enum agg__kind kind);
/* Allocates e->args with n NULL entries. */
void agg__expr_args_alloc(agg_expr_t *e, int n);
/* Compiles arg as the operand list: an array gives its elements, anything else is one
 * operand. Checks the count against [min, max] (max -1: no limit) with mongod's 16020 /
 * 28667 messages. */
bool agg__compile_operands(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                           int min, int max, bq_error_t *err);
/* Named arguments: arg must be a document (else `code_not_obj`); each field must be one
 * of names[0..n) (else `code_unknown`, message "Unrecognized parameter to <op>: <f>");
 * the expressions land in e->args[i] (allocated with n entries). Fields listed in
 * `raw` (bitmask) are not compiled: their raw values are copied into raws[i] (may be NULL
 * when raw is 0). */
bool agg__compile_named(agg_expr_t *e, const bson_value_t *arg, agg_scope_t *scope,
                        const char *const *names, int n, unsigned raw, bson_value_t *raws,
                        int code_not_obj, int code_unknown, bq_error_t *err);

/* ---------------------------------------------------------------- eval helpers */

/* Evaluates e->args[i] (EOD when args[i] is NULL). */
bool agg__eval_arg(const agg_expr_t *e, int i, agg_env_t *env, bson_value_t *out,
                   bq_error_t *err);
/* Evaluates all args into vals (caller provides e->nargs slots, releases them with
 * agg__values_cleanup even on failure). */
bool agg__eval_args(const agg_expr_t *e, agg_env_t *env, bson_value_t *vals,
                    bq_error_t *err);
void agg__values_cleanup(bson_value_t *vals, int n);

/* EOD (missing), null or undefined. */
static inline bool agg__nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

const char *agg__type_name(const bson_value_t *v);

static inline void agg__set_null(bson_value_t *o) { o->value_type = BSON_TYPE_NULL; }
static inline void agg__set_bool(bson_value_t *o, bool b)
{
    o->value_type = BSON_TYPE_BOOL;
    o->value.v_bool = b;
}
static inline void agg__set_int32(bson_value_t *o, int32_t i)
{
    o->value_type = BSON_TYPE_INT32;
    o->value.v_int32 = i;
}
static inline void agg__set_int64(bson_value_t *o, int64_t i)
{
    o->value_type = BSON_TYPE_INT64;
    o->value.v_int64 = i;
}
static inline void agg__set_double(bson_value_t *o, double d)
{
    o->value_type = BSON_TYPE_DOUBLE;
    o->value.v_double = d;
}
static inline void agg__set_date(bson_value_t *o, int64_t ms)
{
    o->value_type = BSON_TYPE_DATE_TIME;
    o->value.v_datetime = ms;
}
/* Owned copy of s[0..len). */
void agg__set_string(bson_value_t *o, const char *s, size_t len);
/* Takes a finished document/array and makes *o an owned DOCUMENT/ARRAY value; b is
 * destroyed. */
void agg__set_doc_steal(bson_value_t *o, bson_t *b);
void agg__set_array_steal(bson_value_t *o, bson_t *b);

/* Iterating the elements of an array or document value. */
bool agg__iter_init(bson_iter_t *it, const bson_value_t *v);

/* Number of elements of an array value. */
uint32_t agg__array_len(const bson_value_t *v);

/* Appends v to an array being built with index *idx (incremented). EOD is skipped. */
void agg__array_append(bson_t *arr, uint32_t *idx, const bson_value_t *v);

/* Integral value of a number that fits int32 (false otherwise). int64 out variant. */
bool agg__as_int32(const bson_value_t *v, int32_t *out);
bool agg__as_int64_exact(const bson_value_t *v, int64_t *out);

/* Evaluates an expression then walks a field path from a value, the aggregation way
 * (arrays of documents map to arrays of values). */
void agg__path_eval(const bson_value_t *base, char *const *parts, int nparts,
                    bson_value_t *out);

/* MongoDB's order with missing treated as undefined (agg_expr_cmp.c). */
int agg__value_compare(const bson_value_t *a, const bson_value_t *b);

/* agg_expr_str.c: mongod's string forms. coerce: numbers, dates, timestamps, strings,
 * symbols; null/missing give ""; other types fail with 16007. */
bool agg__coerce_to_string(const bson_value_t *v, bson_value_t *out, bq_error_t *err);
void agg__format_double(double d, char *buf, size_t size);
void agg__format_date(int64_t ms, char *buf, size_t size);

/* agg_expr_type.c: ISO-8601 date strings (as $toDate reads them) to milliseconds. */
bool agg__parse_date(const char *s, size_t n, int64_t *ms);

/* Sets variable `slot` to *v, taking ownership (*v is reset to EOD). */
void agg__env_take(agg_env_t *env, int slot, bson_value_t *v);

/* Builds a field-path expression node from "$a.b" text (without scope checks). */
bool agg__field_path_parse(const char *text, size_t len, agg_scope_t *scope,
                           agg_expr_t **out, bq_error_t *err);

/* ---------------------------------------------------------------- dates (agg_tz.c) */

/* Proleptic Gregorian calendar on day numbers (days since 1970-01-01). */
int64_t agg__floor_div(int64_t a, int64_t b);
int64_t agg__days_from_civil(int64_t y, int64_t m, int64_t d);
void agg__civil_from_days(int64_t days, int64_t *y, int *m, int *d);
bool agg__is_leap(int64_t y);
int agg__days_in_month(int64_t y, int m);

/* A time zone: a loaded Olson zone (cached for the life of the process, shared between
 * threads) or a fixed offset. Plain value; nothing to release. */
typedef struct agg__tz {
    const struct agg__zone *zone; /* NULL: fixed offset */
    int32_t fixed;                /* seconds east of UTC when zone is NULL */
    bool utc;                     /* UTC itself (by name or a zero offset) */
} agg__tz_t;

void agg__tz_utc(agg__tz_t *tz);
/* "America/New_York", "UTC", "+04:45", "-0530", "+03". Unknown: 40485. */
bool agg__tz_parse(const char *s, size_t n, agg__tz_t *tz, bq_error_t *err);
/* Offset (seconds east of UTC) of tz at an instant (ms since the epoch). */
int32_t agg__tz_offset(const agg__tz_t *tz, int64_t utc_ms);
/* Instant to local wall-clock ms, and back (gaps move forward, overlaps pick one). */
int64_t agg__tz_to_local(const agg__tz_t *tz, int64_t utc_ms);
int64_t agg__tz_to_utc(const agg__tz_t *tz, int64_t local_ms);

#endif
