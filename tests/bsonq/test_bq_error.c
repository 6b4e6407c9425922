/*
 * test_bq_error.c: the shared error type (bsonq/bq_error.c) and the generated code table
 * (bsonq/bq_codes.def): code names, "Location<n>" for codes outside the table, setting
 * and prefixing errors, and NULL error pointers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "bq.h"

static const struct {
    int32_t code;
    const char *name;
} known[] = {
    {0, "OK"},
    {1, "InternalError"},
    {2, "BadValue"},
    {9, "FailedToParse"},
    {14, "TypeMismatch"},
    {26, "NamespaceNotFound"},
    {48, "NamespaceExists"},
    {50, "MaxTimeMSExpired"},
    {59, "CommandNotFound"},
    {121, "DocumentValidationFailure"},
    {238, "NotImplemented"},
    {292, "QueryExceededMemoryLimitNoDiskUseAllowed"},
    {9001, "SocketException"},
    {10107, "NotWritablePrimary"},
    {11000, "DuplicateKey"},
    {11601, "Interrupted"},
    {40415, "IDLUnknownField"},
};

Test(bq_error, code_names_come_from_table)
{
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        cr_expect_str_eq(bq_code_name(known[i].code), known[i].name, "code %d",
                         known[i].code);
        char buf[64];
        cr_expect_str_eq(bq_code_name_write(known[i].code, buf, sizeof buf), known[i].name,
                         "code %d (write)", known[i].code);
    }
}

Test(bq_error, enum_constants_match_numbers)
{
    cr_expect_eq(BQ_ERR_BadValue, 2);
    cr_expect_eq(BQ_ERR_TypeMismatch, 14);
    cr_expect_eq(BQ_ERR_NotImplemented, 238);
    cr_expect_eq(BQ_ERR_DuplicateKey, 11000);
    cr_expect_eq(BQ_ERR_InvalidBSONType, 357);
}

Test(bq_error, unknown_codes_are_named_location_n)
{
    static const int32_t unknown[] = {16554, 31253, 44, 99, 4000, 51024};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        char buf[64], want[64];
        snprintf(want, sizeof want, "Location%d", unknown[i]);
        cr_expect_str_eq(bq_code_name_write(unknown[i], buf, sizeof buf), want,
                         "code %d", unknown[i]);
        cr_expect_str_eq(bq_code_name(unknown[i]), "Location", "code %d", unknown[i]);
    }
}

Test(bq_error, obsolete_codes_keep_their_names)
{
    /* Obsolete codes stay in MongoDB's table under OBSOLETE_ names; the generator keeps them. */
    cr_expect_str_eq(bq_code_name(3), "OBSOLETE_DuplicateKey");
    cr_expect_str_eq(bq_code_name(84), "OBSOLETE_DuplicateKeyValue");
}

Test(bq_error, set_fills_code_name_message_location)
{
    bq_error_t err;
    bq_error_clear(&err);
    cr_expect_eq(err.code, 0);
    bq_error_set(&err, BQ_ERR_BadValue, "field '%s' must be %d", "x", 7);
    cr_expect_eq(err.code, 2);
    cr_expect_str_eq(err.code_name, "BadValue");
    cr_expect_str_eq(err.message, "field 'x' must be 7");
    cr_expect_not_null(err.file);
    cr_expect(strstr(err.file, "test_bq_error.c") != NULL);
    cr_expect_gt(err.line, 0);
}

Test(bq_error, set_truncates_long_messages)
{
    bq_error_t err;
    char big[2 * BQ_ERROR_MSG_MAX];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bq_error_set(&err, BQ_ERR_InternalError, "%s", big);
    cr_expect_eq(strlen(err.message), BQ_ERROR_MSG_MAX - 1);
}

Test(bq_error, prefix_prepends_to_message)
{
    bq_error_t err;
    bq_error_set(&err, BQ_ERR_TypeMismatch, "expected %s", "string");
    bq_error_prefix(&err, "in %s", "$concat");
    cr_expect_str_eq(err.message, "in $concat: expected string");
    cr_expect_eq(err.code, BQ_ERR_TypeMismatch);
    cr_expect_str_eq(err.code_name, "TypeMismatch");
}

Test(bq_error, null_error_is_allowed)
{
    bq_error_set(NULL, BQ_ERR_BadValue, "dropped %d", 1);
    bq_error_prefix(NULL, "dropped");
    bq_error_clear(NULL);
    cr_expect(true, "no crash with NULL err");
}

Test(bq_error, unknown_code_set_keeps_location_name)
{
    bq_error_t err;
    bq_error_set(&err, 16554, "bad operand");
    cr_expect_eq(err.code, 16554);
    cr_expect_str_eq(err.code_name, "Location");
    char buf[32];
    cr_expect_str_eq(bq_code_name_write(err.code, buf, sizeof buf), "Location16554");
}
