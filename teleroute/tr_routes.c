#include "tr_routes.h"

#include "plg_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int cmp_int(int a, int b)
{
  return a < b ? -1 : a > b;
}

int tr_route_cmp(const struct tr_route *a, const struct tr_route *b)
{
  int c = cmp_int(a->dst.family, b->dst.family);
  if (c == 0)
    c = memcmp(a->dst.addr, b->dst.addr, sizeof a->dst.addr);
  if (c == 0)
    c = cmp_int(a->dst.len, b->dst.len);
  if (c == 0)
    c = cmp_int(a->via.family, b->via.family);
  if (c == 0)
    c = memcmp(a->via.addr, b->via.addr, sizeof a->via.addr);
  return c;
}

/* qsort over pointers; equal routes stay in the order of their addresses, so the first of a
 * repeated route comes first */
static int cmp_ptr(const void *x, const void *y)
{
  const struct tr_route *a = *(const struct tr_route *const *)x, *b = *(const struct tr_route *const *)y;
  int c = tr_route_cmp(a, b);
  return c != 0 ? c : (a > b) - (a < b);
}

static const struct tr_route **sorted(const struct tr_route *r, size_t n)
{
  const struct tr_route **p = xcalloc(n ? n : 1, sizeof *p);
  for (size_t i = 0; i < n; i++)
    p[i] = &r[i];
  qsort(p, n, sizeof *p, cmp_ptr);
  return p;
}

size_t tr_routes_unique(struct tr_route *r, size_t n)
{
  cleanup_free const struct tr_route **p = sorted(r, n);
  cleanup_free bool *repeat = xcalloc(n ? n : 1, sizeof *repeat);
  for (size_t i = 1; i < n; i++)
    if (tr_route_cmp(p[i - 1], p[i]) == 0)
      repeat[p[i] - r] = true;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++)
    if (!repeat[i])
      r[kept++] = r[i];
  return kept;
}

/* Steps over a sorted list, one distinct route at a time. */
static size_t next_distinct(const struct tr_route **p, size_t n, size_t i)
{
  size_t k = i + 1;
  while (k < n && tr_route_cmp(p[i], p[k]) == 0)
    k++;
  return k;
}

bool tr_routes_same(const struct tr_route *a, size_t na, const struct tr_route *b, size_t nb)
{
  cleanup_free const struct tr_route **pa = sorted(a, na);
  cleanup_free const struct tr_route **pb = sorted(b, nb);
  size_t i = 0, k = 0;
  while (i < na && k < nb) {
    if (tr_route_cmp(pa[i], pb[k]) != 0)
      return false;
    i = next_distinct(pa, na, i);
    k = next_distinct(pb, nb, k);
  }
  return i == na && k == nb;
}

static void plan_one(const struct tr_route *r, bool add, int if4, int if6, struct tr_route_change *out,
                     size_t *n, size_t *skipped)
{
  int ifindex = r->dst.family == AF_INET ? if4 : if6;
  if (ifindex <= 0) {
    (*skipped)++;
    return;
  }
  out[(*n)++] = (struct tr_route_change){r, add, ifindex};
}

size_t tr_routes_plan(const struct tr_route *old, size_t n_old, const struct tr_route *new_routes,
                      size_t n_new, int if4, int if6, struct tr_route_change **changes, size_t *skipped)
{
  cleanup_free const struct tr_route **po = sorted(old, n_old);
  cleanup_free const struct tr_route **pn = sorted(new_routes, n_new);
  struct tr_route_change *out = xcalloc(n_old + n_new + 1, sizeof *out);
  size_t n = 0, i = 0, k = 0;
  *skipped = 0;
  /* a merge of the two sorted lists: deletes are planned first, adds are gathered after */
  cleanup_free const struct tr_route **adds = xcalloc(n_new + 1, sizeof *adds);
  size_t n_adds = 0;
  while (i < n_old || k < n_new) {
    int c = i == n_old ? 1 : k == n_new ? -1 : tr_route_cmp(po[i], pn[k]);
    if (c < 0)
      plan_one(po[i], false, if4, if6, out, &n, skipped);
    else if (c > 0)
      adds[n_adds++] = pn[k];
    if (c <= 0)
      i = next_distinct(po, n_old, i);
    if (c >= 0)
      k = next_distinct(pn, n_new, k);
  }
  for (size_t a = 0; a < n_adds; a++)
    plan_one(adds[a], true, if4, if6, out, &n, skipped);
  *changes = out;
  return n;
}

static void describe_one(const struct tr_route *r, char *buf, size_t size)
{
  char dst[64], via[64];
  tr_prefix_format(&r->dst, false, dst, sizeof dst);
  if (r->via.family == 0) {
    snprintf(buf, size, "%s", dst);
    return;
  }
  tr_prefix_format(&r->via, true, via, sizeof via);
  snprintf(buf, size, "%s via %s", dst, via);
}

char *tr_routes_describe(const struct tr_route *r, size_t n, size_t shown)
{
  /* each route takes at most 2 x 64 bytes of text and a separator */
  size_t size = 96 + (shown < n ? shown : n) * 140;
  char *out = xmalloc(size);
  size_t used = (size_t)snprintf(out, size, "%zu route(s)", n);
  for (size_t i = 0; i < n && i < shown; i++) {
    char one[136];
    describe_one(&r[i], one, sizeof one);
    used += (size_t)snprintf(out + used, size - used, "%s%s", i == 0 ? ": " : ", ", one);
  }
  if (n > shown)
    snprintf(out + used, size - used, " and %zu more", n - shown);
  return out;
}
