/*
 * agg_window_int.h: what the files of the window stage family share (agg_stage_window.c,
 * agg_window_densify.c) and nothing else sees: the $densify stage functions and small
 * helpers for time units and dotted paths.
 */
#ifndef AGG_WINDOW_INT_H
#define AGG_WINDOW_INT_H

#include "agg_pipeline.h"

/* $densify (agg_window_densify.c), as agg_stage_kind_t has them. */
bool agg__densify_parse(const bson_value_t *spec, agg_parse_t *pc, void **state,
                        bq_error_t *err);
agg_iter_t *agg__densify_open(const void *state, agg_iter_t *input, agg_run_t *run,
                              bq_error_t *err);
void agg__densify_free(void *state);

/* Time units of window ranges, $derivative/$integral and $densify: the index of `s` in
 * millisecond, second, minute, hour, day, week, month, quarter, year; -1 when unknown. */
int agg__window_unit_parse(const char *s);
/* Length of a unit in ms; 0 for the calendar units (month, quarter, year). */
int64_t agg__window_unit_ms(int unit);
/* ms + amount units, calendar units clamped to the month's last day as $dateAdd does (UTC).
 * False on overflow. */
bool agg__window_date_add(int64_t ms, int unit, int64_t amount, int64_t *out);

/* Copies src (NULL: empty) into out (initialized by the caller) with the value at the
 * dotted path parts[0..n) set to v (appended when absent; a non-document on the way is
 * replaced by a document; v EOD removes the field). */
void agg__window_set_path(const bson_t *src, char *const *parts, int n,
                          const bson_value_t *v, bson_t *out);

/* Splits a dotted field path, checked as mongod's FieldPath: 40352 empty, 40353 trailing
 * '.', 15998 empty component, 16410 component starting with '$'. Free with
 * agg__window_path_free. */
char **agg__window_path_split(const char *path, int *n, bq_error_t *err);
void agg__window_path_free(char **parts, int n);

#endif
