/* IPv6 servers with sshfs's own redial. Debian's sshfs 3.7.3 dials only IPv4 with directport
 * (its connect_to asks getaddrinfo for PF_INET alone) and cannot redial in slave mode, so for an
 * IPv6 server the plugin listens on a loopback port of its own: sshfs dials it with directport
 * and -o reconnect, and each of its connections is relayed to the server. The relay owns the
 * connections to the server, so cutting them is how a frozen server is broken off. */
#ifndef TM_RELAY_H
#define TM_RELAY_H

#include "plg_error.h"
#include "tm_net.h"

struct tm_relay;

/* Listens on 127.0.0.1 (an ephemeral port) and relays each connection to UPSTREAM, dialled with
 * a deadline of CONNECT_TIMEOUT_MS; a dial that fails closes the loopback connection, which
 * sshfs sees as a failed connect. */
int tm_relay_start(const struct tm_addr *upstream, int connect_timeout_ms, struct tm_relay **out,
                   plg_error_t *err);
int tm_relay_port(const struct tm_relay *r);
/* Shuts down every relayed connection (both sides); returns how many there were. */
int tm_relay_cut(struct tm_relay *r);
/* Stops listening, cuts every connection, waits for the relay threads and frees R. */
void tm_relay_stop(struct tm_relay *r);

#endif
