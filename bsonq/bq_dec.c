/*
 * bq_dec.c: Decimal128 arithmetic and comparison (IEEE 754-2008 decimal128, BID encoding
 * as libbson stores it in bson_decimal128_t).
 *
 * Owns: unpacking/packing the BID bits, exact comparison, and add, subtract, multiply,
 * divide and remainder rounded to 34 digits with round-half-even, keeping IEEE's preferred
 * exponents for exact results. Text conversion is libbson's (bson_decimal128_to_string /
 * _from_string); nothing here parses or prints decimal strings itself, except through
 * printf's exact %e for doubles.
 *
 * How: a finite value is (sign, coefficient < 10^34 in an unsigned __int128, exponent).
 * Exact intermediate results are built as arrays of decimal digits (at most a few hundred),
 * then one routine, dec_round(), rounds them to 34 digits and into the exponent range.
 * Speed is not a goal: correctness and readability are.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bq_int.h"

typedef unsigned __int128 u128;

#define DEC_DIGITS 34
#define DEC_EMIN (-6176)
#define DEC_EMAX 6111
#define DEC_BIAS 6176
/* Room for digit arrays: 34 + 71 (add alignment) + slack. */
#define DIG_MAX 160

static u128 pow10_u128(int n)
{
    u128 p = 1;
    while (n-- > 0)
        p *= 10;
    return p;
}

static int ndigits(u128 v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Most significant digit first; returns the count (1 for zero). */
static int to_digits(u128 v, uint8_t *out)
{
    uint8_t tmp[40];
    int n = 0;
    do {
        tmp[n++] = (uint8_t)(v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void bq__dec_unpack(bson_decimal128_t d, bq__dec_t *out)
{
    uint64_t hi = d.high, lo = d.low;
    memset(out, 0, sizeof *out);
    out->neg = (hi >> 63) != 0;
    unsigned comb5 = (unsigned)((hi >> 58) & 0x1F);
    if (comb5 == 0x1F) {
        out->cls = BQ__DEC_NAN;
        out->neg = false;
        return;
    }
    if (comb5 == 0x1E) {
        out->cls = BQ__DEC_INF;
        return;
    }
    out->cls = BQ__DEC_FINITE;
    if (((hi >> 61) & 3) == 3) {
        /* The "large coefficient" form: always above 10^34 - 1, so non-canonical: zero. */
        out->exp = (int32_t)((hi >> 47) & 0x3FFF) - DEC_BIAS;
        out->coef = 0;
        return;
    }
    out->exp = (int32_t)((hi >> 49) & 0x3FFF) - DEC_BIAS;
    out->coef = ((u128)(hi & 0x1FFFFFFFFFFFFull) << 64) | lo;
    if (out->coef >= pow10_u128(DEC_DIGITS))
        out->coef = 0;
}

bson_decimal128_t bq__dec_pack(const bq__dec_t *d)
{
    bson_decimal128_t r;
    uint64_t sign = d->neg ? (1ull << 63) : 0;
    switch (d->cls) {
    case BQ__DEC_NAN:
        r.high = 0x7C00000000000000ull;
        r.low = 0;
        return r;
    case BQ__DEC_INF:
        r.high = sign | 0x7800000000000000ull;
        r.low = 0;
        return r;
    default:
        r.high = sign | ((uint64_t)(d->exp + DEC_BIAS) << 49) | (uint64_t)(d->coef >> 64);
        r.low = (uint64_t)d->coef;
        return r;
    }
}

static bson_decimal128_t dec_nan(void)
{
    bq__dec_t d = {.cls = BQ__DEC_NAN};
    return bq__dec_pack(&d);
}

static bson_decimal128_t dec_inf(bool neg)
{
    bq__dec_t d = {.cls = BQ__DEC_INF, .neg = neg};
    return bq__dec_pack(&d);
}

static bson_decimal128_t dec_zero(bool neg, int32_t exp)
{
    if (exp < DEC_EMIN)
        exp = DEC_EMIN;
    if (exp > DEC_EMAX)
        exp = DEC_EMAX;
    bq__dec_t d = {.cls = BQ__DEC_FINITE, .neg = neg, .coef = 0, .exp = exp};
    return bq__dec_pack(&d);
}

/* Rounds the exact value (-1)^neg * digits * 10^exp (plus "something nonzero below the
 * last digit" when sticky) to a decimal128: 34 digits, round half to even, exponent
 * clamped into range (overflow gives infinity, underflow rounds toward subnormal/zero). */
static bson_decimal128_t dec_round(bool neg, const uint8_t *dig, int n, int64_t exp,
                                   bool sticky)
{
    int s = 0;
    while (s < n && dig[s] == 0)
        s++;
    int len = n - s;
    int64_t drop = 0;
    if (len > DEC_DIGITS)
        drop = len - DEC_DIGITS;
    if (exp + drop < DEC_EMIN)
        drop = DEC_EMIN - exp;
    u128 coef = 0;
    if (drop > 0) {
        int64_t keep = len - drop;
        int rd = 0;
        for (int64_t i = 0; i < keep; i++)
            coef = coef * 10 + dig[s + i];
        if (keep >= 0 && keep < len)
            rd = dig[s + keep];
        else if (keep < 0 && len > 0)
            sticky = true; /* every digit lies below the round digit */
        for (int64_t i = keep + 1; i < len; i++)
            if (i >= 0 && dig[s + i]) {
                sticky = true;
                break;
            }
        if (rd > 5 || (rd == 5 && (sticky || (coef & 1))))
            coef++;
        exp += drop;
        if (coef == pow10_u128(DEC_DIGITS)) {
            coef /= 10;
            exp++;
        }
    } else {
        for (int i = 0; i < len; i++)
            coef = coef * 10 + dig[s + i];
    }
    if (coef == 0)
        return dec_zero(neg, exp < DEC_EMIN ? DEC_EMIN : (int32_t)(exp > DEC_EMAX ? DEC_EMAX : exp));
    if (exp > DEC_EMAX) {
        int64_t pad = exp - DEC_EMAX;
        if (ndigits(coef) + pad > DEC_DIGITS)
            return dec_inf(neg);
        coef *= pow10_u128((int)pad);
        exp = DEC_EMAX;
    }
    bq__dec_t r = {.cls = BQ__DEC_FINITE, .neg = neg, .coef = coef, .exp = (int32_t)exp};
    return bq__dec_pack(&r);
}

bool bq_dec_is_nan(bson_decimal128_t d)
{
    bq__dec_t x;
    bq__dec_unpack(d, &x);
    return x.cls == BQ__DEC_NAN;
}

bool bq_dec_is_inf(bson_decimal128_t d)
{
    bq__dec_t x;
    bq__dec_unpack(d, &x);
    return x.cls == BQ__DEC_INF;
}

bool bq_dec_is_zero(bson_decimal128_t d)
{
    bq__dec_t x;
    bq__dec_unpack(d, &x);
    return x.cls == BQ__DEC_FINITE && x.coef == 0;
}

/* Magnitude comparison of two nonzero finite values. */
static int cmp_mag(const bq__dec_t *a, const bq__dec_t *b)
{
    int na = ndigits(a->coef), nb = ndigits(b->coef);
    int64_t adja = (int64_t)a->exp + na - 1, adjb = (int64_t)b->exp + nb - 1;
    if (adja != adjb)
        return adja < adjb ? -1 : 1;
    u128 ca = a->coef, cb = b->coef;
    /* Same adjusted exponent, so the exponent gap is below 34 and scaling stays in range. */
    if (a->exp > b->exp)
        ca *= pow10_u128(a->exp - b->exp);
    else if (b->exp > a->exp)
        cb *= pow10_u128(b->exp - a->exp);
    return ca < cb ? -1 : ca > cb ? 1 : 0;
}

int bq_dec_compare(bson_decimal128_t da, bson_decimal128_t db)
{
    bq__dec_t a, b;
    bq__dec_unpack(da, &a);
    bq__dec_unpack(db, &b);
    if (a.cls == BQ__DEC_NAN || b.cls == BQ__DEC_NAN)
        return (a.cls == BQ__DEC_NAN) - (b.cls == BQ__DEC_NAN) == 0
                   ? 0
                   : (a.cls == BQ__DEC_NAN ? -1 : 1);
    if (a.cls == BQ__DEC_INF || b.cls == BQ__DEC_INF) {
        int ra = a.cls == BQ__DEC_INF ? (a.neg ? -1 : 1) : 0;
        int rb = b.cls == BQ__DEC_INF ? (b.neg ? -1 : 1) : 0;
        if (ra != rb)
            return ra < rb ? -1 : 1;
        if (ra != 0)
            return 0;
    }
    bool za = a.coef == 0, zb = b.coef == 0;
    if (za && zb)
        return 0;
    if (za)
        return b.neg ? 1 : -1;
    if (zb)
        return a.neg ? -1 : 1;
    if (a.neg != b.neg)
        return a.neg ? -1 : 1;
    int m = cmp_mag(&a, &b);
    return a.neg ? -m : m;
}

/* Re-expresses a nonzero finite value at an exponent as close to `want` (below its own)
 * as 34 digits allow: the exact result of adding a zero. */
static bson_decimal128_t lower_exp(bq__dec_t v, int32_t want)
{
    if (v.coef != 0 && v.exp > want) {
        int room = DEC_DIGITS - ndigits(v.coef);
        int shift = v.exp - want < room ? v.exp - want : room;
        v.coef *= pow10_u128(shift);
        v.exp -= shift;
    } else if (v.coef == 0 && v.exp > want) {
        v.exp = want;
    }
    return bq__dec_pack(&v);
}

static bson_decimal128_t add_finite(bq__dec_t a, bq__dec_t b)
{
    if (a.coef == 0 && b.coef == 0)
        return dec_zero(a.neg && b.neg, a.exp < b.exp ? a.exp : b.exp);
    if (a.coef == 0)
        return lower_exp(b, a.exp);
    if (b.coef == 0)
        return lower_exp(a, b.exp);
    if (a.exp < b.exp) {
        bq__dec_t t = a;
        a = b;
        b = t;
    }
    int64_t d = (int64_t)a.exp - b.exp;
    if (d > 70) {
        /* b lies wholly below the rounding position of any result: keep only that it is
         * there (one unit 71 places down has the same effect on rounding). */
        d = 71;
        b.coef = 1;
        b.exp = (int32_t)(a.exp - 71);
    }
    uint8_t da[DIG_MAX] = {0}, db[DIG_MAX] = {0}, r[DIG_MAX] = {0};
    uint8_t tmp[40];
    int na = to_digits(a.coef, tmp);
    int len = na + (int)d + 1; /* one spare digit for the carry */
    if (len < 36)
        len = 36;
    /* Right-align both operands in arrays of `len` digits. */
    memcpy(da + len - (int)d - na, tmp, (size_t)na);
    int nb = to_digits(b.coef, tmp);
    memcpy(db + len - nb, tmp, (size_t)nb);
    bool neg;
    if (a.neg == b.neg) {
        int carry = 0;
        for (int i = len - 1; i >= 0; i--) {
            int s = da[i] + db[i] + carry;
            r[i] = (uint8_t)(s % 10);
            carry = s / 10;
        }
        neg = a.neg;
    } else {
        int c = memcmp(da, db, (size_t)len);
        if (c == 0)
            return dec_zero(false, b.exp);
        const uint8_t *big = c > 0 ? da : db, *small = c > 0 ? db : da;
        neg = c > 0 ? a.neg : b.neg;
        int borrow = 0;
        for (int i = len - 1; i >= 0; i--) {
            int s = big[i] - small[i] - borrow;
            borrow = s < 0;
            r[i] = (uint8_t)(s < 0 ? s + 10 : s);
        }
    }
    return dec_round(neg, r, len, b.exp, false);
}

bson_decimal128_t bq_dec_add(bson_decimal128_t x, bson_decimal128_t y)
{
    bq__dec_t a, b;
    bq__dec_unpack(x, &a);
    bq__dec_unpack(y, &b);
    if (a.cls == BQ__DEC_NAN || b.cls == BQ__DEC_NAN)
        return dec_nan();
    if (a.cls == BQ__DEC_INF) {
        if (b.cls == BQ__DEC_INF && a.neg != b.neg)
            return dec_nan();
        return dec_inf(a.neg);
    }
    if (b.cls == BQ__DEC_INF)
        return dec_inf(b.neg);
    return add_finite(a, b);
}

bson_decimal128_t bq_dec_sub(bson_decimal128_t x, bson_decimal128_t y)
{
    bq__dec_t b;
    bq__dec_unpack(y, &b);
    if (b.cls != BQ__DEC_NAN)
        b.neg = !b.neg;
    return bq_dec_add(x, bq__dec_pack(&b));
}

bson_decimal128_t bq_dec_mul(bson_decimal128_t x, bson_decimal128_t y)
{
    bq__dec_t a, b;
    bq__dec_unpack(x, &a);
    bq__dec_unpack(y, &b);
    bool neg = a.neg != b.neg;
    if (a.cls == BQ__DEC_NAN || b.cls == BQ__DEC_NAN)
        return dec_nan();
    if (a.cls == BQ__DEC_INF || b.cls == BQ__DEC_INF) {
        if ((a.cls == BQ__DEC_FINITE && a.coef == 0) || (b.cls == BQ__DEC_FINITE && b.coef == 0))
            return dec_nan();
        return dec_inf(neg);
    }
    uint8_t da[40], db[40];
    int na = to_digits(a.coef, da), nb = to_digits(b.coef, db);
    int acc[80] = {0};
    for (int i = na - 1; i >= 0; i--)
        for (int j = nb - 1; j >= 0; j--)
            acc[i + j + 1] += da[i] * db[j];
    uint8_t r[80];
    int carry = 0;
    for (int k = na + nb - 1; k >= 0; k--) {
        int s = acc[k] + carry;
        r[k] = (uint8_t)(s % 10);
        carry = s / 10;
    }
    return dec_round(neg, r, na + nb, (int64_t)a.exp + b.exp, false);
}

bson_decimal128_t bq_dec_div(bson_decimal128_t x, bson_decimal128_t y)
{
    bq__dec_t a, b;
    bq__dec_unpack(x, &a);
    bq__dec_unpack(y, &b);
    bool neg = a.neg != b.neg;
    if (a.cls == BQ__DEC_NAN || b.cls == BQ__DEC_NAN)
        return dec_nan();
    if (a.cls == BQ__DEC_INF)
        return b.cls == BQ__DEC_INF ? dec_nan() : dec_inf(neg);
    if (b.cls == BQ__DEC_INF)
        return dec_zero(neg, DEC_EMIN);
    if (b.coef == 0)
        return a.coef == 0 ? dec_nan() : dec_inf(neg);
    int64_t ideal = (int64_t)a.exp - b.exp;
    if (a.coef == 0)
        return dec_zero(neg, (int32_t)(ideal < DEC_EMIN ? DEC_EMIN : ideal > DEC_EMAX ? DEC_EMAX : ideal));
    /* Long division, one quotient digit per dividend digit, appending zeros to the dividend
     * until the quotient has 35 significant digits (34 + a round digit) or is exact. The
     * remainder stays below the divisor (< 10^34), so r * 10 + 9 fits in 128 bits. */
    uint8_t ad[40], q[DIG_MAX];
    int na = to_digits(a.coef, ad);
    int nq = 0, sig = 0, zeros = 0;
    u128 r = 0;
    for (int i = 0;; i++) {
        int digit = 0;
        if (i < na)
            digit = ad[i];
        else
            zeros++;
        r = r * 10 + (u128)digit;
        int qd = (int)(r / b.coef);
        r %= b.coef;
        q[nq++] = (uint8_t)qd;
        if (sig || qd)
            sig++;
        if (i + 1 >= na && (r == 0 || sig >= DEC_DIGITS + 1))
            break;
    }
    int64_t exp = ideal - zeros;
    if (r == 0) {
        /* Exact: climb back toward the preferred exponent by dropping trailing zeros. */
        while (exp < ideal && nq > 1 && q[nq - 1] == 0) {
            nq--;
            exp++;
        }
    }
    return dec_round(neg, q, nq, exp, r != 0);
}

bson_decimal128_t bq_dec_mod(bson_decimal128_t x, bson_decimal128_t y)
{
    bq__dec_t a, b;
    bq__dec_unpack(x, &a);
    bq__dec_unpack(y, &b);
    if (a.cls != BQ__DEC_FINITE || b.cls == BQ__DEC_NAN || (b.cls == BQ__DEC_FINITE && b.coef == 0))
        return dec_nan();
    if (b.cls == BQ__DEC_INF)
        return x; /* |a| < inf: the remainder is a itself */
    int32_t e = a.exp < b.exp ? a.exp : b.exp;
    u128 rem;
    if (a.coef == 0) {
        rem = 0;
    } else if (a.exp >= b.exp) {
        /* (ca * 10^k) mod cb, one power of ten at a time. */
        rem = a.coef % b.coef;
        for (int32_t k = a.exp - b.exp; k > 0; k--)
            rem = (rem * 10) % b.coef;
    } else {
        int shift = b.exp - a.exp;
        if (ndigits(b.coef) + shift > ndigits(a.coef)) {
            rem = a.coef; /* |b| > |a| */
        } else {
            u128 m = b.coef * pow10_u128(shift);
            rem = a.coef % m;
        }
    }
    bq__dec_t r = {.cls = BQ__DEC_FINITE, .neg = a.neg, .coef = rem, .exp = e};
    return bq__dec_pack(&r);
}

bson_decimal128_t bq_dec_from_int64(int64_t v)
{
    bq__dec_t d = {.cls = BQ__DEC_FINITE, .neg = v < 0, .exp = 0};
    d.coef = v < 0 ? (u128)(-(v + 1)) + 1 : (u128)v;
    return bq__dec_pack(&d);
}

bson_decimal128_t bq_dec_from_double(double v, int digits)
{
    if (isnan(v))
        return dec_nan();
    if (isinf(v))
        return dec_inf(v < 0);
    if (v == 0)
        return dec_zero(signbit(v) != 0, 0);
    if (digits < 1)
        digits = 1;
    if (digits > DEC_DIGITS)
        digits = DEC_DIGITS;
    /* glibc's %e is exact and correctly rounded (to nearest, ties to even). */
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    bson_decimal128_t d;
    if (!bson_decimal128_from_string(buf, &d))
        return dec_nan();
    return d;
}

double bq_dec_to_double(bson_decimal128_t d)
{
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&d, buf);
    return strtod(buf, NULL);
}

bool bq_dec_to_int64(bson_decimal128_t d, int64_t *out, bool *exact)
{
    bq__dec_t x;
    bq__dec_unpack(d, &x);
    *out = 0;
    if (exact)
        *exact = false;
    if (x.cls != BQ__DEC_FINITE)
        return false;
    u128 ip;
    bool ex = true;
    if (x.coef == 0) {
        ip = 0;
    } else if (x.exp >= 0) {
        if (ndigits(x.coef) + x.exp > 19)
            return false;
        ip = x.coef * pow10_u128(x.exp);
    } else if (-x.exp > 34) {
        ip = 0;
        ex = false;
    } else {
        u128 p = pow10_u128(-x.exp);
        ip = x.coef / p;
        ex = x.coef % p == 0;
    }
    u128 lim = (u128)INT64_MAX + (x.neg ? 1 : 0);
    if (ip > lim)
        return false;
    if (x.neg)
        *out = ip == (u128)INT64_MAX + 1 ? INT64_MIN : -(int64_t)ip;
    else
        *out = (int64_t)ip;
    if (exact)
        *exact = ex;
    return true;
}
