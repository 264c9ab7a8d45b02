/* Shortest round-trip digits of a double, after Ulf Adams' Ryu (PLDI 2018): the interval of
   decimals that read back as the double is scaled by a 125-bit power of 5 (_pow5.h), and
   digits are removed while both of its ends still differ; the digits left, rounded, are the
   shortest, and the closest to the double. Exact integer arithmetic throughout. */
#include "_shortest.h"

#include <stdint.h>
#include <string.h>

#include "_pow5.h"

typedef unsigned __int128 u128;

/* floor(log10(2^e)) for 0 <= e <= 1650. */
static uint32_t log10_pow2(int32_t e) { return ((uint32_t)e * 78913) >> 18; }
/* floor(log10(5^e)) for 0 <= e <= 2620. */
static uint32_t log10_pow5(int32_t e) { return ((uint32_t)e * 732923) >> 20; }
/* The bits of 5^e (1 for e = 0), for 0 <= e <= 3528. */
static int32_t pow5_bits(int32_t e) { return (int32_t)((((uint32_t)e) * 1217359) >> 19) + 1; }

static uint32_t pow5_factor(uint64_t v) {
    uint32_t count = 0;
    while (v % 5 == 0) {
        v /= 5;
        count++;
    }
    return count;
}

static int multiple_of_pow5(uint64_t v, uint32_t p) { return pow5_factor(v) >= p; }
static int multiple_of_pow2(uint64_t v, uint32_t p) { return (v & ((1ull << p) - 1)) == 0; }

/* (m * mul) >> j, for j >= 64, where mul is 125 bits in two words. */
static uint64_t mul_shift(uint64_t m, const uint64_t *mul, int32_t j) {
    u128 low = (u128)m * mul[0], high = (u128)m * mul[1];
    return (uint64_t)(((low >> 64) + high) >> (j - 64));
}

static const char PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";

/* How many decimal digits `v` > 0 has. */
static uint32_t digits_of(uint64_t v) {
    static const uint64_t tens[] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u,
                                    1000000000u, 10000000000u, 100000000000u, 1000000000000u,
                                    10000000000000u, 100000000000000u, 1000000000000000u,
                                    10000000000000000u, 100000000000000000u, 1000000000000000000u,
                                    10000000000000000000u};
    const uint32_t t = ((uint32_t)(64 - __builtin_clzll(v | 1)) * 1233) >> 12; /* log10 of v's top bit, about */
    return t + (v >= tens[t]);
}

/* The `n` decimal digits of `v`, two at a time, ending at `end`. */
static void put_digits(uint64_t v, char *end) {
    while (v >= 100000000) {
        const uint32_t low = (uint32_t)(v % 100000000), high4 = low / 10000, low4 = low % 10000;
        v /= 100000000;
        memcpy(end - 2, PAIRS + 2 * (low4 % 100), 2);
        memcpy(end - 4, PAIRS + 2 * (low4 / 100), 2);
        memcpy(end - 6, PAIRS + 2 * (high4 % 100), 2);
        memcpy(end - 8, PAIRS + 2 * (high4 / 100), 2);
        end -= 8;
    }
    uint32_t rest = (uint32_t)v;
    for (; rest >= 100; rest /= 100) memcpy(end -= 2, PAIRS + 2 * (rest % 100), 2);
    if (rest >= 10) memcpy(end - 2, PAIRS + 2 * rest, 2);
    else end[-1] = (char)('0' + rest);
}

/* The `n` digits of `v` at `w` with a point after the first `before`; past the point's end.
   The digits are put one byte to the right, and those before the point moved back one at a
   time: bytes just stored in pairs can be loaded one by one, unlike in words (shortest_double). */
static char *put_point(uint64_t v, uint32_t n, int32_t before, char *w) {
    put_digits(v, w + 1 + n);
    for (int32_t i = 0; i < before; i++) w[i] = w[i + 1];
    w[before] = '.';
    return w + n + 1;
}

size_t decimal_int(long long v, char *out) {
    const uint64_t u = v < 0 ? 0ull - (uint64_t)v : (uint64_t)v;
    const size_t sign = v < 0, n = u ? digits_of(u) : 1;
    out[0] = '-'; /* overwritten by the first digit when v >= 0 */
    put_digits(u, out + sign + n);
    return sign + n;
}

/* The digits of a finite, nonzero |double| with the bits `mantissa` and `exponent`:
   `*e10` is the power of 10 of the last digit. */
static uint64_t shortest_digits(uint64_t mantissa, uint32_t exponent, int32_t *e10) {
    int32_t e2;
    uint64_t m2;
    if (exponent == 0) {
        e2 = 1 - 1023 - 52 - 2;
        m2 = mantissa;
    } else {
        e2 = (int32_t)exponent - 1023 - 52 - 2;
        m2 = (1ull << 52) | mantissa;
    }
    const int accept_bounds = (m2 & 1) == 0; /* ties to even: an even double owns its bounds */
    const uint64_t mv = 4 * m2;
    const uint32_t mm_shift = mantissa != 0 || exponent <= 1; /* the lower gap is half the upper */
    uint64_t vr, vp, vm;
    int32_t e;
    int vm_zeros = 0, vr_zeros = 0; /* whether the digits removed from vm / vr were all 0 */
    if (e2 >= 0) {
        const uint32_t q = log10_pow2(e2) - (e2 > 3);
        e = (int32_t)q;
        const int32_t k = POW5_BITS + pow5_bits((int32_t)q) - 1;
        const int32_t i = -e2 + (int32_t)q + k;
        vr = mul_shift(4 * m2, POW5_INV[q], i);
        vp = mul_shift(4 * m2 + 2, POW5_INV[q], i);
        vm = mul_shift(4 * m2 - 1 - mm_shift, POW5_INV[q], i);
        if (q <= 21) {
            if (mv % 5 == 0) vr_zeros = multiple_of_pow5(mv, q);
            else if (accept_bounds) vm_zeros = multiple_of_pow5(mv - 1 - mm_shift, q);
            else vp -= (uint64_t)multiple_of_pow5(mv + 2, q);
        }
    } else {
        const uint32_t q = log10_pow5(-e2) - (-e2 > 1);
        e = (int32_t)q + e2;
        const int32_t i = -e2 - (int32_t)q;
        const int32_t k = pow5_bits(i) - POW5_BITS;
        const int32_t j = (int32_t)q - k;
        vr = mul_shift(4 * m2, POW5[i], j);
        vp = mul_shift(4 * m2 + 2, POW5[i], j);
        vm = mul_shift(4 * m2 - 1 - mm_shift, POW5[i], j);
        if (q <= 1) {
            vr_zeros = 1; /* mv has at least q trailing 0 bits */
            if (accept_bounds) vm_zeros = mm_shift == 1;
            else vp--;
        } else if (q < 63) {
            vr_zeros = multiple_of_pow2(mv, q);
        }
    }
    int32_t removed = 0;
    uint8_t last = 0; /* the last digit removed from vr */
    uint64_t out;
    if (vm_zeros || vr_zeros) { /* the rare case: exact ends or an exact tie */
        while (vp / 10 > vm / 10) {
            vm_zeros &= vm % 10 == 0;
            vr_zeros &= last == 0;
            last = (uint8_t)(vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vm_zeros) {
            while (vm % 10 == 0) {
                vr_zeros &= last == 0;
                last = (uint8_t)(vr % 10);
                vr /= 10;
                vp /= 10;
                vm /= 10;
                removed++;
            }
        }
        if (vr_zeros && last == 5 && vr % 2 == 0) last = 4; /* exactly halfway: to even */
        out = vr + ((vr == vm && (!accept_bounds || !vm_zeros)) || last >= 5);
    } else {
        /* As many digits as can go, found 8, 4, 2 and 1 at a time (if k can go, so can fewer;
           constant divisors compile to multiplications). vr rounds up when what goes is half
           or more of the last digit kept. */
        int round_up = 0;
#define REMOVE(ten, count)                  \
    do {                                    \
        round_up = vr % (ten) >= (ten) / 2; \
        vr /= (ten);                        \
        vp /= (ten);                        \
        vm /= (ten);                        \
        removed += (count);                 \
    } while (0)
        while (vp / 100000000 > vm / 100000000) REMOVE(100000000u, 8);
        if (vp / 10000 > vm / 10000) REMOVE(10000u, 4);
        if (vp / 100 > vm / 100) REMOVE(100u, 2);
        if (vp / 10 > vm / 10) REMOVE(10u, 1);
#undef REMOVE
        out = vr + (vr == vm || round_up);
    }
    *e10 = e + removed;
    return out;
}

/* The shortest digits of |double| `bits` when they are at most 15 and its decimal exponent is
   in [-7, 15) (the common 0.001, 1.5, 250.0): 1, else 0 and Ryu decides. With K such that
   T = round(|v| * 10^K) < 10^15, T * 10^-K is the one multiple of 10^-K that reads back as v
   if any does (an ulp of v is under 0.45 * 10^-K), and every shorter decimal that does is that
   same number: so T, its trailing zeros removed, is the answer. The product is off by under 0.3
   from the multiple, so rounding finds it; T / 10^K is exact division of exact operands
   (T < 2^53, 10^K <= 10^22), correctly rounded: it reads back as v exactly when T does. */
static int short_decimal(uint64_t bits, uint32_t exponent, uint64_t *digits, int32_t *e10) {
    static const double tens[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (exponent < 1023 - 24 || exponent > 1023 + 49) return 0; /* |v| under 2^-24 or from 2^50 */
    double v;
    memcpy(&v, &bits, sizeof v);
    /* Integer digits of v, from its binary exponent: maybe one too many, never too few. */
    int32_t k = 15 - ((int32_t)(((int64_t)exponent - 1023 + 1) * 78913 >> 18) + 1);
    if (k < 0 || k > 22) return 0;
    double t = v * tens[k];
    if (t >= 1e15) {
        if (--k < 0) return 0;
        t = v * tens[k];
    }
    uint64_t n = (uint64_t)(t + 0.5);
    if (n == 0 || n >= 1000000000000000u) return 0;
    /* The multiple, if any, is within 2^-52 * t of t (half an ulp of v, scaled, and half of t's):
       most doubles are not, and skip the division. */
    const double off = t - (double)n;
    if (off > t * 0x1p-51 || -off > t * 0x1p-51 || (double)n / tens[k] != v) return 0;
    int32_t e = -k;
    if (n % 100000000 == 0) n /= 100000000, e += 8; /* n < 10^15: at most 14 zeros */
    if (n % 10000 == 0) n /= 10000, e += 4;
    if (n % 100 == 0) n /= 100, e += 2;
    if (n % 10 == 0) n /= 10, e += 1;
    *digits = n;
    *e10 = e;
    return 1;
}

size_t shortest_double(double v, char *out) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    char *w = out;
    if (bits >> 63) *w++ = '-';
    const uint64_t mantissa = bits & ((1ull << 52) - 1);
    const uint32_t exponent = (uint32_t)((bits >> 52) & 0x7ff);
    if (mantissa == 0 && exponent == 0) {
        memcpy(w, "0.0", 3);
        return (size_t)(w - out) + 3;
    }
    int32_t e10;
    uint64_t d = 0;
    if (!short_decimal(bits & ~(1ull << 63), exponent, &d, &e10)) d = shortest_digits(mantissa, exponent, &e10);
    /* The digits go straight to where they belong: copying them from a scratch buffer in
       wide words would load what was just stored in pairs, which the CPU cannot forward
       (a stall that was most of the time of "1.5"). Moving a few bytes one at a time can. */
    const uint32_t n = digits_of(d);
    const int32_t sci = e10 + (int32_t)n - 1; /* the exponent in d.ddd x 10^sci */
    if (sci >= -5 && sci < 16) {
        if (e10 >= 0) { /* an integer: its digits, zeros, ".0" */
            put_digits(d, w + n);
            w += n;
            memset(w, '0', (size_t)e10);
            w += e10;
            memcpy(w, ".0", 2);
            w += 2;
        } else if (sci >= 0) { /* digits, a point inside them */
            w = put_point(d, n, sci + 1, w);
        } else { /* "0.", up to 4 zeros, digits */
            memcpy(w, "0.00000", 8);
            w += 2 + (-sci - 1);
            put_digits(d, w + n);
            w += n;
        }
    } else {
        if (n > 1) {
            w = put_point(d, n, 1, w);
        } else {
            put_digits(d, w + 1);
            w += 1;
        }
        *w++ = 'e';
        *w++ = sci < 0 ? '-' : '+';
        uint32_t a = (uint32_t)(sci < 0 ? -sci : sci);
        if (a >= 100) *w++ = (char)('0' + a / 100);
        if (a >= 10) *w++ = (char)('0' + a / 10 % 10);
        *w++ = (char)('0' + a % 10);
    }
    return (size_t)(w - out);
}
