/* The session with the Telepresence daemon for one network: one HTTP/2 connection carrying the
 * Connect stream (its end means the daemon is gone) and the endpoint calls. Connects on demand,
 * so a network persisted across a plugin restart reconnects at its next use.
 *
 * A connection counts as up once the daemon answered at the HTTP/2 level (its SETTINGS) and its
 * Connect stream did not end at once: a port that accepts and stays silent fails within the
 * connect timeout instead of being trusted.
 *
 * Sessions belong to a group (the plugin's): stopping the group ends every call, connect and
 * wait of its sessions at once with CANCELLED, and every later one too.
 *
 * Locking: group.lock -> session.lock -> the connection's lock (tr_grpc.h). A session's
 * connect_lock (one connect attempt at a time) is taken before session.lock and never while the
 * group's is held. No lock is held while a connection is closed (that joins its thread). */
#ifndef TR_SESSION_H
#define TR_SESSION_H

#include "plg_error.h"
#include "tr_addr.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

struct tr_session_group;
struct tr_session;

struct tr_session_group *tr_session_group_new(void);
/* Cancels every call and connect of the group's sessions (CANCELLED: "the plugin is stopping"),
 * and those of sessions made later; quick, never waits on the daemon. */
void tr_session_group_stop(struct tr_session_group *g);
/* Every session of G must have been released. */
void tr_session_group_free(struct tr_session_group *g);

struct tr_session *tr_session_new(struct tr_session_group *g, const char *host, int port,
                                  const struct tr_prefix *gateways, size_t n_gateways,
                                  int64_t connect_timeout_ms, int64_t call_timeout_ms);
/* A session is shared by its network and by calls in flight: the last release frees it (a new
 * session holds one reference). Never release with a lock held: the last one joins a thread. */
void tr_session_hold(struct tr_session *s);
void tr_session_release(struct tr_session *s);

/* Opens the connection and the Connect stream unless they are up; retries while the daemon
 * answers UNAVAILABLE (it may still be starting), within the connect timeout. */
int tr_session_connect(struct tr_session *s, plg_error_t *err);

/* A unary call of the Teleroute service ("Join"), packed from REQ; the reply bytes are the
 * caller's. Reconnects once when the connection had ended. ERR names the daemon, the method and
 * the gRPC status: "the Telepresence daemon at 172.17.0.2:4039: Join: INTERNAL: ...". */
int tr_session_call(struct tr_session *s, const char *method, const ProtobufCMessage *req, uint8_t **resp,
                    size_t *resp_len, plg_error_t *err);

/* A call that must not wait on a daemon that is gone (Leave, RemoveEndpoint): no reconnect
 * retries, a short connect deadline; the reply is dropped. */
int tr_session_call_once(struct tr_session *s, const char *method, const ProtobufCMessage *req,
                         plg_error_t *err);

#endif
