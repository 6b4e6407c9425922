/*
 * agg_stage_join.c: the join family of pipeline stages (see agg_pipeline.h).
 * Placeholder: the family's stages are being written.
 */
#include "agg_pipeline.h"

const agg_stage_kind_t agg__stages_join[] = {
    {NULL, 0, NULL, NULL, NULL},
};
