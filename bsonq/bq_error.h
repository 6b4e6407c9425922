/*
 * bq_error.h: the one error type every NEDB layer returns (DESIGN.md section 8).
 *
 * A failing function returns false (or NULL) and fills a caller-owned bq_error_t passed as
 * its last parameter (NULL is allowed: the error is then dropped). It does not log: whoever
 * handles the error decides. Only wire/'s dispatcher turns an error into a reply
 * {ok: 0, errmsg, code, codeName}.
 *
 * Codes are MongoDB's own numbers. Their names live in one table, bq_codes.def, generated
 * from MongoDB's error_codes.yml; use the BQ_ERR_<codeName> constants, never bare numbers.
 */
#ifndef BQ_ERROR_H
#define BQ_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bq_error_code {
#define BQ_CODE(name, num) BQ_ERR_##name = (num),
#include "bq_codes.def"
#undef BQ_CODE
};

#define BQ_ERROR_MSG_MAX 512

typedef struct bq_error {
    int32_t code;           /* MongoDB error code; 0 means no error */
    const char *code_name;  /* points into the generated table; never NULL once set */
    char message[BQ_ERROR_MSG_MAX];
    const char *file;       /* where the error was first found (debugging aid) */
    int line;
} bq_error_t;

/* Returns MongoDB's codeName for `code` from the table, or the static string "Location"
 * for codes outside it (aggregation "location" codes such as 16554, which mongod names
 * "Location<n>": use bq_code_name_write() for the full name). Never NULL. */
const char *bq_code_name(int32_t code);

/* Writes MongoDB's codeName for `code` into buf: the table name, or "Location<code>" for
 * codes not in the table, as mongod reports them. Returns buf. */
char *bq_code_name_write(int32_t code, char *buf, size_t size);

/* Set an error: bq_error_set(err, BQ_ERR_BadValue, "field '%s' must be ...", name).
 * A no-op when err is NULL. Keeps the first error's location for debugging. */
#define bq_error_set(err, code, ...) \
    bq__error_set((err), (int32_t)(code), __FILE__, __LINE__, __VA_ARGS__)

void bq__error_set(bq_error_t *err, int32_t code, const char *file, int line,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Prefix the message of an already-set error: "<prefix>: <old message>". */
void bq_error_prefix(bq_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void bq_error_clear(bq_error_t *err)
{
    if (err) {
        err->code = 0;
        err->code_name = "";
        err->message[0] = '\0';
        err->file = 0;
        err->line = 0;
    }
}

#endif
