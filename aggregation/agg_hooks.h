/*
 * agg_hooks.h: what this layer lends to the layers below it at startup.
 */
#ifndef AGG_HOOKS_H
#define AGG_HOOKS_H

/* Installs $expr support into bsonq's query matcher (bq_expr_hooks_install). Call once,
 * before any filter is compiled. */
void agg_install_bq_hooks(void);

#endif
