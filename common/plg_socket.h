/* The Unix socket dockerd connects to. */
#ifndef PLG_SOCKET_H
#define PLG_SOCKET_H

#include "plg_error.h"

/* Creates the parent directory, replaces a stale socket file (refusing to take over one that a
 * live process still answers on, or a path that is not a socket), binds with mode 0660 and
 * listens. Returns the listening descriptor. */
int plg_socket_listen(const char *path, plg_error_t *err);

#endif
