/* An SFTP server on a TCP port of 127.0.0.1 for tests: one real sftp-server per connection, as
 * the Telepresence daemon serves an intercepted pod's exports (sshfs's directport, no SSH). The
 * test switches it between serving, refusing and hanging up, drops or freezes its connections, and
 * learns how many connections arrived. */
#ifndef SFTP_FIXTURE_H
#define SFTP_FIXTURE_H

#include <stdbool.h>

#define SFTP_FIXTURE_SERVER "/usr/lib/openssh/sftp-server"

enum sftp_mode {
  SFTP_SERVE,   /* each connection gets its own sftp-server */
  SFTP_REFUSE,  /* nothing listens: connections are refused, as on a port nobody forwards */
  SFTP_HANG_UP, /* connections are accepted and closed at once (counted), before any answer */
};

struct sftp_server;

/* Serves from the start; the port is new and free. */
struct sftp_server *sftp_server_start(void);
int sftp_server_port(const struct sftp_server *s);
/* Returns once the server behaves as MODE asks. */
void sftp_server_set(struct sftp_server *s, enum sftp_mode mode);
/* Connections accepted so far, in any mode. */
int sftp_server_connections(struct sftp_server *s);
/* Waits until at least N connections were accepted; false when TIMEOUT_MS passed first. */
bool sftp_server_await_connections(struct sftp_server *s, int n, int timeout_ms);
/* Every sftp-server started so far gets SIG: SIGKILL ends their connections, SIGSTOP freezes them
 * (their sockets stay open and silent). Later connections are not affected. */
void sftp_server_signal_all(struct sftp_server *s, int sig);
/* Ends every connection and the server. */
void sftp_server_free(struct sftp_server *s);

#endif
