/* libFuzzer: arbitrary bytes as the option map of a NetworkDriver.CreateNetwork
 * (com.docker.network.generic) and as a Join's SandboxKey. Whatever is accepted must be a numeric
 * address that parses again to itself, a port in range, and a key in Docker's netns directory. */
#include "plg_net.h"
#include "plg_util.h"
#include "tr_netns.h"
#include "tr_options.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_options(const struct tr_net_opts *o)
{
  struct sockaddr_storage sa;
  socklen_t len;
  if (!plg_net_sockaddr(o->host, o->port, &sa, &len) || o->port < 1 || o->port > 65535 || o->pid < 0)
    abort();
  /* the canonical text is a fixed point: it parses to itself */
  json_t *again = json_pack("{s:s,s:s}", "host", o->host, "port", "1");
  struct tr_net_opts p;
  plg_error_t err = NULL;
  if (tr_net_opts_parse(again, &p, &err) < 0 || strcmp(p.host, o->host) != 0)
    abort();
  json_decref(again);
}

static void check_key(const char *key)
{
  plg_error_t err = NULL;
  if (tr_netns_key_check(key, &err) < 0) {
    plg_error_release(&err);
    return;
  }
  const char *base = strrchr(key, '/');
  if (key[0] != '/' || strstr(key, "/../") != NULL || strstr(key, "/./") != NULL ||
      strstr(key, "//") != NULL || strlen(base + 1) != 12 || base - key < 6 ||
      memcmp(base - 6, "/netns", 6) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *generic = json_loadb((const char *)data, size, 0, NULL);
  if (generic != NULL && json_is_object(generic)) {
    struct tr_net_opts o;
    plg_error_t err = NULL;
    if (tr_net_opts_parse(generic, &o, &err) == 0)
      check_options(&o);
    else if (err == NULL || err->status != 400)
      abort(); /* every refusal is the request's fault, with a message */
    plg_error_release(&err);
  }
  json_decref(generic);
  char *key = xstrndup((const char *)data, size);
  check_key(key);
  free(key);
  return 0;
}
