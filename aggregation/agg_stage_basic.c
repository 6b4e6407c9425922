/*
 * agg_stage_basic.c: the basic family of pipeline stages (see agg_pipeline.h).
 * Placeholder: the family's stages are being written.
 */
#include "agg_pipeline.h"

const agg_stage_kind_t agg__stages_basic[] = {
    {NULL, 0, NULL, NULL, NULL},
};
