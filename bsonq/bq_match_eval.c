/*
 * bq_match_eval.c: the evaluation operators of queries: $regex (with $options, and BSON
 * regex values as {a: /re/}, in $in, $not and $all), $mod, and the bitwise operators
 * $bitsAllSet, $bitsAnySet, $bitsAllClear, $bitsAnyClear.
 *
 * Owns regex compilation through PCRE2 (options i, m, s, x, u; patterns are UTF-8) and the
 * argument checks of these operators. $where is refused in bq_match.c (no JavaScript).
 * A compiled regex is immutable; each match allocates its own PCRE2 match data, so one
 * compiled filter can be evaluated from several threads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

/* ---------------------------------------------------------------- regex */

struct bq__regex {
    pcre2_code *code;
    char *pattern;
    char *options; /* as given, for equality with BSON regex values */
};

void bq__regex_free(void *p)
{
    bq__regex_t *re = p;
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re->pattern);
    free(re->options);
    free(re);
}

bq__regex_t *bq__regex_new(const char *pattern, const char *options, bq_error_t *err)
{
    uint32_t flags = PCRE2_UTF;
    if (!options)
        options = "";
    for (const char *o = options; *o; o++) {
        switch (*o) {
        case 'i':
            flags |= PCRE2_CASELESS;
            break;
        case 'm':
            flags |= PCRE2_MULTILINE;
            break;
        case 's':
            flags |= PCRE2_DOTALL;
            break;
        case 'x':
            flags |= PCRE2_EXTENDED;
            break;
        case 'u':
            break; /* patterns are always UTF-8 */
        default:
            bq_error_set(err, 51108, "invalid flag in regex options: %c", *o);
            return NULL;
        }
    }
    if (strlen(pattern) > 32764) {
        bq_error_set(err, 51091, "Regular expression is too long");
        return NULL;
    }
    bq__regex_t *re = calloc(1, sizeof *re);
    if (!re || !(re->pattern = strdup(pattern)) || !(re->options = strdup(options))) {
        bq__regex_free(re);
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return NULL;
    }
    int code;
    PCRE2_SIZE off;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, flags, &code, &off,
                             NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        bq_error_set(err, 51091, "Regular expression is invalid: %s", (const char *)msg);
        bq__regex_free(re);
        return NULL;
    }
    return re;
}

static bool regex_search(const bq__regex_t *re, const char *s, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

bool bq__regex_match_value(const bq__regex_t *re, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        return regex_search(re, v->value.v_utf8.str, v->value.v_utf8.len);
    case BSON_TYPE_SYMBOL:
        return regex_search(re, v->value.v_symbol.symbol, v->value.v_symbol.len);
    case BSON_TYPE_REGEX:
        return strcmp(v->value.v_regex.regex, re->pattern) == 0 &&
               strcmp(v->value.v_regex.options ? v->value.v_regex.options : "",
                      re->options) == 0;
    default:
        return false;
    }
}

static bool match_regex(const bq__mnode_t *n, const bson_value_t *v)
{
    return v && bq__regex_match_value(n->data, v);
}

/* The node is compiled by bq__match_regex_leaf, never from the table directly. */
static bool compile_regex_unused(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    (void)n;
    (void)arg;
    bq_error_set(err, BQ_ERR_InternalError, "$regex compiled out of context");
    return false;
}

static const bq__mop_t regex_op = {"$regex", compile_regex_unused, match_regex,
                                   bq__regex_free, 0};

bq__mnode_t *bq__match_regex_leaf(const char *path, const bson_iter_t *re_it,
                                  const bson_iter_t *opts_it, bq_error_t *err)
{
    const char *pattern, *options = "";
    if (bson_iter_type(re_it) == BSON_TYPE_REGEX) {
        pattern = bson_iter_regex(re_it, &options);
        if (!options)
            options = "";
        if (opts_it && options[0]) {
            bq_error_set(err, 51075, "options set in both $regex and $options");
            return NULL;
        }
    } else if (bson_iter_type(re_it) == BSON_TYPE_UTF8) {
        pattern = bson_iter_utf8(re_it, NULL);
    } else {
        bq_error_set(err, BQ_ERR_BadValue, "$regex has to be a string");
        return NULL;
    }
    if (opts_it) {
        if (bson_iter_type(opts_it) != BSON_TYPE_UTF8) {
            bq_error_set(err, BQ_ERR_BadValue, "$options has to be a string");
            return NULL;
        }
        options = bson_iter_utf8(opts_it, NULL);
    }
    bq__mnode_t *n = bq__mnode_new(BQ__M_LEAF);
    if (!n || (path && !(n->path = strdup(path)))) {
        bq__mnode_free(n);
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return NULL;
    }
    n->op = &regex_op;
    if (!(n->data = bq__regex_new(pattern, options, err))) {
        bq__mnode_free(n);
        return NULL;
    }
    return n;
}

/* ---------------------------------------------------------------- $mod */

typedef struct mod_arg {
    int64_t divisor, remainder;
} mod_arg_t;

static bool mod_number(const bson_iter_t *it, const char *what, int64_t *out, bq_error_t *err)
{
    bson_value_t v = *bson_iter_value((bson_iter_t *)it);
    if (!bq_num_is_number(&v)) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, %s not a number", what);
        return false;
    }
    if (!bq_num_to_int64(&v, out, NULL)) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, %s value is invalid", what);
        return false;
    }
    return true;
}

static bool compile_mod(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    if (bson_iter_type(arg) != BSON_TYPE_ARRAY) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, needs to be an array");
        return false;
    }
    bson_iter_t it;
    bson_iter_recurse(arg, &it);
    mod_arg_t *m = calloc(1, sizeof *m);
    if (!m) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    n->data = m;
    if (!bson_iter_next(&it)) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, not enough elements");
        return false;
    }
    if (!mod_number(&it, "divisor", &m->divisor, err))
        return false;
    if (!bson_iter_next(&it)) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, not enough elements");
        return false;
    }
    if (!mod_number(&it, "remainder", &m->remainder, err))
        return false;
    if (bson_iter_next(&it)) {
        bq_error_set(err, BQ_ERR_BadValue, "malformed mod, too many elements");
        return false;
    }
    if (m->divisor == 0) {
        bq_error_set(err, BQ_ERR_BadValue, "divisor cannot be 0");
        return false;
    }
    return true;
}

static bool match_mod(const bq__mnode_t *n, const bson_value_t *v)
{
    const mod_arg_t *m = n->data;
    int64_t x;
    if (!v || !bq_num_is_number(v) || !bq_num_to_int64(v, &x, NULL))
        return false;
    int64_t r = m->divisor == -1 ? 0 : x % m->divisor;
    return r == m->remainder;
}

/* ---------------------------------------------------------------- $bits* */

typedef struct bits_arg {
    uint32_t *pos;
    size_t npos;
} bits_arg_t;

static void free_bits(void *p)
{
    bits_arg_t *b = p;
    if (b) {
        free(b->pos);
        free(b);
    }
}

static bool push_pos(bits_arg_t *b, uint32_t p, bq_error_t *err)
{
    uint32_t *np = realloc(b->pos, sizeof *np * (b->npos + 1));
    if (!np) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    b->pos = np;
    b->pos[b->npos++] = p;
    return true;
}

static bool compile_bits(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err)
{
    const char *name = n->op->name;
    bits_arg_t *b = calloc(1, sizeof *b);
    if (!b) {
        bq_error_set(err, BQ_ERR_ExceededMemoryLimit, "out of memory");
        return false;
    }
    n->data = b;
    bson_value_t v = *bson_iter_value((bson_iter_t *)arg);
    if (bq_num_is_number(&v)) {
        int64_t mask;
        bool exact;
        if (!bq_num_to_int64(&v, &mask, &exact) || !exact) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "%s bitmask must be an integer representable as a 64-bit integer",
                         name);
            return false;
        }
        if (mask < 0) {
            bq_error_set(err, BQ_ERR_FailedToParse,
                         "%s bitmask must be a non-negative number", name);
            return false;
        }
        for (uint32_t i = 0; i < 63; i++)
            if ((mask >> i) & 1)
                if (!push_pos(b, i, err))
                    return false;
        return true;
    }
    if (v.value_type == BSON_TYPE_BINARY) {
        for (uint32_t i = 0; i < v.value.v_binary.data_len; i++)
            for (uint32_t j = 0; j < 8; j++)
                if ((v.value.v_binary.data[i] >> j) & 1)
                    if (!push_pos(b, i * 8 + j, err))
                        return false;
        return true;
    }
    if (v.value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        bson_iter_recurse(arg, &it);
        while (bson_iter_next(&it)) {
            bson_value_t e = *bson_iter_value(&it);
            int64_t p;
            bool exact;
            if (!bq_num_is_number(&e) || !bq_num_to_int64(&e, &p, &exact) || !exact) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "bit positions must be an integer but got: %s",
                             bq_type_name(e.value_type));
                return false;
            }
            if (p < 0 || p > INT32_MAX) {
                bq_error_set(err, BQ_ERR_BadValue,
                             "bit positions must be >= 0 but got: %lld", (long long)p);
                return false;
            }
            if (!push_pos(b, (uint32_t)p, err))
                return false;
        }
        return true;
    }
    bq_error_set(err, BQ_ERR_BadValue,
                 "%s takes an Array, a number, or a BinData but received: %s", name,
                 bq_type_name(v.value_type));
    return false;
}

/* The bit at position p of a value, or -1 when the value has no bits ($bits* skip it). */
static int bit_at(const bson_value_t *v, uint32_t p, int64_t num)
{
    if (v->value_type == BSON_TYPE_BINARY) {
        uint32_t byte = p / 8;
        if (byte >= v->value.v_binary.data_len)
            return 0;
        return (v->value.v_binary.data[byte] >> (p % 8)) & 1;
    }
    if (p >= 64)
        return num < 0; /* two's complement sign extension */
    return (int)(((uint64_t)num >> p) & 1);
}

enum { BITS_ALL_SET, BITS_ANY_SET, BITS_ALL_CLEAR, BITS_ANY_CLEAR };

static bool match_bits_kind(const bq__mnode_t *n, const bson_value_t *v, int kind)
{
    const bits_arg_t *b = n->data;
    int64_t num = 0;
    if (!v)
        return false;
    if (v->value_type != BSON_TYPE_BINARY) {
        bool exact;
        if (!bq_num_is_number(v) || !bq_num_to_int64(v, &num, &exact) || !exact)
            return false;
    }
    bool want_set = kind == BITS_ALL_SET || kind == BITS_ANY_SET;
    bool all = kind == BITS_ALL_SET || kind == BITS_ALL_CLEAR;
    for (size_t i = 0; i < b->npos; i++) {
        bool hit = (bit_at(v, b->pos[i], num) == 1) == want_set;
        if (all && !hit)
            return false;
        if (!all && hit)
            return true;
    }
    return all;
}

static bool match_all_set(const bq__mnode_t *n, const bson_value_t *v)
{
    return match_bits_kind(n, v, BITS_ALL_SET);
}

static bool match_any_set(const bq__mnode_t *n, const bson_value_t *v)
{
    return match_bits_kind(n, v, BITS_ANY_SET);
}

static bool match_all_clear(const bq__mnode_t *n, const bson_value_t *v)
{
    return match_bits_kind(n, v, BITS_ALL_CLEAR);
}

static bool match_any_clear(const bq__mnode_t *n, const bson_value_t *v)
{
    return match_bits_kind(n, v, BITS_ANY_CLEAR);
}

const bq__mop_t bq__match_eval_ops[] = {
    {"$mod", compile_mod, match_mod, free, 0},
    {"$bitsAllSet", compile_bits, match_all_set, free_bits, 0},
    {"$bitsAnySet", compile_bits, match_any_set, free_bits, 0},
    {"$bitsAllClear", compile_bits, match_all_clear, free_bits, 0},
    {"$bitsAnyClear", compile_bits, match_any_clear, free_bits, 0},
    {NULL, NULL, NULL, NULL, 0},
};
