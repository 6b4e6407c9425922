/*
 * bq_type.c: the table of BSON type aliases MongoDB uses in $type and in error messages.
 */
#include <string.h>

#include "bq_type.h"

static const struct {
    bson_type_t type;
    const char *name;
} type_names[] = {
    {BSON_TYPE_DOUBLE, "double"},       {BSON_TYPE_UTF8, "string"},
    {BSON_TYPE_DOCUMENT, "object"},     {BSON_TYPE_ARRAY, "array"},
    {BSON_TYPE_BINARY, "binData"},      {BSON_TYPE_UNDEFINED, "undefined"},
    {BSON_TYPE_OID, "objectId"},        {BSON_TYPE_BOOL, "bool"},
    {BSON_TYPE_DATE_TIME, "date"},      {BSON_TYPE_NULL, "null"},
    {BSON_TYPE_REGEX, "regex"},         {BSON_TYPE_DBPOINTER, "dbPointer"},
    {BSON_TYPE_CODE, "javascript"},     {BSON_TYPE_SYMBOL, "symbol"},
    {BSON_TYPE_CODEWSCOPE, "javascriptWithScope"},
    {BSON_TYPE_INT32, "int"},           {BSON_TYPE_TIMESTAMP, "timestamp"},
    {BSON_TYPE_INT64, "long"},          {BSON_TYPE_DECIMAL128, "decimal"},
    {BSON_TYPE_MINKEY, "minKey"},       {BSON_TYPE_MAXKEY, "maxKey"},
};

const char *bq_type_name(bson_type_t type)
{
    if (type == BSON_TYPE_EOD)
        return "missing";
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].type == type)
            return type_names[i].name;
    return "unknown";
}

bool bq_type_from_name(const char *name, bson_type_t *type)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(type_names[i].name, name) == 0) {
            *type = type_names[i].type;
            return true;
        }
    }
    return false;
}
