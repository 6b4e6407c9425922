/*
 * agg.h: public header of aggregation/, the pipeline stages, expressions, accumulators and
 * window functions (DESIGN.md section 1). Reads collections only through a source
 * interface that wire/ passes in, so pipelines can be tested without a server.
 * Not built yet: see the aggregation issue.
 */
#ifndef AGG_H
#define AGG_H

#include "bq.h"
#include "agg_expr.h"

#endif
