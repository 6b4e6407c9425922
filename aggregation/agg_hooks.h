/*
 * agg_hooks.h: what this layer lends to the layers below it at startup.
 */
#ifndef AGG_HOOKS_H
#define AGG_HOOKS_H

/* Installs the expression language into bsonq (agg_bq_hooks.c): $expr in query filters
 * (bq_expr_hooks_install) and aggregation expressions in find projections
 * (bq_project_expr_hooks_install). Call once, before any filter or projection is
 * compiled. */
void agg_install_bq_hooks(void);

#endif
