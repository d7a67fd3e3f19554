/* A gRPC client on one HTTP/2 connection (prior knowledge, no TLS), on nghttp2. One thread per
 * connection owns the nghttp2 session; callers submit calls and wait with a deadline. */
#ifndef TR_GRPC_H
#define TR_GRPC_H

#include "plg_error.h"
#include "tr_grpc_frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct tr_grpc;

/* Called on the connection's thread, without its lock held. */
typedef void (*tr_grpc_msg_fn)(void *arg, const uint8_t *msg, size_t len);
typedef void (*tr_grpc_end_fn)(void *arg, int code, const char *message);

/* Connects to SA (numeric) within TIMEOUT_MS and starts the connection's thread. */
int tr_grpc_open(const struct sockaddr *sa, socklen_t len, int timeout_ms, struct tr_grpc **out,
                 plg_error_t *err);

/* One request, one reply, within TIMEOUT_MS. On failure *CODE is the gRPC status (UNAVAILABLE
 * when the connection is gone, DEADLINE_EXCEEDED at the deadline) and ERR says it with the call. */
int tr_grpc_unary(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len, int timeout_ms,
                  uint8_t **resp, size_t *resp_len, int *code, plg_error_t *err);

/* Starts a server stream with no deadline: ON_MSG for each message, then ON_END exactly once
 * (also when the connection dies or is closed). */
int tr_grpc_stream(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len,
                   tr_grpc_msg_fn on_msg, tr_grpc_end_fn on_end, void *arg, plg_error_t *err);

/* True once the connection has ended (GOAWAY, reset, closed). */
bool tr_grpc_is_closed(struct tr_grpc *c);

/* Ends every call (CANCELLED), closes the socket, joins the thread, frees C. */
void tr_grpc_close(struct tr_grpc *c);

#endif
