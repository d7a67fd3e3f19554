#include "tr_addr.h"

#include "plg_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int addr_bytes(int family)
{
  return family == AF_INET ? 4 : 16;
}

int tr_prefix_parse(const char *text, struct tr_prefix *p, plg_error_t *err)
{
  memset(p, 0, sizeof *p);
  char buf[64];
  if (strlen(text) >= sizeof buf)
    return plg_error_bad_request(err, "\"%.64s\" is not an IP address or prefix", text);
  strcpy(buf, text);
  char *slash = strchr(buf, '/');
  if (slash != NULL)
    *slash = '\0';
  if (inet_pton(AF_INET, buf, p->addr) == 1)
    p->family = AF_INET;
  else if (inet_pton(AF_INET6, buf, p->addr) == 1)
    p->family = AF_INET6;
  else
    return plg_error_bad_request(err, "\"%.64s\" is not an IP address or prefix", text);
  int max = addr_bytes(p->family) * 8;
  p->len = max;
  if (slash != NULL) {
    char *end;
    long n = strtol(slash + 1, &end, 10);
    if (!isdigit((unsigned char)slash[1]) || *end != '\0' || n < 0 || n > max)
      return plg_error_bad_request(err, "\"%.64s\" has a bad prefix length", text);
    p->len = (int)n;
  }
  return 0;
}

void tr_prefix_format(const struct tr_prefix *p, bool host_only, char *buf, size_t size)
{
  char ip[INET6_ADDRSTRLEN] = "";
  if (p->family != 0)
    inet_ntop(p->family, p->addr, ip, sizeof ip);
  if (host_only)
    snprintf(buf, size, "%s", ip);
  else
    snprintf(buf, size, "%s/%d", ip, p->len);
}

int tr_addr_from_bytes(const uint8_t *b, size_t n, struct tr_prefix *p, plg_error_t *err)
{
  memset(p, 0, sizeof *p);
  if (n == 0)
    return 0;
  if (n != 4 && n != 16)
    return plg_error_make(err, 0, "an address of %zu bytes (expected 4 or 16)", n);
  p->family = n == 4 ? AF_INET : AF_INET6;
  memcpy(p->addr, b, n);
  p->len = (int)n * 8;
  return 0;
}

int tr_prefix_from_bytes(const uint8_t *b, size_t n, struct tr_prefix *p, plg_error_t *err)
{
  memset(p, 0, sizeof *p);
  if (n == 0)
    return 0;
  if (n != 5 && n != 17)
    return plg_error_make(err, 0, "a prefix of %zu bytes (expected 5 or 17)", n);
  if (tr_addr_from_bytes(b, n - 1, p, err) < 0)
    return -1;
  if (b[n - 1] > (n - 1) * 8)
    return plg_error_make(err, 0, "a prefix length of %u for a %zu-byte address", b[n - 1], n - 1);
  p->len = b[n - 1];
  return 0;
}

size_t tr_addr_to_bytes(const struct tr_prefix *p, uint8_t *out)
{
  if (p->family == 0)
    return 0;
  size_t n = (size_t)addr_bytes(p->family);
  memcpy(out, p->addr, n);
  return n;
}

size_t tr_prefix_to_bytes(const struct tr_prefix *p, uint8_t *out)
{
  size_t n = tr_addr_to_bytes(p, out);
  if (n == 0)
    return 0;
  out[n] = (uint8_t)p->len;
  return n + 1;
}

bool tr_prefix_overlaps(const struct tr_prefix *a, const struct tr_prefix *b)
{
  if (a->family == 0 || a->family != b->family)
    return false;
  int bits = a->len < b->len ? a->len : b->len; /* compare on the shorter prefix */
  int full = bits / 8, rest = bits % 8;
  if (memcmp(a->addr, b->addr, (size_t)full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a->addr[full] & mask) == (b->addr[full] & mask);
}
