/* Addresses from text, shared by both plugins: port numbers from options, and socket addresses
 * from numeric IP text. */
#ifndef PLG_ADDR_H
#define PLG_ADDR_H

#include "plg_error.h"

#include <stdbool.h>
#include <sys/socket.h>

/* A port number of option NAME: decimal digits only, 1-65535. The error (400) names the option
 * and the value: option "port": "70000" is not a port number (1-65535). */
int plg_addr_parse_port(const char *name, const char *value, int *port, plg_error_t *err);

/* SA (*LEN set) for the numeric IPv4 or IPv6 address IP and PORT; false when IP is neither. */
bool plg_addr_sockaddr(const char *ip, int port, struct sockaddr_storage *sa, socklen_t *len);

#endif
