/* The session with the Telepresence daemon for one network: one HTTP/2 connection carrying the
 * Connect stream (its end means the daemon is gone) and the endpoint calls. Connects on demand,
 * so a network persisted across a plugin restart reconnects at its next use. */
#ifndef TR_SESSION_H
#define TR_SESSION_H

#include "plg_error.h"
#include "tr_addr.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

struct tr_session;

struct tr_session *tr_session_new(const char *host, int port, const struct tr_prefix *gateways,
                                  size_t n_gateways, int64_t connect_timeout_ms, int64_t call_timeout_ms);
/* A session is shared by its network and by route refreshes in flight: the last release frees
 * it (a new session holds one reference). */
void tr_session_hold(struct tr_session *s);
void tr_session_release(struct tr_session *s);

/* Opens the connection and the Connect stream unless they are up; retries while the daemon
 * answers UNAVAILABLE (it may still be starting), within the connect timeout. */
int tr_session_connect(struct tr_session *s, plg_error_t *err);

/* A unary call of the Teleroute service ("Join"), packed from REQ; the reply bytes are the
 * caller's. Reconnects once when the connection had ended. *CODE is the gRPC status. */
int tr_session_call(struct tr_session *s, const char *method, const ProtobufCMessage *req, uint8_t **resp,
                    size_t *resp_len, int *code, plg_error_t *err);

/* A call that must not wait on a daemon that is gone (Leave, RemoveEndpoint): no reconnect
 * retries, a short connect deadline. */
int tr_session_call_once(struct tr_session *s, const char *method, const ProtobufCMessage *req, int *code,
                         plg_error_t *err);

#endif
