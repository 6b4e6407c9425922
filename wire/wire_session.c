/*
 * wire_session.c: logical sessions, tracked by lsid. A session is a 16-byte UUID and the
 * time it was last used. Commands carrying an lsid refresh it (wire_dispatch.c);
 * startSession makes one; endSessions/killSessions forget them; sessions idle for longer
 * than WIRE_SESSION_TIMEOUT_MINUTES are dropped by a sweep that runs as sessions are
 * touched. Transactions will hang their state here later.
 *
 * One mutex guards the table: I/O threads touch it once per command that carries an lsid,
 * which is a short critical section (a hash probe).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sodium.h>
#include <time.h>

#include "wire_int.h"

typedef struct session {
    uint8_t id[16];
    time_t last_use;
    bool used;       /* slot holds a session */
    bool tombstone;  /* slot held one that was removed */
} session_t;

struct wire_sessions {
    pthread_mutex_t lock;
    session_t *slots;
    size_t cap;      /* power of two */
    size_t count;    /* live sessions */
    size_t filled;   /* live + tombstones */
    uint64_t touches;
};

#define SWEEP_EVERY 4096

struct wire_sessions *wire_sessions_new(void)
{
    struct wire_sessions *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 256;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void wire_sessions_destroy(struct wire_sessions *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->slots);
    free(s);
}

static size_t uuid_hash(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    return (size_t)((a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull >> 17);
}

/* Finds the slot of `id`, or the slot where it would go (a free one). */
static session_t *slot_find(struct wire_sessions *s, const uint8_t id[16], bool for_insert)
{
    size_t mask = s->cap - 1;
    session_t *first_free = NULL;
    for (size_t i = uuid_hash(id) & mask;; i = (i + 1) & mask) {
        session_t *slot = &s->slots[i];
        if (slot->used && memcmp(slot->id, id, 16) == 0)
            return slot;
        if (!slot->used && !first_free && for_insert)
            first_free = slot;
        if (!slot->used && !slot->tombstone)
            return for_insert ? first_free : NULL;
    }
}

static void table_rebuild(struct wire_sessions *s, size_t cap, time_t now)
{
    session_t *old = s->slots;
    size_t oldcap = s->cap;
    session_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return; /* keep the old table; the next insert may try again */
    s->slots = slots;
    s->cap = cap;
    s->count = s->filled = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].used || now - old[i].last_use > WIRE_SESSION_TIMEOUT_MINUTES * 60)
            continue;
        session_t *slot = slot_find(s, old[i].id, true);
        *slot = old[i];
        s->count++;
        s->filled++;
    }
    free(old);
}

static void session_upsert(struct wire_sessions *s, const uint8_t id[16], time_t now)
{
    if (++s->touches % SWEEP_EVERY == 0)
        table_rebuild(s, s->cap, now);
    if ((s->filled + 1) * 4 > s->cap * 3)
        table_rebuild(s, s->count * 2 + 1 > s->cap / 2 ? s->cap * 2 : s->cap, now);
    session_t *slot = slot_find(s, id, true);
    if (!slot)
        return;
    if (!slot->used) {
        memcpy(slot->id, id, 16);
        if (!slot->tombstone)
            s->filled++;
        slot->used = true;
        slot->tombstone = false;
        s->count++;
    }
    slot->last_use = now;
}

/* Extracts the UUID of an lsid document {id: BinData(4, 16 bytes)}. */
static bool lsid_uuid(const bson_t *lsid, uint8_t out[16], bq_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, lsid, "id")) {
        bq_error_set(err, 40414,
                     "BSON field 'OperationSessionInfo.lsid.id' is missing but a required "
                     "field");
        return false;
    }
    bson_subtype_t sub;
    uint32_t len;
    const uint8_t *data;
    if (!BSON_ITER_HOLDS_BINARY(&it)) {
        bq_error_set(err, BQ_ERR_TypeMismatch,
                     "BSON field 'OperationSessionInfo.lsid.id' is the wrong type '%s', "
                     "expected type 'binData'",
                     bq_type_name(bson_iter_type(&it)));
        return false;
    }
    bson_iter_binary(&it, &sub, &len, &data);
    if (sub != BSON_SUBTYPE_UUID || len != 16) {
        bq_error_set(err, BQ_ERR_InvalidUUID, "uuid must be a 16-byte binary field with UUID (4) subtype");
        return false;
    }
    memcpy(out, data, 16);
    return true;
}

bool wire_sessions_touch(struct wire_sessions *s, const bson_t *lsid, bq_error_t *err)
{
    uint8_t id[16];
    if (!lsid_uuid(lsid, id, err))
        return false;
    pthread_mutex_lock(&s->lock);
    session_upsert(s, id, time(NULL));
    pthread_mutex_unlock(&s->lock);
    return true;
}

bool wire_sessions_end(struct wire_sessions *s, const bson_t *lsid)
{
    uint8_t id[16];
    if (!lsid_uuid(lsid, id, NULL))
        return false;
    pthread_mutex_lock(&s->lock);
    session_t *slot = slot_find(s, id, false);
    if (slot) {
        slot->used = false;
        slot->tombstone = true;
        s->count--;
    }
    pthread_mutex_unlock(&s->lock);
    return slot != NULL;
}

size_t wire_sessions_count(struct wire_sessions *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void wire_sessions_start(struct wire_sessions *s, bson_t *out, const char *key)
{
    uint8_t id[16];
    size_t got = 0;
    while (got < sizeof id) {
        ssize_t n = getrandom(id + got, sizeof id - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    id[6] = (uint8_t)((id[6] & 0x0F) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    pthread_mutex_lock(&s->lock);
    session_upsert(s, id, time(NULL));
    pthread_mutex_unlock(&s->lock);
    bson_t doc;
    BSON_APPEND_DOCUMENT_BEGIN(out, key, &doc);
    BSON_APPEND_BINARY(&doc, "id", BSON_SUBTYPE_UUID, id, sizeof id);
    bson_append_document_end(out, &doc);
}

void wire_sessions_list(struct wire_sessions *s, bson_t ***docs, size_t *n)
{
    /* every session belongs to the one unauthenticated user: uid = SHA-256("") */
    uint8_t uid[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(uid, (const unsigned char *)"", 0);
    pthread_mutex_lock(&s->lock);
    time_t now = time(NULL);
    *docs = malloc((s->count ? s->count : 1) * sizeof **docs);
    if (!*docs)
        abort();
    *n = 0;
    for (size_t i = 0; i < s->cap; i++) {
        const session_t *x = &s->slots[i];
        if (!x->used || now - x->last_use > WIRE_SESSION_TIMEOUT_MINUTES * 60)
            continue;
        bson_t *d = bson_new(), id;
        BSON_APPEND_DOCUMENT_BEGIN(d, "_id", &id);
        bson_append_binary(&id, "id", 2, BSON_SUBTYPE_UUID, x->id, sizeof x->id);
        bson_append_binary(&id, "uid", 3, BSON_SUBTYPE_BINARY, uid, sizeof uid);
        bson_append_document_end(d, &id);
        BSON_APPEND_DATE_TIME(d, "lastUse", (int64_t)x->last_use * 1000);
        (*docs)[(*n)++] = d;
    }
    pthread_mutex_unlock(&s->lock);
}
