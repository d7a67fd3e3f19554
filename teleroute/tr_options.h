/* Network options from `docker network create -o ...` (Docker's com.docker.network.generic). */
#ifndef TR_OPTIONS_H
#define TR_OPTIONS_H

#include "plg_error.h"

#include <jansson.h>

#define TR_DEFAULT_PORT 4039

struct tr_net_opts {
  char host[64]; /* the daemon's IP, canonical text */
  int port;
  long long pid; /* the daemon's process, informational; 0 = not given */
};

/* GENERIC is the option map (NULL when none). Only host, port and pid are accepted. */
int tr_net_opts_parse(json_t *generic, struct tr_net_opts *o, plg_error_t *err);

#endif
