/*
 * bq_type.h: BSON type names as MongoDB spells them ("double", "string", "object",
 * "array", "binData", ..., "decimal", "minKey", "maxKey"), used by $type, $convert,
 * error messages and the like.
 */
#ifndef BQ_TYPE_H
#define BQ_TYPE_H

#include <bson/bson.h>

/* MongoDB's alias for a BSON type ("missing" for BSON_TYPE_EOD, "unknown" otherwise
 * unrecognized). Never NULL; a static string. */
const char *bq_type_name(bson_type_t type);

/* The BSON type whose alias is `name`; false when no type has that alias ("number" is
 * not a single type and is not accepted here). */
bool bq_type_from_name(const char *name, bson_type_t *type);

#endif
