/*
 * agg_expr.h: the aggregation expression language of MongoDB 7.0, shared by pipeline
 * stages ($project, $addFields, $group, $match's $expr, ...) and update pipelines.
 *
 * An expression is compiled once from its BSON spec into an immutable tree
 * (agg_expr_compile) and evaluated against many documents (agg_expr_eval). A compiled
 * expression holds no per-evaluation state: it may be shared between threads, each
 * evaluating with its own agg_env_t. Everything that changes per document or per command
 * (the document, $$NOW, variable values) lives in the env.
 *
 * Values. An evaluation result is a bson_value_t the caller owns; it is always
 * initialized, even on failure, and is released with agg_value_cleanup(). A result of type
 * BSON_TYPE_EOD means "missing" (a missing field, $$REMOVE): stages drop the field
 * instead of storing it. Arguments passed in (documents, variable values) are borrowed
 * unless a function says it copies.
 *
 * Variables. Names are resolved at compile time through an agg_scope_t, so "$$x" with no
 * definition in scope fails while compiling (17276), as mongod does. Every name defined in
 * a scope tree gets a slot number, unique within the tree; the env holds one value per
 * slot. The built-in variables have fixed slots (AGG_VAR_*). $$REMOVE has no slot: it is
 * always missing.
 *
 * Errors are MongoDB's codes (bq_error.h): 168 InvalidPipelineOperator for an unknown
 * $operator, 15983 for an expression object with more than one field, 16554/16555 for
 * non-numeric $add/$subtract, 16020 for a wrong argument count, 17276 for an undefined
 * variable, 28664 for $concatArrays on a non-array, and so on per operator.
 */
#ifndef AGG_EXPR_H
#define AGG_EXPR_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "bq.h"

typedef struct agg_expr agg_expr_t;
typedef struct agg_scope agg_scope_t;
typedef struct agg_env agg_env_t;

/* ---------------------------------------------------------------- values */

/* Releases a value returned by agg_expr_eval (any type, EOD included) and resets it to
 * EOD. NULL is allowed. */
void agg_value_cleanup(bson_value_t *v);

/* Deep copy of src into *dst (EOD copies as EOD). The caller owns *dst. */
void agg_value_copy(const bson_value_t *src, bson_value_t *dst);

/* ---------------------------------------------------------------- scopes (compile time) */

/* Fixed slots of the built-in variables. User variables get slots >= AGG_VAR_FIRST_USER. */
enum agg_var_slot {
    AGG_VAR_ROOT = 0,          /* $$ROOT: the document the pipeline stage is looking at */
    AGG_VAR_CURRENT = 1,       /* $$CURRENT: starts as ROOT; "$a" means "$$CURRENT.a" */
    AGG_VAR_NOW = 2,           /* $$NOW: a date, fixed for the whole command */
    AGG_VAR_CLUSTER_TIME = 3,  /* $$CLUSTER_TIME: a timestamp, fixed for the command */
    AGG_VAR_FIRST_USER = 4,
};

/* A new scope. With parent NULL it is a root scope that knows ROOT, CURRENT, REMOVE, NOW
 * and CLUSTER_TIME; otherwise it sees everything its parent sees and shares the parent's
 * slot counter. The parent must outlive the child. Never fails (aborts on OOM). */
agg_scope_t *agg_scope_new(const agg_scope_t *parent);

/* Defines (or redefines, shadowing an outer definition) the user variable `name` in s and
 * returns its slot. The name is not checked here: callers that take names from users
 * ($lookup let, aggregate's let) check them with agg_var_name_check() first. */
int agg_scope_define(agg_scope_t *s, const char *name);

/* Slot of `name` as seen from s (searching parents), or -1 when undefined. */
int agg_scope_lookup(const agg_scope_t *s, const char *name);

/* Number of slots used so far by the whole scope tree of s (an env needs this many). */
int agg_scope_slot_count(const agg_scope_t *s);

/* Frees a scope (not its parent or children). NULL is allowed. Compiled expressions do
 * not refer to their scope after compiling, so a scope may be destroyed before them. */
void agg_scope_destroy(agg_scope_t *s);

/* Checks a user variable name as mongod does: it must start with a lowercase letter or a
 * non-ASCII byte and contain only letters, digits, '_' and non-ASCII bytes. Errors:
 * FailedToParse (9) for an empty name, a bad first character or a bad later one (the
 * code mongod 7.0 gives; older servers used 16866-16868). */
bool agg_var_name_check(const char *name, bq_error_t *err);

/* ---------------------------------------------------------------- compiling */

/* Compiles any expression value:
 *   "$a.b"          field path of $$CURRENT (arrays of documents map to arrays of values)
 *   "$$var.a"       variable, optionally followed by a path
 *   {$op: args}     operator expression
 *   {f: expr, ...}  object expression (evaluates to a document; missing values dropped)
 *   [e1, e2]        array of expressions
 *   anything else   a constant
 * Constant subtrees are folded when they cannot fail. Returns a new expression the caller
 * frees with agg_expr_destroy(), or NULL with err set. spec is copied as needed: it may be
 * destroyed afterwards. scope must not be NULL (new variables from $let/$map/$filter/
 * $reduce are defined in child scopes created internally). */
agg_expr_t *agg_expr_compile(const bson_value_t *spec, agg_scope_t *scope, bq_error_t *err);

/* Compiles a document as an object expression ({a: "$x", b: {$add: [1, 2]}}), as the
 * $group _id or $addFields would. Same errors as agg_expr_compile. */
agg_expr_t *agg_expr_compile_doc(const bson_t *spec, agg_scope_t *scope, bq_error_t *err);

/* Frees an expression; NULL is allowed. */
void agg_expr_destroy(agg_expr_t *e);

/* ---------------------------------------------------------------- inspecting */

/* True when e evaluates to the same value for every document (a literal, or folded). */
bool agg_expr_is_constant(const agg_expr_t *e);

/* The constant value of e (borrowed, valid as long as e) or NULL when e is not constant. */
const bson_value_t *agg_expr_constant(const agg_expr_t *e);

/* When e is a plain field path of $$CURRENT ("$a.b"), returns the dotted path "a.b"
 * (borrowed, valid as long as e); else NULL. For $sort/$group pushdown. */
const char *agg_expr_field_path(const agg_expr_t *e);

/* True when e is an object expression ({f: expr, ...}). */
bool agg_expr_is_object(const agg_expr_t *e);

/* ---------------------------------------------------------------- runtime env */

/* Per-evaluation state. Initialize with agg_env_init, release with agg_env_cleanup. Set
 * the document with agg_env_set_root for every document, $$NOW once per command. One env
 * per thread; an env may be reused for any number of documents and expressions. */
struct agg_env {
    bson_value_t *vars;   /* one per slot; EOD when unset */
    bool *owned;          /* owned[i]: vars[i] was copied and is freed by the env */
    int nvars, cap;
    uint64_t rand_state;  /* $rand's generator; seeded on first use */
};

void agg_env_init(agg_env_t *env);
void agg_env_cleanup(agg_env_t *env);

/* Sets $$ROOT and $$CURRENT to doc (borrowed: doc must stay valid while evaluating). */
void agg_env_set_root(agg_env_t *env, const bson_t *doc);

/* Sets $$NOW to the date `ms` (milliseconds since the epoch) and $$CLUSTER_TIME to the
 * timestamp (t, i). Call once per command so every document sees the same values. When
 * never set, $$NOW is the wall clock at the first use in this env. */
void agg_env_set_now(agg_env_t *env, int64_t ms);
void agg_env_set_cluster_time(agg_env_t *env, uint32_t t, uint32_t i);

/* Sets variable `slot` to a copy of v (EOD unsets it). For $lookup let and aggregate's
 * let: compile the let expressions, define the names in a scope for the sub-pipeline,
 * evaluate and set them here. */
void agg_env_set_var(agg_env_t *env, int slot, const bson_value_t *v);

/* Same without copying: v must stay valid while it is used. */
void agg_env_set_var_borrowed(agg_env_t *env, int slot, const bson_value_t *v);

/* Current value of a slot (borrowed; EOD when unset). */
const bson_value_t *agg_env_get_var(const agg_env_t *env, int slot);

/* ---------------------------------------------------------------- evaluating */

/* Evaluates e. *out is always initialized (EOD on failure or when the result is missing)
 * and owned by the caller: release it with agg_value_cleanup(). Returns false with err
 * set on a runtime error (wrong argument types, division by zero, ...). */
bool agg_expr_eval(const agg_expr_t *e, agg_env_t *env, bson_value_t *out, bq_error_t *err);

/* Evaluates e into a document: an object expression builds its fields (missing values
 * are left out); any other expression must evaluate to a document, which is copied.
 * *out is always initialized (bson_init) and the caller destroys it. When e yields a
 * non-document value, fails with `code` ("... must evaluate to an object" per caller). */
bool agg_expr_eval_doc(const agg_expr_t *e, agg_env_t *env, bson_t *out, int32_t code,
                       bq_error_t *err);

/* Helper: appends v to doc under key (any type except EOD, which appends nothing). */
void agg_value_append(bson_t *doc, const char *key, int key_len, const bson_value_t *v);

/* Truthiness as $cond/$and/$or/$not/$filter see it: false, null, undefined, missing, and
 * numeric zero are false; everything else (including "" and []) is true. */
bool agg_value_truthy(const bson_value_t *v);

#endif
