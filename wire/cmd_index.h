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

#endif
