/*
 * wire_cursor.c: cursors and the table of open ones. A cursor reads a collection scan at
 * a fixed snapshot (the snapshot of the command that opened it, kept across every
 * getMore: DESIGN.md section 5), documents collected beforehand (sorted results,
 * documents a command produced), or a producer it pulls from as batches need documents
 * (an aggregation pipeline, which reads at its command's snapshot too). Batches are cut
 * by count and by bytes.
 *
 * The table is one mutex-guarded array: a cursor is "in use" while a getMore works on it
 * (outside the lock), so two getMores on one cursor cannot interleave. Cursors idle for
 * WIRE_CURSOR_IDLE_SECONDS are closed by a sweep that runs when the table is used.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "wire_cursor.h"

struct wire_cursors {
    pthread_mutex_t lock;
    wire_cursor_t **items;
    size_t n, cap;
    time_t last_sweep;
};

struct wire_cursors *wire_cursors_new(void)
{
    struct wire_cursors *t = calloc(1, sizeof *t);
    if (t)
        pthread_mutex_init(&t->lock, NULL);
    return t;
}

void wire_cursors_destroy(struct wire_cursors *t)
{
    for (size_t i = 0; i < t->n; i++)
        wire_cursor_destroy(t->items[i]);
    free(t->items);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

wire_cursor_t *wire_cursor_new(const char *db, const char *coll)
{
    wire_cursor_t *cur = calloc(1, sizeof *cur);
    if (!cur)
        abort();
    snprintf(cur->ns, sizeof cur->ns, "%s.%s", db, coll);
    cur->limit = -1;
    return cur;
}

void wire_cursor_destroy(wire_cursor_t *cur)
{
    if (!cur)
        return;
    if (cur->match)
        bq_match_destroy(cur->match);
    if (cur->proj)
        bq_project_destroy(cur->proj);
    if (cur->filter)
        bson_destroy(cur->filter);
    for (size_t i = 0; i < cur->nowned; i++)
        bson_destroy(cur->owned[i]);
    free(cur->owned);
    free(cur->docs);
    if (cur->pulled)
        bson_destroy(cur->pulled);
    if (cur->pull_free)
        cur->pull_free(cur->pull_ctx);
    free(cur);
}

void wire_cursor_add_owned(wire_cursor_t *cur, const bson_t *doc)
{
    /* heap copies (a bson_t must not move once it owns a buffer), in a growing array
     * whose capacity is the next power of two */
    if (cur->nowned == 0 || (cur->nowned & (cur->nowned - 1)) == 0) {
        size_t cap = cur->nowned ? cur->nowned * 2 : 1;
        bson_t **o = realloc(cur->owned, cap * sizeof *o);
        if (!o)
            abort();
        cur->owned = o;
    }
    cur->owned[cur->nowned++] = bson_copy(doc);
}

/* The next source document: 1 with *out set (for a producer, valid until the next
 * call), 0 at the end, -1 with err set when the filter's $expr failed to evaluate or the
 * producer failed. */
static int cursor_next_raw(wire_cursor_t *cur, eng_doc_t *out, bq_error_t *err)
{
    if (cur->have_held) {
        *out = cur->held;
        cur->have_held = false;
        return 1;
    }
    if (cur->pull) {
        /* the previous document was copied into a batch, or it was `held` and has just
         * been handed out above and copied since: it can go */
        if (cur->pulled) {
            bson_destroy(cur->pulled);
            cur->pulled = NULL;
        }
        if (cur->have_error) {
            *err = cur->error;
            return -1;
        }
        bson_t *doc = NULL;
        int r = cur->pull(cur->pull_ctx, &doc, err);
        if (r <= 0)
            return r;
        cur->pulled = doc;
        *out = (eng_doc_t){bson_get_data(doc), doc->len, -1};
        return 1;
    }
    if (cur->use_scan) {
        while (eng_scan_next(&cur->scan, out)) {
            bson_t doc;
            if (!cur->match || !bson_init_static(&doc, out->data, out->len))
                return 1;
            int r = bq_match_eval_env(cur->match, &doc, NULL, err);
            if (r != 0)
                return r;
        }
        return wire_scan_done(&cur->scan, err) ? 0 : -1;
    }
    if (cur->pos < cur->ndocs) {
        *out = cur->docs[cur->pos++];
        return 1;
    }
    if (cur->pos - cur->ndocs < cur->nowned) {
        const bson_t *b = cur->owned[cur->pos++ - cur->ndocs];
        *out = (eng_doc_t){bson_get_data(b), b->len, -1};
        return 1;
    }
    return 0;
}

bool wire_cursor_fill(wire_cursor_t *cur, bson_t *arr, int64_t batch, bool *exhausted,
                      bq_error_t *err)
{
    eng_doc_t d;
    int64_t n = 0;
    size_t bytes = 0;
    *exhausted = false;
    int r;
    while (cur->skip > 0 && (r = cursor_next_raw(cur, &d, err)) > 0)
        cur->skip--;
    if (cur->skip > 0 && r < 0)
        return false;
    while ((batch < 0 || n < batch) && cur->limit != 0) {
        if ((r = cursor_next_raw(cur, &d, err)) <= 0) {
            *exhausted = true;
            return r == 0;
        }
        bson_t doc, projected;
        const bson_t *out = &doc;
        bson_init_static(&doc, d.data, d.len);
        if (cur->proj) {
            /* {$meta: "seq"} gives the seq of the version returned (DESIGN.md section 7) */
            bq_project_opts_t po = {.filter = cur->filter, .has_seq = d.seq >= 0, .seq = d.seq};
            if (!bq_project_apply_ex(cur->proj, &doc, &po, &projected, err)) {
                bson_destroy(&projected);
                return false;
            }
            out = &projected;
        }
        if (n > 0 && bytes + out->len > WIRE_CURSOR_BATCH_BYTES) {
            cur->held = d;
            cur->have_held = true;
            if (cur->proj)
                bson_destroy(&projected);
            return true;
        }
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)n);
        BSON_APPEND_DOCUMENT(arr, key, out);
        bytes += out->len;
        if (cur->proj)
            bson_destroy(&projected);
        n++;
        if (cur->limit > 0)
            cur->limit--;
    }
    if (cur->limit == 0) {
        *exhausted = true;
        return true;
    }
    /* look ahead so a drained cursor reports id 0 now rather than after an empty getMore;
     * when a producer fails here, this batch is still complete: its error waits for the
     * next getMore, as it would in mongod */
    bq_error_t ahead;
    bq_error_clear(&ahead);
    if ((r = cursor_next_raw(cur, &d, &ahead)) > 0) {
        cur->held = d;
        cur->have_held = true;
    } else if (r < 0 && cur->pull) {
        cur->have_error = true;
        cur->error = ahead;
    } else {
        *exhausted = true;
        if (r < 0)
            *err = ahead;
    }
    return r >= 0 || cur->pull;
}

static void sweep_locked(struct wire_cursors *t, time_t now)
{
    if (now - t->last_sweep < 10)
        return;
    t->last_sweep = now;
    for (size_t i = 0; i < t->n;) {
        wire_cursor_t *c = t->items[i];
        if (!c->in_use && now - c->last_used > WIRE_CURSOR_IDLE_SECONDS) {
            wire_log(1, "cursor %lld on %s closed after %d s idle", (long long)c->id, c->ns,
                     WIRE_CURSOR_IDLE_SECONDS);
            wire_cursor_destroy(c);
            t->items[i] = t->items[--t->n];
        } else {
            i++;
        }
    }
}

static long find_locked(struct wire_cursors *t, int64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i]->id == id)
            return (long)i;
    return -1;
}

static void register_cursor(struct wire_cursors *t, wire_cursor_t *cur)
{
    pthread_mutex_lock(&t->lock);
    time_t now = time(NULL);
    sweep_locked(t, now);
    do {
        uint64_t r = 0;
        while (getrandom(&r, sizeof r, 0) != sizeof r)
            ;
        cur->id = (int64_t)(r & 0x7FFFFFFFFFFFFFFFull);
    } while (cur->id == 0 || find_locked(t, cur->id) >= 0);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        wire_cursor_t **items = realloc(t->items, cap * sizeof *items);
        if (!items)
            abort();
        t->items = items;
        t->cap = cap;
    }
    t->items[t->n++] = cur;
    cur->last_used = now;
    cur->in_use = false;
    pthread_mutex_unlock(&t->lock);
}

wire_cursor_t *wire_cursors_take(struct wire_cursors *t, int64_t id, bq_error_t *err)
{
    pthread_mutex_lock(&t->lock);
    sweep_locked(t, time(NULL));
    long i = find_locked(t, id);
    wire_cursor_t *cur = i >= 0 ? t->items[i] : NULL;
    if (cur && cur->in_use) {
        pthread_mutex_unlock(&t->lock);
        bq_error_set(err, BQ_ERR_CursorInUse, "cursor id %lld is already in use",
                     (long long)id);
        return NULL;
    }
    if (cur)
        cur->in_use = true;
    pthread_mutex_unlock(&t->lock);
    if (!cur)
        bq_error_set(err, BQ_ERR_CursorNotFound, "cursor id %lld not found", (long long)id);
    return cur;
}

void wire_cursors_release(struct wire_cursors *t, wire_cursor_t *cur, bool done)
{
    pthread_mutex_lock(&t->lock);
    long i = find_locked(t, cur->id);
    if (done && i >= 0)
        t->items[i] = t->items[--t->n];
    cur->in_use = false;
    cur->last_used = time(NULL);
    pthread_mutex_unlock(&t->lock);
    if (done)
        wire_cursor_destroy(cur);
}

bool wire_cursors_kill(struct wire_cursors *t, int64_t id)
{
    pthread_mutex_lock(&t->lock);
    long i = find_locked(t, id);
    wire_cursor_t *cur = NULL;
    if (i >= 0 && !t->items[i]->in_use) {
        cur = t->items[i];
        t->items[i] = t->items[--t->n];
    }
    pthread_mutex_unlock(&t->lock);
    wire_cursor_destroy(cur);
    return cur != NULL;
}

bool wire_cursor_reply(wire_server_t *server, wire_cursor_t *cur, bson_t *reply,
                       const char *batch_key, int64_t batch, bool single_batch,
                       bq_error_t *err)
{
    bool registered = cur->id != 0;
    bson_t c, arr;
    bool exhausted = false;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &c);
    BSON_APPEND_ARRAY_BEGIN(&c, batch_key, &arr);
    bool ok = wire_cursor_fill(cur, &arr, batch, &exhausted, err);
    bson_append_array_end(&c, &arr);
    bool done = !ok || exhausted || single_batch;
    if (!done && !registered)
        register_cursor(server->cursors, cur);
    BSON_APPEND_INT64(&c, "id", done ? 0 : cur->id);
    BSON_APPEND_UTF8(&c, "ns", cur->ns);
    bson_append_document_end(reply, &c);
    if (registered)
        wire_cursors_release(server->cursors, cur, done);
    else if (done)
        wire_cursor_destroy(cur);
    return ok;
}
