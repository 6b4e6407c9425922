/*
 * agg_stage_basic_int.h: what the files of the "basic" stage family share (agg_stage_basic.c,
 * agg_stage_project.c, agg_stage_misc.c) and nothing else sees: the stage kinds defined
 * outside agg_stage_basic.c (which lists the family in agg__stages_basic) and small
 * document helpers.
 */
#ifndef AGG_STAGE_BASIC_INT_H
#define AGG_STAGE_BASIC_INT_H

#include "agg_pipeline.h"

/* Stage functions defined outside agg_stage_basic.c (which lists the family in
 * agg__stages_basic): parse / open / free as agg_stage_kind_t has them. */
#define AGG__STAGE_FNS(x)                                                                  \
    bool agg__##x##_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,         \
                          bq_error_t *err);                                                \
    agg_iter_t *agg__##x##_open(const void *state, agg_iter_t *input, agg_run_t *run,      \
                                bq_error_t *err);                                          \
    void agg__##x##_free(void *state);

/* agg_stage_project.c */
AGG__STAGE_FNS(project)
AGG__STAGE_FNS(add_fields)
AGG__STAGE_FNS(set)
AGG__STAGE_FNS(unset)
/* agg_stage_misc.c */
AGG__STAGE_FNS(documents)
AGG__STAGE_FNS(redact)
AGG__STAGE_FNS(facet)
AGG__STAGE_FNS(coll_stats)
AGG__STAGE_FNS(index_stats)
AGG__STAGE_FNS(trace)
AGG__STAGE_FNS(list_local_sessions)

/* Checks a dotted field path as mongod's FieldPath does: 40352 empty, 40353 ending with
 * '.', 15998 an empty component, 16410 a component starting with '$'. `what` names the
 * stage in nothing: messages are mongod's. */
bool agg__field_path_check(const char *path, bq_error_t *err);

/* Copies src into out (initialized by the caller) with the value at the dotted path
 * parts[0..n) replaced by v (appended at the end of its document when absent; an absent
 * or non-document intermediate becomes a new document). v EOD removes the field. */
void agg__doc_set_path(const uint8_t *data, uint32_t len, char *const *parts, int n,
                       const bson_value_t *v, bson_t *out);

/* Splits a dotted path into parts (bson_strdup'ed; free with agg__path_free). */
char **agg__path_split(const char *path, int *n);
void agg__path_free(char **parts, int n);

/* A pass-through close for iterators with no state of their own beyond the struct. */
void agg__simple_close(agg_iter_t *it);

#endif
