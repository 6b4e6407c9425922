/*
 * bq_int.h: what bsonq/'s own files share and nobody else may use (bq__ names).
 *
 * The unpacked Decimal128 form used by bq_dec.c and bq_compare.c, and the matcher's
 * node and operator-table types shared by the bq_match*.c files.
 */
#ifndef BQ_INT_H
#define BQ_INT_H


#include "bq.h"

/* ---------------------------------------------------------------- Decimal128, unpacked */

enum { BQ__DEC_FINITE, BQ__DEC_INF, BQ__DEC_NAN };

typedef struct bq__dec {
    int cls;                 /* BQ__DEC_* */
    bool neg;
    unsigned __int128 coef;  /* < 10^34 for finite values */
    int32_t exp;             /* value = coef * 10^exp, exp in [-6176, 6111] */
} bq__dec_t;

void bq__dec_unpack(bson_decimal128_t d, bq__dec_t *out);
bson_decimal128_t bq__dec_pack(const bq__dec_t *d);

/* ---------------------------------------------------------------- matcher */

typedef struct bq__mnode bq__mnode_t;
typedef struct bq__mop bq__mop_t;

enum bq__mkind {
    BQ__M_AND,       /* children all match (also the top level) */
    BQ__M_OR,
    BQ__M_NOR,
    BQ__M_NOT,       /* one child */
    BQ__M_LEAF,      /* op applied to the values at path (or to the element in context) */
    BQ__M_TRUE,
    BQ__M_FALSE,
    BQ__M_EXPR,      /* $expr: `data` is the compiled expression (bq_expr_hooks_t) */
    BQ__M_SCHEMA,    /* $jsonSchema: `data` is the compiled schema (bq_match_schema.c) */
};

/* Flags of an operator table entry. */
enum bq__mop_flags {
    BQ__MOP_WHOLE_ARRAY = 1,  /* sees a leaf array as itself, not element by element */
    BQ__MOP_NEGATE = 2,       /* the node matches when the operator matches no value ($ne) */
};

/* A compiled node. Leaf nodes own a copy of their argument and op-specific data. */
struct bq__mnode {
    enum bq__mkind kind;
    char *path;              /* dotted path, or NULL inside $elemMatch (value context) */
    const bq__mop_t *op;     /* BQ__M_LEAF only */
    bson_value_t arg;        /* copied argument (bson_value_copy), BQ__M_LEAF only */
    void *data;              /* op-specific compiled data, freed by op->free */
    bool negate;             /* BQ__M_LEAF: true when no reached value may match */
    bq__mnode_t **kids;
    size_t nkids;
};

/* One operator: compile checks and prepares the argument (it may also turn the node into
 * an AND of other nodes, as $all does), match tests one value (NULL for a missing path),
 * free releases `data`. */
struct bq__mop {
    const char *name;
    bool (*compile)(bq__mnode_t *n, const bson_iter_t *arg, bq_error_t *err);
    bool (*match)(const bq__mnode_t *n, const bson_value_t *v);
    void (*free)(void *data);
    int flags;
};

/* Per-family tables, each ending with a {NULL} entry. */
extern const bq__mop_t bq__match_cmp_ops[];
extern const bq__mop_t bq__match_elem_ops[];
extern const bq__mop_t bq__match_array_ops[];
extern const bq__mop_t bq__match_eval_ops[];

/* bq_match.c */
bq__mnode_t *bq__mnode_new(enum bq__mkind kind);
void bq__mnode_free(bq__mnode_t *n);
bool bq__mnode_add(bq__mnode_t *parent, bq__mnode_t *kid);
const bq__mop_t *bq__mop_find(const char *name);
/* Parses {field: value-or-operators, $and: ...} into children of `into`. */
bool bq__match_parse_doc(bq__mnode_t *into, const bson_t *filter, bool top,
                         bq_error_t *err);
/* Parses the operator document of one field ({$gt: 1, $lt: 5}) into children of `into`;
 * path may be NULL (value context of $elemMatch). */
bool bq__match_parse_ops(bq__mnode_t *into, const char *path, const bson_iter_t *ops,
                         bq_error_t *err);
/* Evaluates a node against a context value: the document being matched, or one array
 * element inside $elemMatch. Leaves with a path walk it from the context; leaves without
 * one test the context value itself. */
bool bq__mnode_eval(const bq__mnode_t *n, const bson_value_t *ctx);
/* The equality leaf used by $eq, $in, $all and bare values: compiles `arg` as $eq (or a
 * regex match when arg is a regex). */
bq__mnode_t *bq__match_eq_leaf(const char *path, const bson_iter_t *arg, bq_error_t *err);
/* A new leaf for `op` at `path` (copied; NULL for value context), compiled from arg. */
bq__mnode_t *bq__match_leaf(const bq__mop_t *op, const char *path, const bson_iter_t *arg,
                            bq_error_t *err);

/* bq_match_logic.c */
bool bq__match_parse_logic(bq__mnode_t *into, const char *op, const bson_iter_t *arg,
                           bq_error_t *err);
bool bq__match_parse_not(bq__mnode_t *into, const char *path, const bson_iter_t *arg,
                         bq_error_t *err);

/* bq_match_eval.c: regex compiled for matching (pattern + BSON options). */
typedef struct bq__regex bq__regex_t;
bq__regex_t *bq__regex_new(const char *pattern, const char *options, bq_error_t *err);
void bq__regex_free(void *re);
/* Regex semantics of a query: strings and symbols are searched, a regex value matches
 * when pattern and options are identical, anything else does not match. */
bool bq__regex_match_value(const bq__regex_t *re, const bson_value_t *v);
/* A regex leaf from {$regex: pattern-or-regex, $options: opts}; opts may be NULL. */
bq__mnode_t *bq__match_regex_leaf(const char *path, const bson_iter_t *re,
                                  const bson_iter_t *opts, bq_error_t *err);

/* bq_match_cmp.c */
extern const bq__mop_t bq__match_eq_op;
/* MongoDB's comparison predicate of one value (NULL = missing) against rhs: values of
 * different type classes never match, except null against missing/undefined (for $eq,
 * $lte, $gte) and MinKey/MaxKey bounds; NaN equals only NaN. */
enum bq__cmp_kind { BQ__CMP_EQ, BQ__CMP_LT, BQ__CMP_LTE, BQ__CMP_GT, BQ__CMP_GTE };
bool bq__cmp_match(const bson_value_t *rhs, const bson_value_t *v, enum bq__cmp_kind k);

/* bq_match_schema.c: $jsonSchema. bq__match_schema_node compiles the operator's argument
 * into a BQ__M_SCHEMA node (NULL with err set: TypeMismatch, FailedToParse or BadValue as
 * mongod's parser reports them); bq__schema_match tests a value against the compiled
 * schema; bq__schema_free frees it (the node's data). */
bq__mnode_t *bq__match_schema_node(const bson_iter_t *arg, bq_error_t *err);
bool bq__schema_match(const void *schema, const bson_value_t *v);
void bq__schema_free(void *schema);
/* Appends {operatorName: "$jsonSchema", title?, schemaRulesNotSatisfied: [...]} to out. */
void bq__schema_explain(const void *schema, const bson_value_t *v, bson_t *out);
/* Describes why doc fails the filter rooted at root into details (initialized here), as
 * mongod's errInfo.details for document validation. */
void bq__match_explain_root(const bq__mnode_t *root, const bson_t *doc, bson_t *details);

/* bq_collation.c: string comparison under the thread's active collation (*handled false
 * when there is none), and a collation sort key (malloc'd) for equality keys. */
int bq__collate_strings(const char *a, size_t la, const char *b, size_t lb, bool *handled);
uint8_t *bq__collation_key(const bq_collation_t *c, const char *s, size_t len,
                           size_t *out_len);

#endif
