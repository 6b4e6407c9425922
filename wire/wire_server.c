/*
 * wire_server.c: the listener, the I/O threads and the connections (DESIGN.md section 3).
 *
 * Threads:
 *   - The main thread runs one event_base with the listening socket and the SIGINT/SIGTERM
 *     handlers. It accepts connections and hands each to one I/O thread, round robin.
 *   - Each I/O thread runs its own event_base. A handed-over socket goes into the thread's
 *     queue (under its mutex) and the thread is woken through a user event; from then on the
 *     connection lives and dies on that thread only, so connection state needs no locks.
 *   - A command runs to completion on its connection's thread (reads never wait for a
 *     writer; writes will queue an intent to the engine's committer and finish later).
 *
 * Framing is wire_frame.c's (pure); this file only moves bytes: it asks wire_frame_peek()
 * whether a whole frame is buffered, parses it, dispatches it, and writes the reply.
 * A frame that cannot be delimited or parsed closes that connection with one log line at
 * level 1; every other connection carries on.
 *
 * Connection I/O is plain events on the socket, not bufferevents, because per request the
 * syscalls are most of the server's cost (measured with scripts/bench):
 *   - reading: one recv() into the thread's scratch buffer per readable event; whole frames
 *     are handled straight from it, and only the bytes of a partial frame (or frames that
 *     arrive while a command is in flight) are copied to the connection's own `pend`
 *     buffer. No FIONREAD ioctl, no allocation in the common case.
 *   - writing: a reply is sent with one send() when nothing is queued before it; only what
 *     the socket does not take goes to the connection's `out` evbuffer, and only then is the
 *     write event added (so a reply costs no epoll_ctl calls).
 *   - while a command is in flight its connection keeps reading (the bytes wait in `pend`)
 *     up to WIRE_PEND_MAX bytes; past that the read event is removed until it finishes.
 *
 * Shutdown: the signal handler stops the listener and tells every I/O thread to stop.
 * A thread stops reading from its connections, lets their pending replies drain, closes
 * them, and leaves its loop (after at most WIRE_SHUTDOWN_GRACE_SECONDS for clients that do
 * not read their replies). The main thread joins the I/O threads and returns.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "agg_hooks.h"
#include "wire_int.h"

#define WIRE_SHUTDOWN_GRACE_SECONDS 5

typedef struct wire_io_thread {
    wire_server_t *server;
    int index;
    pthread_t tid;
    struct event_base *base;
    struct event *wakeup;       /* activated by other threads: new sockets, or stop */
    struct event *grace_timer;  /* forces the loop to end during shutdown */
    pthread_mutex_t lock;       /* guards queue and stopping */
    int *queue;
    size_t queue_len, queue_cap;
    bool stopping;
    wire_request_t *done;       /* writes completed by the committer, to resume here */
    wire_conn_t *conns;         /* this thread's connections */
    size_t nconns;
    uint8_t *rbuf;              /* WIRE_RBUF_SIZE bytes: where recv() puts what arrives */
    uint8_t *wbuf;              /* where a reply frame is built before it is sent */
    size_t wbuf_cap;
} wire_io_thread_t;

struct wire_server_impl {
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *sigint, *sigterm;
    wire_io_thread_t *threads;
    int nthreads;
    unsigned next_thread;
    _Atomic int32_t next_request_id;
};

uint64_t wire_server_uptime_micros(const wire_server_t *server)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - server->started_mono.tv_sec) * 1000000 +
                 (now.tv_nsec - server->started_mono.tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

/* ---- connections ---- */

/* Bytes a connection may buffer beyond the frame it is handling while a command is in
 * flight, before it stops reading (TCP then pushes back on the client). */
#define WIRE_PEND_MAX ((size_t)WIRE_MAX_MESSAGE_SIZE + 65536)
/* The per-thread receive buffer. */
#define WIRE_RBUF_SIZE ((size_t)256 * 1024)

/* A connection as this file sees it: the shared part first (wire_int.h), then the socket
 * state that only this file touches. */
typedef struct conn_io {
    wire_conn_t c;
    evutil_socket_t fd;
    struct event *rev;          /* persistent EV_READ; removed when closing or pend is full */
    struct event *wev;          /* persistent EV_WRITE; added only while `out` has bytes */
    bool reading;               /* rev is added */
    uint8_t *pend;              /* received bytes not handled yet */
    size_t pend_len, pend_cap;
    struct evbuffer *out;       /* reply bytes the socket has not taken yet */
} conn_io_t;

static conn_io_t *conn_io(wire_conn_t *conn)
{
    return (conn_io_t *)conn;
}

static void conn_free(wire_conn_t *conn)
{
    wire_io_thread_t *t = conn->thread;
    conn_io_t *io = conn_io(conn);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        t->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    t->nconns--;
    atomic_fetch_sub(&conn->server->conns_current, 1);
    wire_log(1, "conn%llu: end connection %s (%zu on this thread)",
             (unsigned long long)conn->id, conn->peer, t->nconns);
    event_free(io->rev);
    event_free(io->wev);
    evbuffer_free(io->out);
    evutil_closesocket(io->fd);
    free(io->pend);
    free(io);
    if (t->stopping && t->nconns == 0)
        event_base_loopexit(t->base, NULL);
}

static void conn_reading(conn_io_t *io, bool on)
{
    if (on == io->reading)
        return;
    if (on)
        event_add(io->rev, NULL);
    else
        event_del(io->rev);
    io->reading = on;
}

/* Marks the connection to be closed once its pending replies are written: reading stops
 * now. The caller frees it with conn_free_if_done() when it is done touching it. */
static void conn_close_when_flushed(wire_conn_t *conn)
{
    conn->closing = true;
    conn_reading(conn_io(conn), false);
}

/* The peer is gone or the socket failed: unsent replies are dropped. */
static void conn_drop_output(conn_io_t *io)
{
    evbuffer_drain(io->out, evbuffer_get_length(io->out));
    event_del(io->wev);
    conn_close_when_flushed(&io->c);
}

/* Frees a closing connection whose output has drained. Returns true if it did. */
static bool conn_free_if_done(wire_conn_t *conn)
{
    if (!conn->closing || conn->inflight || evbuffer_get_length(conn_io(conn)->out) != 0)
        return false;
    conn_free(conn);
    return true;
}

/* Writes what the socket takes of `out`. */
static void conn_flush(conn_io_t *io)
{
    while (evbuffer_get_length(io->out) > 0) {
        int n = evbuffer_write(io->out, io->fd);
        if (n > 0)
            continue;
        int e = EVUTIL_SOCKET_ERROR();
        if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
            break;
        wire_log(1, "conn%llu: write to %s failed: %s", (unsigned long long)io->c.id,
                 io->c.peer, n < 0 ? strerror(e) : "connection closed");
        conn_drop_output(io);
        return;
    }
    if (evbuffer_get_length(io->out) == 0)
        event_del(io->wev);
    else
        event_add(io->wev, NULL);
}

/* Queues `len` bytes of a reply: sent at once when nothing is queued before them. */
static void conn_write(conn_io_t *io, const uint8_t *data, size_t len)
{
    if (evbuffer_get_length(io->out) == 0) {
        for (;;) {
            ssize_t n = send(io->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) {
                data += n;
                len -= (size_t)n;
                if (len == 0)
                    return;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            wire_log(1, "conn%llu: write to %s failed: %s", (unsigned long long)io->c.id,
                     io->c.peer, strerror(errno));
            conn_drop_output(io);
            return;
        }
    }
    if (evbuffer_add(io->out, data, len) != 0) {
        wire_log(0, "conn%llu: out of memory queueing a %zu-byte reply; closing",
                 (unsigned long long)io->c.id, len);
        conn_drop_output(io);
        return;
    }
    event_add(io->wev, NULL);
}

/* Appends one reply frame to the connection's output. */
static void conn_send(wire_conn_t *conn, int32_t response_to, bool legacy, int32_t reply_flags,
                      const bson_t *reply)
{
    struct wire_server_impl *impl = conn->server->impl;
    wire_io_thread_t *t = conn->thread;
    int32_t request_id = atomic_fetch_add(&impl->next_request_id, 1);
    size_t need = legacy ? wire_frame_build_reply(NULL, 0, request_id, response_to, reply_flags, reply)
                         : wire_frame_build_msg(NULL, 0, request_id, response_to, 0, reply);
    if (need > t->wbuf_cap) {
        uint8_t *grown = realloc(t->wbuf, need);
        if (!grown) {
            wire_log(0, "conn%llu: out of memory building a %zu-byte reply; closing",
                     (unsigned long long)conn->id, need);
            conn_close_when_flushed(conn);
            return;
        }
        t->wbuf = grown;
        t->wbuf_cap = need;
    }
    if (legacy)
        wire_frame_build_reply(t->wbuf, need, request_id, response_to, reply_flags, reply);
    else
        wire_frame_build_msg(t->wbuf, need, request_id, response_to, 0, reply);
    conn_write(conn_io(conn), t->wbuf, need);
}

/* Sends a finished request's reply (unless the client asked for none, or is gone) and
 * frees it. */
static void conn_finish_request(wire_conn_t *conn, wire_request_t *req)
{
    if (!(req->msg.flags & WIRE_MSG_MORE_TO_COME) && !conn->closing)
        conn_send(conn, req->msg.hdr.request_id, req->legacy, req->reply_flags, &req->reply);
    wire_request_free(req);
}

/* Handles one whole frame; may mark the connection closing or leave a request in flight. */
static void conn_handle_frame(wire_conn_t *conn, const uint8_t *frame, size_t len)
{
    wire_msg_t msg;
    bq_error_t err;
    bq_error_clear(&err);
    wire_parse_result_t res = wire_frame_parse(frame, len, &msg, &err);
    if (res == WIRE_PARSE_CLOSE) {
        wire_log(1, "conn%llu: closing connection from %s: %s", (unsigned long long)conn->id,
                 conn->peer, err.message);
        wire_msg_cleanup(&msg);
        conn_close_when_flushed(conn);
        return;
    }
    if (res == WIRE_PARSE_ERROR_REPLY) {
        wire_log(1, "conn%llu: bad request: %s", (unsigned long long)conn->id, err.message);
        bson_t reply = BSON_INITIALIZER;
        wire_reply_error(&reply, &err);
        if (!(msg.flags & WIRE_MSG_MORE_TO_COME))
            conn_send(conn, msg.hdr.request_id, msg.hdr.opcode == WIRE_OP_QUERY, 0, &reply);
        bson_destroy(&reply);
        wire_msg_cleanup(&msg);
        return;
    }
    wire_request_t *req = wire_request_start(conn->server, conn, &msg);
    wire_msg_cleanup(&msg);
    if (wire_request_finished(req))
        conn_finish_request(conn, req);
    else
        conn->inflight = req; /* no more frames from this connection until it is done */
}

/* Handles the whole frames at the start of buf[0, len) while the connection can take
 * them. Returns the number of bytes consumed. */
static size_t conn_handle_bytes(wire_conn_t *conn, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    while (!conn->closing && !conn->inflight && len - pos >= WIRE_HEADER_SIZE) {
        wire_header_t hdr;
        bq_error_t err;
        bq_error_clear(&err);
        if (wire_frame_peek(buf + pos, WIRE_HEADER_SIZE, &hdr, &err) == WIRE_FRAME_INVALID) {
            wire_log(1, "conn%llu: closing connection from %s: %s",
                     (unsigned long long)conn->id, conn->peer, err.message);
            conn_close_when_flushed(conn);
            break;
        }
        size_t flen = (size_t)hdr.length;
        if (len - pos < flen)
            break; /* wait for the rest of the frame */
        conn_handle_frame(conn, buf + pos, flen);
        pos += flen;
    }
    return pos;
}

/* Makes room for `extra` more bytes in the connection's pending buffer. */
static bool conn_pend_reserve(conn_io_t *io, size_t extra)
{
    if (io->pend_cap - io->pend_len >= extra)
        return true;
    size_t cap = io->pend_cap ? io->pend_cap : 16384;
    while (cap - io->pend_len < extra)
        cap *= 2;
    uint8_t *grown = realloc(io->pend, cap);
    if (!grown)
        return false;
    io->pend = grown;
    io->pend_cap = cap;
    return true;
}

/* Handles what is buffered in `pend`, keeps the rest, and decides whether to keep reading. */
static void conn_handle_pending(conn_io_t *io)
{
    wire_conn_t *conn = &io->c;
    size_t used = conn_handle_bytes(conn, io->pend, io->pend_len);
    if (used) {
        memmove(io->pend, io->pend + used, io->pend_len - used);
        io->pend_len -= used;
    }
    if (io->pend_len == 0 && io->pend_cap > WIRE_RBUF_SIZE) {
        free(io->pend); /* a big frame went through: do not keep its buffer */
        io->pend = NULL;
        io->pend_cap = 0;
    }
    if (!conn->closing)
        conn_reading(io, io->pend_len < WIRE_PEND_MAX);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    conn_io_t *io = arg;
    wire_conn_t *conn = &io->c;
    wire_io_thread_t *t = conn->thread;
    if (conn->closing)
        return;
    uint8_t *dst;
    size_t room;
    bool direct = io->pend_len == 0;
    if (direct) {
        dst = t->rbuf;
        room = WIRE_RBUF_SIZE;
    } else {
        /* Enough for the rest of the frame under way, at least 16 KiB. */
        size_t want = 16384;
        if (io->pend_len >= 4) {
            uint32_t flen = (uint32_t)io->pend[0] | (uint32_t)io->pend[1] << 8 |
                            (uint32_t)io->pend[2] << 16 | (uint32_t)io->pend[3] << 24;
            if (flen > io->pend_len && flen - io->pend_len > want &&
                flen <= WIRE_MAX_MESSAGE_SIZE)
                want = flen - io->pend_len;
        }
        if (!conn_pend_reserve(io, want)) {
            wire_log(0, "conn%llu: out of memory reading from %s; closing",
                     (unsigned long long)conn->id, conn->peer);
            conn_drop_output(io);
            conn_free_if_done(conn);
            return;
        }
        dst = io->pend + io->pend_len;
        room = io->pend_cap - io->pend_len;
    }
    ssize_t n = recv(fd, dst, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* the peer is gone: drop unsent replies; a command in flight finishes first */
        if (n < 0)
            wire_log(1, "conn%llu: read from %s failed: %s", (unsigned long long)conn->id,
                     conn->peer, strerror(errno));
        conn_drop_output(io);
        conn_free_if_done(conn);
        return;
    }
    if (direct) {
        size_t used = conn_handle_bytes(conn, dst, (size_t)n);
        size_t rest = (size_t)n - used;
        if (rest && !conn->closing) {
            if (!conn_pend_reserve(io, rest)) {
                wire_log(0, "conn%llu: out of memory reading from %s; closing",
                         (unsigned long long)conn->id, conn->peer);
                conn_drop_output(io);
            } else {
                memcpy(io->pend, dst + used, rest);
                io->pend_len = rest;
            }
        }
    } else {
        io->pend_len += (size_t)n;
        conn_handle_pending(io);
    }
    conn_free_if_done(conn);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_io_t *io = arg;
    conn_flush(io);
    conn_free_if_done(&io->c);
}

static void sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        port = ntohs(sin->sin_port);
        snprintf(buf, size, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        port = ntohs(sin6->sin6_port);
        snprintf(buf, size, "[%s]:%d", host, port);
    } else {
        snprintf(buf, size, "unknown");
    }
}

static void conn_open(wire_io_thread_t *t, int fd)
{
    wire_server_t *server = t->server;
    conn_io_t *io = calloc(1, sizeof *io);
    if (io) {
        io->fd = fd;
        io->out = evbuffer_new();
        io->rev = event_new(t->base, fd, EV_READ | EV_PERSIST, conn_read_cb, io);
        io->wev = event_new(t->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, io);
    }
    if (!io || !io->out || !io->rev || !io->wev ||
        evutil_make_socket_nonblocking(fd) != 0) {
        wire_log(0, "out of memory accepting a connection");
        if (io) {
            if (io->out)
                evbuffer_free(io->out);
            if (io->rev)
                event_free(io->rev);
            if (io->wev)
                event_free(io->wev);
        }
        free(io);
        evutil_closesocket(fd);
        return;
    }
    wire_conn_t *conn = &io->c;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        sockaddr_format(&ss, conn->peer, sizeof conn->peer);
    sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        sockaddr_format(&ss, conn->local, sizeof conn->local);
    conn->server = server;
    conn->thread = t;
    conn->id = atomic_fetch_add(&server->next_conn_id, 1);
    conn->next = t->conns;
    if (t->conns)
        t->conns->prev = conn;
    t->conns = conn;
    t->nconns++;
    int64_t now = atomic_fetch_add(&server->conns_current, 1) + 1;
    atomic_fetch_add(&server->conns_total, 1);
    wire_log(1, "conn%llu: connection accepted from %s (%lld now open)",
             (unsigned long long)conn->id, conn->peer, (long long)now);
    conn_reading(io, true);
}

/* ---- I/O threads ---- */

static void thread_grace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wire_io_thread_t *t = arg;
    if (t->nconns)
        wire_log(0, "shutdown: closing %zu connections that did not drain in time", t->nconns);
    bool waiting = false;
    for (wire_conn_t *c = t->conns, *next; c; c = next) {
        next = c->next;
        if (c->inflight) {
            waiting = true; /* its write completes soon: the committer still runs */
            continue;
        }
        conn_drop_output(conn_io(c));
        conn_free(c);
    }
    if (!waiting)
        event_base_loopexit(t->base, NULL);
}

static void thread_wakeup_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wire_io_thread_t *t = arg;
    pthread_mutex_lock(&t->lock);
    int *fds = t->queue;
    size_t n = t->queue_len;
    bool stopping = t->stopping;
    wire_request_t *done = t->done;
    t->queue = NULL;
    t->queue_len = t->queue_cap = 0;
    t->done = NULL;
    pthread_mutex_unlock(&t->lock);

    /* Resume the commands whose writes completed (the list is newest first: reverse it so
     * completions are handled in order). */
    wire_request_t *rev = NULL;
    while (done) {
        wire_request_t *next = done->next;
        done->next = rev;
        rev = done;
        done = next;
    }
    while (rev) {
        wire_request_t *req = rev;
        rev = rev->next;
        wire_conn_t *conn = req->ctx.conn;
        wire_request_resume(req);
        if (!wire_request_finished(req))
            continue; /* waiting for another write */
        conn->inflight = NULL;
        conn_finish_request(conn, req);
        if (!conn->closing)
            conn_handle_pending(conn_io(conn)); /* frames that arrived meanwhile */
        conn_free_if_done(conn);
    }

    for (size_t i = 0; i < n; i++) {
        if (stopping)
            evutil_closesocket(fds[i]);
        else
            conn_open(t, fds[i]);
    }
    free(fds);
    if (!stopping)
        return;
    /* Stop: every command on this thread has finished (they run to completion on this
     * thread), so what is left is to flush replies and close. */
    if (t->nconns == 0) {
        event_base_loopexit(t->base, NULL);
        return;
    }
    wire_conn_t *c = t->conns;
    while (c) {
        wire_conn_t *next = c->next;
        conn_close_when_flushed(c);
        conn_free_if_done(c); /* may exit the loop once the last one goes */
        c = next;
    }
    struct timeval grace = {WIRE_SHUTDOWN_GRACE_SECONDS, 0};
    t->grace_timer = evtimer_new(t->base, thread_grace_cb, t);
    if (t->grace_timer)
        evtimer_add(t->grace_timer, &grace);
}

static void *thread_main(void *arg)
{
    wire_io_thread_t *t = arg;
    event_base_loop(t->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void thread_notify(wire_io_thread_t *t)
{
    event_active(t->wakeup, EV_READ, 0);
}

void wire_server_intent_done(eng_intent_t *intent)
{
    static atomic_bool read_only_logged;
    wire_request_t *req = intent->owner;
    if (intent->err.code && eng_db_read_only(req->ctx.server->db) &&
        !atomic_exchange(&read_only_logged, true))
        wire_log(0, "a write to the log failed; no write of that batch was acknowledged and "
                    "the server is now read-only until restarted: %s",
                 intent->err.message);
    wire_io_thread_t *t = req->ctx.conn->thread;
    pthread_mutex_lock(&t->lock);
    req->next = t->done;
    t->done = req;
    pthread_mutex_unlock(&t->lock);
    thread_notify(t);
}

/* ---- listener and signals (main thread) ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    wire_server_t *server = arg;
    struct wire_server_impl *impl = server->impl;
    wire_io_thread_t *t = &impl->threads[impl->next_thread++ % (unsigned)impl->nthreads];
    pthread_mutex_lock(&t->lock);
    if (t->queue_len == t->queue_cap) {
        size_t cap = t->queue_cap ? t->queue_cap * 2 : 16;
        int *q = realloc(t->queue, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&t->lock);
            wire_log(0, "out of memory handing over a connection");
            evutil_closesocket(fd);
            return;
        }
        t->queue = q;
        t->queue_cap = cap;
    }
    t->queue[t->queue_len++] = fd;
    pthread_mutex_unlock(&t->lock);
    thread_notify(t);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends are transient: log and keep listening. */
    wire_log(0, "accept failed: %s", evutil_socket_error_to_string(e));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    wire_server_t *server = arg;
    struct wire_server_impl *impl = server->impl;
    wire_log(0, "received signal %d: shutting down", (int)sig);
    wire_admin_release_writes(server); /* writes held by an fsync lock finish first */
    if (impl->listener) {
        evconnlistener_free(impl->listener);
        impl->listener = NULL;
    }
    for (int i = 0; i < impl->nthreads; i++) {
        wire_io_thread_t *t = &impl->threads[i];
        pthread_mutex_lock(&t->lock);
        t->stopping = true;
        pthread_mutex_unlock(&t->lock);
        thread_notify(t);
    }
    event_base_loopexit(impl->base, NULL);
}

/* Lets 1,000s of connections in: raise the soft descriptor limit to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* mkdir -p for the data directory. */
static bool make_dirs(const char *path, bq_error_t *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        bq_error_set(err, BQ_ERR_BadValue, "bad --dbpath '%s'", path);
        return false;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                bq_error_set(err, BQ_ERR_InternalError, "cannot create data directory '%s': %s",
                             buf, strerror(errno));
                return false;
            }
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        bq_error_set(err, BQ_ERR_InternalError, "data directory '%s' is not a directory", path);
        return false;
    }
    return true;
}

static void threads_stop_and_free(struct wire_server_impl *impl)
{
    for (int i = 0; i < impl->nthreads; i++) {
        wire_io_thread_t *t = &impl->threads[i];
        if (t->tid)
            pthread_join(t->tid, NULL);
        if (t->grace_timer)
            event_free(t->grace_timer);
        if (t->wakeup)
            event_free(t->wakeup);
        if (t->base)
            event_base_free(t->base);
        free(t->queue);
        free(t->rbuf);
        free(t->wbuf);
        pthread_mutex_destroy(&t->lock);
    }
    free(impl->threads);
}

/* DESIGN.md section 11: checkpoints are logged at level 2, a failed one at level 0. */
static void checkpoint_logged(void *arg, int64_t seq, double ms, const bq_error_t *err)
{
    (void)arg;
    if (err)
        wire_log(0, "checkpoint at seq %lld failed: %s", (long long)seq, err->message);
    else
        wire_log(2, "checkpoint at seq %lld written in %.1f ms", (long long)seq, ms);
}

bool wire_server_run(const wire_config_t *cfg, bq_error_t *err)
{
    static wire_server_t server; /* one per process: signals are process-wide */
    static struct wire_server_impl impl;
    bool ok = false;

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (evthread_use_pthreads() != 0) {
        bq_error_set(err, BQ_ERR_InternalError, "libevent has no pthreads support");
        return false;
    }
    if (!make_dirs(cfg->dbpath, err))
        return false;
    agg_install_bq_hooks(); /* $expr in query filters */

    memset(&server, 0, sizeof server);
    memset(&impl, 0, sizeof impl);
    server.cfg = cfg;
    server.impl = &impl;
    server.started = time(NULL);
    clock_gettime(CLOCK_MONOTONIC, &server.started_mono);
    atomic_init(&server.next_conn_id, 1);
    atomic_init(&impl.next_request_id, 1);
    char hn[200] = "localhost";
    gethostname(hn, sizeof hn - 1);
    snprintf(server.host, sizeof server.host, "%s:%d", hn, cfg->port);
    char *warnings = NULL;
    eng_db_options_t eopts = cfg->engine;
    eopts.checkpoint_done = checkpoint_logged;
    eopts.checkpoint_arg = NULL;
    if (!eng_db_open(cfg->dbpath, &eopts, &server.db, &warnings, err))
        return false;
    if (warnings && *warnings)
        wire_log(0, "recovery: %s", warnings);
    free(warnings);
    wire_log(0, "opened %s: %lld ops in the log", cfg->dbpath,
             (long long)eng_db_snapshot(server.db) + 1);
    server.cmd_stats = calloc(wire_commands_count, sizeof *server.cmd_stats);
    server.sessions = wire_sessions_new();
    server.cursors = wire_cursors_new();
    server.admin = wire_admin_new();
    impl.base = event_base_new();
    if (!server.cmd_stats || !server.sessions || !server.cursors || !server.admin ||
        !impl.base) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory starting the server");
        goto out;
    }
    server.ttl = wire_ttl_start(&server, cfg->ttl_monitor_sleep_secs,
                                !cfg->ttl_monitor_disabled, err);
    if (!server.ttl)
        goto out;

    /* Signals first: a SIGTERM that arrives once the port is open must stop the server
     * cleanly, not kill it with the default action. */
    impl.sigint = evsignal_new(impl.base, SIGINT, signal_cb, &server);
    impl.sigterm = evsignal_new(impl.base, SIGTERM, signal_cb, &server);
    evsignal_add(impl.sigint, NULL);
    evsignal_add(impl.sigterm, NULL);

    struct sockaddr_storage ss;
    int sslen = (int)sizeof ss;
    char addr[300];
    snprintf(addr, sizeof addr, strchr(cfg->bind, ':') ? "[%s]:%d" : "%s:%d", cfg->bind,
             cfg->port);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
        bq_error_set(err, BQ_ERR_BadValue, "bad --bind address '%s'", cfg->bind);
        goto out;
    }
    impl.listener = evconnlistener_new_bind(
        impl.base, accept_cb, &server, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
        (struct sockaddr *)&ss, sslen);
    if (!impl.listener) {
        bq_error_set(err, BQ_ERR_InternalError, "cannot listen on %s: %s", addr,
                     strerror(errno));
        goto out;
    }
    evconnlistener_set_error_cb(impl.listener, accept_error_cb);

    impl.nthreads = cfg->threads;
    impl.threads = calloc((size_t)impl.nthreads, sizeof *impl.threads);
    if (!impl.threads) {
        bq_error_set(err, BQ_ERR_InternalError, "out of memory starting I/O threads");
        goto out;
    }
    for (int i = 0; i < impl.nthreads; i++) {
        wire_io_thread_t *t = &impl.threads[i];
        t->server = &server;
        t->index = i;
        pthread_mutex_init(&t->lock, NULL);
        t->base = event_base_new();
        t->wakeup = t->base ? event_new(t->base, -1, 0, thread_wakeup_cb, t) : NULL;
        t->rbuf = malloc(WIRE_RBUF_SIZE);
        t->wbuf_cap = 65536;
        t->wbuf = malloc(t->wbuf_cap);
        if (!t->wakeup || !t->rbuf || !t->wbuf || pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            t->tid = 0;
            bq_error_set(err, BQ_ERR_InternalError, "cannot start I/O thread %d", i);
            goto out;
        }
    }


    wire_log(0, "nedbd %s listening on %s, dbpath %s, %d I/O threads, log level %d",
             NEDB_VERSION, addr, cfg->dbpath, impl.nthreads, wire_log_level);
    event_base_dispatch(impl.base);
    ok = true;

out:
    if (impl.listener)
        evconnlistener_free(impl.listener);
    impl.listener = NULL;
    if (impl.threads) {
        if (!ok) {
            for (int i = 0; i < impl.nthreads; i++) {
                wire_io_thread_t *t = &impl.threads[i];
                if (t->tid) {
                    pthread_mutex_lock(&t->lock);
                    t->stopping = true;
                    pthread_mutex_unlock(&t->lock);
                    thread_notify(t);
                }
            }
        }
        threads_stop_and_free(&impl);
    }
    if (impl.sigint)
        event_free(impl.sigint);
    if (impl.sigterm)
        event_free(impl.sigterm);
    if (impl.base)
        event_base_free(impl.base);
    if (server.sessions)
        wire_sessions_destroy(server.sessions);
    if (server.cursors)
        wire_cursors_destroy(server.cursors);
    wire_ttl_stop(server.ttl); /* its deletes in flight finish through the sequencer */
    server.ttl = NULL;
    eng_db_close(server.db); /* after the I/O threads: no write is in flight any more */
    server.db = NULL;
    wire_admin_destroy(server.admin);
    server.admin = NULL;
    free(server.cmd_stats);
    if (ok)
        wire_log(0, "nedbd stopped");
    libevent_global_shutdown();
    return ok;
}
