/*
 * wire_validate.h: collection validators (document validation), wire_validate.c.
 *
 * A collection's options may hold `validator` (any query filter, $jsonSchema and $expr
 * included), `validationLevel` ("strict" default, "moderate", "off") and
 * `validationAction` ("error" default, "warn"). create and collMod check them with
 * wire_validate_options; the write paths call wire_validate for every new document
 * version they are about to store.
 */
#ifndef WIRE_VALIDATE_H
#define WIRE_VALIDATE_H

#include "wire_int.h"

/* Checks the validation options among a create or collMod command's options `opts` for
 * db.coll: validator must be a document that compiles as a filter, the level and the
 * action one of their names. Errors: TypeMismatch (14), BadValue (2), the filter's own
 * parse errors (mongod reports the filter's code), InvalidOptions (72) for a non-empty
 * validator on a system.* collection (time-series buckets excepted) or in the admin,
 * local or config database, as mongod refuses them. */
bool wire_validate_options(const char *cmd, const char *db, const char *coll,
                           const bson_t *opts, bq_error_t *err);

/*
 * Checks `doc`, the new version of a document of ctx->db.coll about to be written, against
 * the collection's validator as of snapshot `snap`. `old` is the version it replaces
 * (NULL for an insert or an upsert): with validationLevel "moderate", a document whose old
 * version did not pass is not checked. Nothing is checked when the command says
 * bypassDocumentValidation: true, the level is "off", or there is no validator.
 *
 * Returns true when the write may go on (with validationAction "warn" a failure is
 * logged, not refused). Returns false with err DocumentValidationFailure (121) "Document
 * failed validation" otherwise; the errInfo ({failingDocumentId, details}) is kept under
 * (ctx->state, index) for wire_validate_errinfo_append. The index is the write's index in
 * the command (the insert's document, the update's statement).
 */
bool wire_validate(wire_cmd_ctx_t *ctx, const char *coll, int64_t snap, size_t index,
                   const bson_t *doc, const bson_t *old, bq_error_t *err);

/* The same for a write into another database's collection, db.coll ($merge and $out
 * with {db, coll}). */
bool wire_validate_in(wire_cmd_ctx_t *ctx, const char *db, const char *coll, int64_t snap,
                      size_t index, const bson_t *doc, const bson_t *old, bq_error_t *err);

/* Appends `errInfo` to a write error being built, when wire_validate kept one for
 * (owner, index), and forgets it. Only DocumentValidationFailure errors have one. */
void wire_validate_errinfo_append(const void *owner, size_t index, bson_t *write_error);

#endif
