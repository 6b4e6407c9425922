/*
 * bq_collation.c: MongoDB collations ({locale, strength, caseLevel, caseFirst,
 * numericOrdering, alternate, maxVariable, backwards, normalization}) on ICU collators.
 *
 * A collation changes how strings (and symbols) compare, nothing else: numbers, dates,
 * field names and regular expressions are untouched. Rather than thread a collator through
 * every comparison, an operation makes its collation the thread's active one for the
 * duration of a match or a sort (bq_collation_enter / bq_collation_leave; bq_match_eval and
 * bq_sort_compare do it for matchers and sorts compiled with one), and bq_value_compare
 * asks bq__collate_strings() for string pairs. Equality keys (bq_key) never look at the
 * active collation: the _id index must stay binary; bq_key_build_collated() is explicit.
 *
 * ICU collators are safe to share between threads for comparisons and sort keys once
 * configured, so a compiled collation is immutable and shareable like a matcher.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucol.h>
#include <unicode/ustring.h>

#include "bq.h"
#include "bq_int.h"

struct bq_collation {
    atomic_int refs; /* matchers and sorts hold references (bq_collation_ref) */
    UCollator *ucol;
    bson_t *spec; /* the normalized spec, as listCollections/explain report it */
};

static __thread const bq_collation_t *active;

const bq_collation_t *bq_collation_enter(const bq_collation_t *c)
{
    const bq_collation_t *prev = active;
    active = c;
    return prev;
}

void bq_collation_leave(const bq_collation_t *prev)
{
    active = prev;
}

/* Compares two UTF-8 strings under the active collation; *handled is false when none is
 * active (the caller compares bytes). */
int bq__collate_strings(const char *a, size_t la, const char *b, size_t lb, bool *handled)
{
    if (!active) {
        *handled = false;
        return 0;
    }
    *handled = true;
    UErrorCode st = U_ZERO_ERROR;
    UCollationResult r = ucol_strcollUTF8(active->ucol, a, (int32_t)la, b, (int32_t)lb, &st);
    if (U_FAILURE(st)) { /* invalid UTF-8: fall back to bytes */
        *handled = false;
        return 0;
    }
    return r == UCOL_LESS ? -1 : r == UCOL_GREATER ? 1 : 0;
}

bq_collation_t *bq_collation_ref(const bq_collation_t *c)
{
    bq_collation_t *m = (bq_collation_t *)c;
    if (m)
        atomic_fetch_add(&m->refs, 1);
    return m;
}

void bq_collation_destroy(bq_collation_t *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) > 1)
        return;
    if (c->ucol)
        ucol_close(c->ucol);
    if (c->spec)
        bson_destroy(c->spec);
    free(c);
}

const bson_t *bq_collation_spec(const bq_collation_t *c)
{
    return c->spec;
}

/* Sets one ICU attribute, keeping the first failure in *st. */
static void set_attr(UCollator *u, UColAttribute a, UColAttributeValue v, UErrorCode *st)
{
    if (U_SUCCESS(*st))
        ucol_setAttribute(u, a, v, st);
}

static bool field_bool(const bson_iter_t *it, const char *name, bool *out, bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_BOOL(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'collation.%s' is the wrong type '%s', expected type 'bool'",
                     name, bq_type_name(bson_iter_type(it)));
        return false;
    }
    *out = bson_iter_bool(it);
    return true;
}

static bool field_str(const bson_iter_t *it, const char *name, const char **out,
                      bq_error_t *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'collation.%s' is the wrong type '%s', expected type "
                     "'string'",
                     name, bq_type_name(bson_iter_type(it)));
        return false;
    }
    *out = bson_iter_utf8(it, NULL);
    return true;
}

/* True when ICU has collation data for the locale (before any "@keywords"). ucol_open
 * itself falls back to the root collation for anything, so it cannot tell. */
static bool locale_known(const char *locale)
{
    size_t n = strcspn(locale, "@");
    if (n == 4 && !strncmp(locale, "root", 4))
        return true;
    for (int32_t i = 0, count = ucol_countAvailable(); i < count; i++) {
        const char *a = ucol_getAvailable(i);
        if (strlen(a) == n && !strncmp(a, locale, n))
            return true;
    }
    return false;
}

bool bq_collation_new(const bson_t *spec, bq_collation_t **out, bq_error_t *err)
{
    *out = NULL;
    const char *locale = NULL, *case_first = "off", *alternate = "non-ignorable";
    const char *max_variable = "punct";
    int32_t strength = 3;
    bool case_level = false, numeric = false, backwards = false, normalization = false;
    bson_iter_t it;
    if (!bson_iter_init(&it, spec)) {
        bq_error_set(err, BQ_ERR_FailedToParse, "collation is not valid BSON");
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool ok = true;
        if (!strcmp(k, "locale")) {
            ok = field_str(&it, k, &locale, err);
        } else if (!strcmp(k, "strength")) {
            if (!BSON_ITER_HOLDS_NUMBER(&it)) {
                bq_error_set(err, BQ_ERR_TypeMismatch,
                             "BSON field 'collation.strength' is the wrong type '%s', "
                             "expected type 'int'",
                             bq_type_name(bson_iter_type(&it)));
                return false;
            }
            double d = bson_iter_as_double(&it);
            if (d != (int32_t)d || d < 1 || d > 5) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "strength must be an integer 1 through 5, got %g", d);
                return false;
            }
            strength = (int32_t)d;
        } else if (!strcmp(k, "caseLevel")) {
            ok = field_bool(&it, k, &case_level, err);
        } else if (!strcmp(k, "caseFirst")) {
            ok = field_str(&it, k, &case_first, err);
            if (ok && strcmp(case_first, "upper") && strcmp(case_first, "lower") &&
                strcmp(case_first, "off")) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "caseFirst must be \"upper\", \"lower\" or \"off\", got \"%s\"",
                             case_first);
                return false;
            }
        } else if (!strcmp(k, "numericOrdering")) {
            ok = field_bool(&it, k, &numeric, err);
        } else if (!strcmp(k, "alternate")) {
            ok = field_str(&it, k, &alternate, err);
            if (ok && strcmp(alternate, "shifted") && strcmp(alternate, "non-ignorable")) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "alternate must be \"non-ignorable\" or \"shifted\", got \"%s\"",
                             alternate);
                return false;
            }
        } else if (!strcmp(k, "maxVariable")) {
            ok = field_str(&it, k, &max_variable, err);
            if (ok && strcmp(max_variable, "punct") && strcmp(max_variable, "space")) {
                bq_error_set(err, BQ_ERR_FailedToParse,
                             "maxVariable must be \"punct\" or \"space\", got \"%s\"",
                             max_variable);
                return false;
            }
        } else if (!strcmp(k, "backwards")) {
            ok = field_bool(&it, k, &backwards, err);
        } else if (!strcmp(k, "normalization")) {
            ok = field_bool(&it, k, &normalization, err);
        } else if (!strcmp(k, "version")) {
            /* reported by mongod, accepted back as given */
        } else {
            bq_error_set(err, 40415, "BSON field 'collation.%s' is an unknown field.", k);
            return false;
        }
        if (!ok)
            return false;
    }
    if (!locale) {
        bq_error_set(err, 40414, "BSON field 'collation.locale' is missing but a required "
                                 "field");
        return false;
    }
    if (!strcmp(locale, "simple"))
        return true; /* the simple collation: binary comparison, *out stays NULL */

    UErrorCode st = U_ZERO_ERROR;
    UCollator *u = locale_known(locale) ? ucol_open(locale, &st) : NULL;
    if (!u || U_FAILURE(st)) {
        if (u)
            ucol_close(u);
        bq_error_set(err, BQ_ERR_BadValue, "Field 'locale' is invalid in: { locale: \"%s\" }",
                     locale);
        return false;
    }
    st = U_ZERO_ERROR;
    static const UColAttributeValue strengths[] = {UCOL_PRIMARY, UCOL_SECONDARY,
                                                   UCOL_TERTIARY, UCOL_QUATERNARY,
                                                   UCOL_IDENTICAL};
    set_attr(u, UCOL_STRENGTH, strengths[strength - 1], &st);
    set_attr(u, UCOL_CASE_LEVEL, case_level ? UCOL_ON : UCOL_OFF, &st);
    set_attr(u, UCOL_CASE_FIRST,
             !strcmp(case_first, "upper")   ? UCOL_UPPER_FIRST
             : !strcmp(case_first, "lower") ? UCOL_LOWER_FIRST
                                            : UCOL_OFF,
             &st);
    set_attr(u, UCOL_NUMERIC_COLLATION, numeric ? UCOL_ON : UCOL_OFF, &st);
    set_attr(u, UCOL_ALTERNATE_HANDLING,
             !strcmp(alternate, "shifted") ? UCOL_SHIFTED : UCOL_NON_IGNORABLE, &st);
    set_attr(u, UCOL_FRENCH_COLLATION, backwards ? UCOL_ON : UCOL_OFF, &st);
    set_attr(u, UCOL_NORMALIZATION_MODE, normalization ? UCOL_ON : UCOL_OFF, &st);
    if (U_SUCCESS(st))
        ucol_setMaxVariable(u, !strcmp(max_variable, "space") ? UCOL_REORDER_CODE_SPACE
                                                               : UCOL_REORDER_CODE_PUNCTUATION,
                            &st);
    if (U_FAILURE(st)) {
        ucol_close(u);
        bq_error_set(err, BQ_ERR_BadValue, "cannot configure the collation for locale \"%s\": %s",
                     locale, u_errorName(st));
        return false;
    }
    bq_collation_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    atomic_init(&c->refs, 1);
    c->ucol = u;
    c->spec = BCON_NEW("locale", BCON_UTF8(locale), "caseLevel", BCON_BOOL(case_level),
                       "caseFirst", BCON_UTF8(case_first), "strength", BCON_INT32(strength),
                       "numericOrdering", BCON_BOOL(numeric), "alternate",
                       BCON_UTF8(alternate), "maxVariable", BCON_UTF8(max_variable),
                       "normalization", BCON_BOOL(normalization), "backwards",
                       BCON_BOOL(backwards), "version", BCON_UTF8("57.1"));
    *out = c;
    return true;
}

/* Appends the collation sort key of a UTF-8 string to buf (a bson_string_t used as a
 * byte buffer would stop at NUL, so the caller gets a malloc'd array). */
uint8_t *bq__collation_key(const bq_collation_t *c, const char *s, size_t len, size_t *out_len)
{
    UErrorCode st = U_ZERO_ERROR;
    int32_t ulen = 0;
    u_strFromUTF8(NULL, 0, &ulen, s, (int32_t)len, &st);
    st = U_ZERO_ERROR;
    UChar *u = malloc(sizeof(UChar) * (size_t)(ulen + 1));
    if (!u)
        abort();
    u_strFromUTF8(u, ulen + 1, NULL, s, (int32_t)len, &st);
    if (U_FAILURE(st)) { /* invalid UTF-8: the bytes themselves */
        free(u);
        uint8_t *b = malloc(len + 1);
        if (!b)
            abort();
        memcpy(b, s, len);
        *out_len = len;
        return b;
    }
    int32_t klen = ucol_getSortKey(c->ucol, u, ulen, NULL, 0);
    uint8_t *key = malloc((size_t)klen + 1);
    if (!key)
        abort();
    ucol_getSortKey(c->ucol, u, ulen, key, klen + 1);
    free(u);
    *out_len = (size_t)klen;
    return key;
}
