/*
 * bq_update_int.h: what bq_update.c and bq_update_arr.c share (bq__ names, nobody else).
 *
 * Two trees:
 *   - the update tree (bq__unode_t), built once by bq_update_compile: one node per path
 *     component, children sorted the way MongoDB 5.0+ processes fields, leaves carrying
 *     one operator and its compiled argument;
 *   - the mutable document (bq__mnode_t), built per apply: a node per element, expanded
 *     lazily, so untouched subdocuments are copied to the output as raw bytes. Values in
 *     it are borrowed from the input document or from the compiled update (which outlive
 *     the apply), or are plain scalars computed by an operator: a node never owns a value.
 */
#ifndef BQ_UPDATE_INT_H
#define BQ_UPDATE_INT_H

#include "bq.h"
#include "bq_sort.h"
#include "bq_update.h"

/* ---------------------------------------------------------------- mutable document */

typedef struct bq__mnode bq__mnode_t;
struct bq__mnode {
    char *key;            /* owned field name; NULL for array elements */
    bson_value_t val;     /* borrowed value; for an expanded node only value_type counts */
    bool expanded;        /* kids hold the children of a document or array */
    bq__mnode_t **kids;
    size_t n, cap;
};

bq__mnode_t *bq__mn_new(const char *key, const bson_value_t *v);
bq__mnode_t *bq__mn_new_container(const char *key, bson_type_t type);
void bq__mn_free(bq__mnode_t *m);
void bq__mn_clear_kids(bq__mnode_t *m);
bool bq__mn_is_container(const bq__mnode_t *m);
void bq__mn_expand(bq__mnode_t *m);
/* Index of the field `key` of an (expanded) document node, or -1. */
ssize_t bq__mn_find(const bq__mnode_t *m, const char *key);
void bq__mn_insert(bq__mnode_t *m, size_t pos, bq__mnode_t *kid);
bq__mnode_t *bq__mn_detach(bq__mnode_t *m, size_t pos);
/* Replaces the node's value (children dropped). */
void bq__mn_set(bq__mnode_t *m, const bson_value_t *v);
/* Appends the node to dst under key. */
void bq__mn_build(const bq__mnode_t *m, bson_t *dst, const char *key);
/* The node's value; an expanded node is serialised into *scratch (caller destroys it). */
void bq__mn_value(const bq__mnode_t *m, bson_t *scratch, bson_value_t *out);

/* ---------------------------------------------------------------- update tree */

enum bq__uop {
    BQ__U_INNER = 0,
    BQ__U_SET,
    BQ__U_SETONINSERT,
    BQ__U_UNSET,
    BQ__U_INC,
    BQ__U_MUL,
    BQ__U_MIN,
    BQ__U_MAX,
    BQ__U_RENAME,       /* leaf at the destination: moves the source here */
    BQ__U_RENAME_SRC,   /* placeholder at the source (conflict detection only) */
    BQ__U_CURRENTDATE,
    BQ__U_PUSH,
    BQ__U_ADDTOSET,
    BQ__U_POP,
    BQ__U_PULL,
    BQ__U_PULLALL,
    BQ__U_BIT,
};

enum bq__ucomp {
    BQ__C_FIELD,        /* a field name or array index */
    BQ__C_POSITIONAL,   /* $ */
    BQ__C_ALL,          /* $[] */
    BQ__C_FILTER,       /* $[<identifier>] */
};

typedef struct bq__unode bq__unode_t;
struct bq__unode {
    char *name;               /* the component as written */
    enum bq__ucomp comp;
    size_t filter;            /* BQ__C_FILTER: index into the update's filters */
    enum bq__uop op;          /* BQ__U_INNER for inner nodes */
    bool merged;              /* built during an apply by merging nodes (kids borrowed) */
    char *path;               /* full path as written (leaves) */
    bq__unode_t **kids;       /* inner nodes */
    size_t nkids;
    bson_value_t arg;         /* leaves: the operator's argument (owned copy) */
    /* operator-specific */
    char *from;               /* $rename: source path */
    bool ts;                  /* $currentDate: timestamp rather than date */
    /* $push / $addToSet: the values to add: the $each array (borrowed from arg) when
     * each is set, else arg itself */
    bool each;
    bson_value_t items;
    bool has_position, has_slice;
    int64_t position, slice;
    int sort_kind;            /* 0 none, 1/-1 whole elements, 2 pattern */
    bq_sort_t *sort;
    /* $pull: 0 equality, 1 match a document element, 2 match any element by operators */
    int pull_kind;
    bq_match_t *match;
    /* $bit: up to 3 operations */
    int nbits;
    char bit_op[3];           /* 'a' 'o' 'x' */
    bson_value_t bit_val[3];
};

typedef struct bq__afilter {
    char *ident;
    bq_match_t *match;
    bool used;
} bq__afilter_t;

struct bq_update {
    bool replacement;
    bool positional;
    char *pos_path;           /* the array path before the first ".$" */
    bson_t *repl;             /* replacement document */
    bq__unode_t *root;
    bq__afilter_t *filters;
    size_t nfilters;
};

/* One apply's state. */
typedef struct bq__uctx {
    const bq_update_t *u;
    bq_update_opts_t opts;
    bq__mnode_t *root;
    const bson_t *doc;
    bool had_id;
    bq_error_t *err;
} bq__uctx_t;

/* bq_update_arr.c: compile the argument of an array operator into leaf n. */
bool bq__upd_compile_array_op(bq__unode_t *n, const bson_iter_t *arg, bq_error_t *err);
/* Applies an array operator to an existing element m (the field at n->path), or creates
 * the field (m a fresh null node to fill in, *create true). Sets *noop when nothing is to
 * be done (for creation: the field must not be added). */
bool bq__upd_apply_array_op(bq__uctx_t *c, const bq__unode_t *n, bq__mnode_t *m, bool create,
                            bool *noop);
/* bq_update_seed.c: the index of the first element of the array at `path` in doc that
 * satisfies filter's conditions on that path (top level and $and), as mongod's matcher
 * records it for the positional operator (update "$" and projection "a.$"). False (and
 * *index -1) when path is not an array, filter has no such condition, or none matches. */
bool bq__positional_index(const bson_t *filter, const bson_t *doc, const char *path,
                          int64_t *index);
/* mongod's short rendering of a value for messages ({_id: 1}, "x", [ 1, 2 ]). */
void bq__upd_fmt_value(const bson_value_t *v, char *buf, size_t size);
/* "{key: <value>}" of a node, for PathNotViable messages. */
void bq__upd_fmt_node(const bq__mnode_t *m, const char *key, char *buf, size_t size);
/* "{_id: <value>}" of the document being updated, for messages. */
void bq__upd_fmt_id(const bq__uctx_t *c, char *buf, size_t size);

#endif
