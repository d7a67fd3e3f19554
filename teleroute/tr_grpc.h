/* A gRPC client on one HTTP/2 connection (prior knowledge, no TLS), on nghttp2. One thread per
 * connection owns the nghttp2 session; callers submit calls and wait with deadlines of their own.
 *
 * Locking: the connection's lock guards the nghttp2 session and the calls, and is held by the
 * connection thread only while it works on bytes already read (at most TR_GRPC_ROUND_BYTES per
 * round), never while it waits or reads: a peer that floods frames cannot keep a caller from its
 * deadline. Callbacks run on the connection thread without the lock. It is the innermost lock of
 * teleroute: nothing else is taken while it is held. */
#ifndef TR_GRPC_H
#define TR_GRPC_H

#include "plg_error.h"
#include "tr_grpc_frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The most bytes the connection thread handles between two looks at deadlines and new calls. */
#define TR_GRPC_ROUND_BYTES (64 * 1024)

struct tr_grpc;

/* Called on the connection's thread, without its lock held. */
typedef void (*tr_grpc_msg_fn)(void *arg, const uint8_t *msg, size_t len);
typedef void (*tr_grpc_end_fn)(void *arg, int code, const char *message);
/* The peer's first HTTP/2 frame arrived (its SETTINGS): it speaks HTTP/2. Called once. */
typedef void (*tr_grpc_answer_fn)(void *arg);

/* Connects to SA (numeric) within TIMEOUT_MS, or until CANCEL_FD (-1: none) is readable, and
 * starts the connection's thread. ON_ANSWER (may be NULL) gets ARG. */
int tr_grpc_open(const struct sockaddr *sa, socklen_t len, int timeout_ms, int cancel_fd,
                 tr_grpc_answer_fn on_answer, void *arg, struct tr_grpc **out, plg_error_t *err);

/* The same over FD, a connected stream socket that the connection then owns; WHERE names the
 * peer in messages. */
int tr_grpc_start(int fd, const char *where, tr_grpc_answer_fn on_answer, void *arg, struct tr_grpc **out,
                  plg_error_t *err);

/* One request, one reply, within TIMEOUT_MS. On failure *CODE is the gRPC status (UNAVAILABLE
 * when the connection is gone, DEADLINE_EXCEEDED at the deadline, CANCELLED after
 * tr_grpc_cancel) and ERR says it with the method: "Join: INTERNAL: <the daemon's message>". */
int tr_grpc_unary(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len, int timeout_ms,
                  uint8_t **resp, size_t *resp_len, int *code, plg_error_t *err);

/* Starts a server stream with no deadline: ON_MSG for each message, then ON_END exactly once
 * (also when the connection dies, is cancelled or is closed). */
int tr_grpc_stream(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len,
                   tr_grpc_msg_fn on_msg, tr_grpc_end_fn on_end, void *arg, plg_error_t *err);

/* True once the connection has ended (GOAWAY, reset, cancelled, closed). */
bool tr_grpc_is_closed(struct tr_grpc *c);

/* Ends every call at once with CANCELLED and WHY, and the connection with them; does not wait
 * and frees nothing (tr_grpc_close does). Safe from any thread. */
void tr_grpc_cancel(struct tr_grpc *c, const char *why);

/* Ends every call (CANCELLED), closes the socket, joins the thread, frees C. */
void tr_grpc_close(struct tr_grpc *c);

#endif
