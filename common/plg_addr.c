#include "plg_addr.h"

#include "plg_settings.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

int plg_addr_parse_port(const char *name, const char *value, int *port, plg_error_t *err)
{
  int64_t v;
  plg_error_t inner = NULL;
  if (plg_parse_int(value, 1, 65535, &v, &inner) < 0 || value[0] == '+' || value[0] == '-') {
    plg_error_release(&inner);
    return plg_error_bad_request(err, "option \"%s\": \"%.32s\" is not a port number (1-65535)", name, value);
  }
  *port = (int)v;
  return 0;
}

bool plg_addr_sockaddr(const char *ip, int port, struct sockaddr_storage *sa, socklen_t *len)
{
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
  if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return true;
  }
  if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return true;
  }
  return false;
}
