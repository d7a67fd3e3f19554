/* Addresses and prefixes in the two forms teleroute translates between: Docker's text
 * ("172.18.0.2/16") and the daemon's bytes (Go's netip binary form: 4 or 16 address bytes, a
 * prefix adds one byte of length). */
#ifndef TR_ADDR_H
#define TR_ADDR_H

#include "plg_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tr_prefix {
  int family; /* AF_INET or AF_INET6; 0 = none */
  uint8_t addr[16];
  int len; /* prefix length; 32/128 for a bare address */
};

/* "a.b.c.d[/n]" or "x::y[/n]"; a missing length means a host (32 or 128). */
int tr_prefix_parse(const char *text, struct tr_prefix *p, plg_error_t *err);
/* "a.b.c.d/n"; with HOST_ONLY "a.b.c.d" (no length). BUF needs 64 bytes. */
void tr_prefix_format(const struct tr_prefix *p, bool host_only, char *buf, size_t size);

/* Bytes of an address (4/16) or of a prefix (5/17); an empty value gives family 0. */
int tr_addr_from_bytes(const uint8_t *b, size_t n, struct tr_prefix *p, plg_error_t *err);
int tr_prefix_from_bytes(const uint8_t *b, size_t n, struct tr_prefix *p, plg_error_t *err);
/* The forms sent to the daemon; OUT needs 17 bytes; returns the length written (0 for none). */
size_t tr_addr_to_bytes(const struct tr_prefix *p, uint8_t *out);
size_t tr_prefix_to_bytes(const struct tr_prefix *p, uint8_t *out);

/* True when the two prefixes share any address. */
bool tr_prefix_overlaps(const struct tr_prefix *a, const struct tr_prefix *b);

#endif
