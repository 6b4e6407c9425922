/*
 * cmd_index.h: the index commands (cmd_index.c), registered in wire_commands.c.
 */
#ifndef CMD_INDEX_H
#define CMD_INDEX_H

#include "wire_int.h"

bool cmd_create_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err);
bool cmd_drop_indexes(wire_cmd_ctx_t *ctx, bq_error_t *err);

/* collMod with an `index` field (hidden, expireAfterSeconds, prepareUnique, unique), for
 * cmd_coll_mod; coll is the collection the command names. */
bool cmd_index_coll_mod(wire_cmd_ctx_t *ctx, const char *coll, bq_error_t *err);

/* The indexes of c at snap as listIndexes lists them: the _id index (or a clustered
 * collection's clustered index; none for time-series buckets), then the secondary ones in
 * creation order. *out is a malloc'd array of new documents; the caller destroys each and
 * frees the array. */
size_t wire_index_specs(eng_coll_t *c, int64_t snap, bson_t ***out);

/* How many indexes c has at snap (0 when c is NULL), and their names into indexSizes
 * (sizes are not tracked: 0). */
int32_t wire_index_count(eng_coll_t *c, int64_t snap);
void wire_index_sizes(bson_t *sizes, eng_coll_t *c, int64_t snap);

#endif
