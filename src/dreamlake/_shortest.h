/* The shortest decimal text that reads back as the same double, written as orjson writes it. */
#ifndef DREAMLAKE_SHORTEST_H
#define DREAMLAKE_SHORTEST_H
#include <stddef.h>

#define SHORTEST_MAX 48 /* bytes of room shortest_double() needs: it writes past its text */

/* Writes finite `v` to `out` (SHORTEST_MAX bytes of room) and returns the length of its text: the fewest significant digits that read
   back as `v`, the closest to `v` of those (ties to even), in fixed notation when the decimal
   exponent is in [-5, 16) ("0.00001", "100.0", "-0.0"), else as "1.5e+300" or "1e-7". */
size_t shortest_double(double v, char *out);

/* Writes `v` in decimal to `out` (20 bytes of room) and returns the length of its text. */
size_t decimal_int(long long v, char *out);

#endif
