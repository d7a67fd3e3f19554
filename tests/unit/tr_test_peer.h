/* A Teleroute daemon inside the test: an nghttp2 *server* session on one end of a socket, whose
 * answers the test chooses and whose progress the test waits for with explicit signals (no sleeps).
 * Every peer_* call is synchronous: an action has happened on the peer's thread when it returns. */
#ifndef TR_TEST_PEER_H
#define TR_TEST_PEER_H

#include <stddef.h>
#include <stdint.h>

enum peer_mode {
  PEER_SILENT, /* accepts and never writes a byte */
  PEER_DAEMON, /* its SETTINGS; Connect gets headers and one Info and stays open; unary calls: peer_answer */
};

/* An answer that never comes. */
#define PEER_HANG (-1)

struct peer;

/* A peer for FD (which it then owns), to be told its answers (peer_answer) and then run: it serves
 * FD on a thread of its own. peer_start is both. */
struct peer *peer_new(int fd, enum peer_mode mode);
void peer_run(struct peer *p);
struct peer *peer_start(int fd, enum peer_mode mode);

/* From now on, METHOD ("Join", "Connect") is answered with grpc-status CODE (PEER_HANG: never) and
 * MESSAGE, and with OK by the message REPLY of LEN bytes. Connect with OK sends one Info and stays
 * open. The default for every method: OK, an empty message. */
void peer_answer(struct peer *p, const char *method, int code, const char *message, const uint8_t *reply,
                 size_t len);

/* Waits until the peer received N calls of METHOD in all. */
void peer_wait_calls(struct peer *p, const char *method, int n);
/* Waits until the client had reset N streams in all (RST_STREAM, as at a deadline). */
void peer_wait_resets(struct peer *p, int n);
/* Waits until the client closed its end of the connection. */
void peer_wait_closed(struct peer *p);

/* Sends GOAWAY (no error, no stream refused). */
void peer_goaway(struct peer *p);
/* Ends every open Connect stream with grpc-status CODE and MESSAGE. */
void peer_end_connect(struct peer *p, int code, const char *message);
/* From now on writes frames that need no answer (of an unknown type), as fast as it can. */
void peer_flood(struct peer *p);
/* The daemon dies: its end of the connection is closed. */
void peer_die(struct peer *p);

/* Stops the thread (its end is closed if it was not) and frees the peer. */
void peer_free(struct peer *p);

#endif
