/* Route sets against a daemon that sends many routes (issue 13: 60,000 routes made a Join take
 * 3.4 s, and the refresher repeated it every round with a 1 MB log line): the cap per Join, routes
 * given once, comparisons that ignore order and repeats, a refresh plan that never deletes a route
 * without its interface, and log lines of bounded length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "teleroute.pb-c.h"
#include "tr_join.h"
#include "tr_routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct tr_route route(const char *dst, const char *via)
{
  struct tr_route r;
  memset(&r, 0, sizeof r);
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_parse(dst, &r.dst, &err), 0);
  if (via != NULL)
    assert_int_equal(tr_prefix_parse(via, &r.via, &err), 0);
  return r;
}

/* N distinct IPv4 /24 routes from 10.0.0.0/24 on, with the next hop VIA (NULL: connected) */
static struct tr_route *many(size_t n, size_t first, const char *via)
{
  struct tr_route *r = xcalloc(n ? n : 1, sizeof *r);
  for (size_t i = 0; i < n; i++) {
    char text[32];
    size_t k = first + i;
    snprintf(text, sizeof text, "10.%zu.%zu.0/24", (k >> 8) & 0xff, k & 0xff);
    r[i] = route(text, via);
  }
  return r;
}

/* A JoinResponse with N IPv4 routes (/24s from 10.0.0.0 on, REPEAT times each), packed. */
static uint8_t *join_bytes(size_t n, size_t repeat, size_t *len)
{
  Telepresence__Teleroute__JoinResponse r = TELEPRESENCE__TELEROUTE__JOIN_RESPONSE__INIT;
  r.interface_src_name = (char *)"vethd1";
  r.interface_dst_prefix = (char *)"tpd";
  uint8_t via[4] = {172, 30, 0, 2};
  r.via_ip_v4 = (ProtobufCBinaryData){4, via};
  cleanup_free uint8_t(*store)[5] = xcalloc(n ? n : 1, sizeof *store);
  cleanup_free ProtobufCBinaryData *routes = xcalloc(n * repeat + 1, sizeof *routes);
  for (size_t i = 0; i < n; i++) {
    uint8_t b[5] = {10, (uint8_t)(i >> 8), (uint8_t)i, 0, 24};
    memcpy(store[i], b, sizeof b);
    for (size_t k = 0; k < repeat; k++)
      routes[i * repeat + k] = (ProtobufCBinaryData){5, store[i]};
  }
  r.n_routes = n * repeat;
  r.routes = routes;
  *len = telepresence__teleroute__join_response__get_packed_size(&r);
  uint8_t *out = xmalloc(*len);
  telepresence__teleroute__join_response__pack(&r, out);
  return out;
}

static void a_join_reply_over_the_route_cap_is_refused_with_the_count_and_the_cap(void **state)
{
  (void)state;
  size_t len;
  cleanup_free uint8_t *bytes = join_bytes(TR_MAX_ROUTES + 1, 1, &len);
  struct tr_join j;
  plg_error_t err = NULL;
  if (tr_join_decode(bytes, len, &j, &err) == 0) {
    tr_join_clear(&j);
    fail_msg("a Join reply with %d routes was accepted", TR_MAX_ROUTES + 1);
  }
  char want[128];
  snprintf(want, sizeof want, "has %d routes; teleroute takes at most %d", TR_MAX_ROUTES + 1, TR_MAX_ROUTES);
  if (strstr(err->msg, want) == NULL)
    fail_msg("the error does not name the count and the cap (%s): %s", want, err->msg);
  plg_error_release(&err);
  assert_null(j.routes);
}

static void a_join_reply_at_the_route_cap_is_taken_whole(void **state)
{
  (void)state;
  size_t len;
  cleanup_free uint8_t *bytes = join_bytes(TR_MAX_ROUTES, 1, &len);
  struct tr_join j;
  plg_error_t err = NULL;
  assert_int_equal(tr_join_decode(bytes, len, &j, &err), 0);
  cleanup_free struct tr_route *out = xcalloc(j.n_routes, sizeof *out);
  char *dropped;
  assert_int_equal(tr_join_routes(&j, NULL, 0, out, &dropped), TR_MAX_ROUTES);
  assert_null(dropped);
  tr_join_clear(&j);
}

/* Docker fails a Join whose routes repeat ("failed to add static route ...: file exists") */
static void routes_the_daemon_repeats_are_given_to_docker_once_in_its_order(void **state)
{
  (void)state;
  size_t len;
  cleanup_free uint8_t *bytes = join_bytes(3, 2, &len);
  struct tr_join j;
  plg_error_t err = NULL;
  assert_int_equal(tr_join_decode(bytes, len, &j, &err), 0);
  assert_int_equal(j.n_routes, 6);
  struct tr_route out[6];
  char *dropped;
  size_t n = tr_join_routes(&j, NULL, 0, out, &dropped);
  tr_join_clear(&j);
  assert_int_equal(n, 3);
  cleanup_free struct tr_route *want = many(3, 0, "172.30.0.2");
  for (size_t i = 0; i < n; i++)
    assert_int_equal(tr_route_cmp(&out[i], &want[i]), 0);
}

static void the_line_about_dropped_routes_names_the_count_and_the_first_few(void **state)
{
  (void)state;
  size_t len;
  cleanup_free uint8_t *bytes = join_bytes(TR_MAX_ROUTES, 1, &len);
  struct tr_join j;
  plg_error_t err = NULL;
  assert_int_equal(tr_join_decode(bytes, len, &j, &err), 0);
  struct tr_prefix pool;
  assert_int_equal(tr_prefix_parse("10.0.0.0/8", &pool, &err), 0); /* every route overlaps it */
  cleanup_free struct tr_route *out = xcalloc(j.n_routes, sizeof *out);
  char *dropped = NULL;
  assert_int_equal(tr_join_routes(&j, &pool, 1, out, &dropped), 0);
  tr_join_clear(&j);
  cleanup_free char *d = dropped;
  char want[128];
  snprintf(want, sizeof want, "%d route(s): 10.0.0.0/24, 10.0.1.0/24, 10.0.2.0/24 and %d more", TR_MAX_ROUTES,
           TR_MAX_ROUTES - 3);
  assert_string_equal(d, want);
}

static void route_sets_compare_equal_in_any_order_and_with_repeats(void **state)
{
  (void)state;
  struct tr_route a[] = {route("10.1.0.0/16", NULL), route("10.2.0.0/16", "172.30.0.2"),
                         route("fd00::/64", NULL)};
  struct tr_route b[] = {route("fd00::/64", NULL), route("10.1.0.0/16", NULL),
                         route("10.2.0.0/16", "172.30.0.2"), route("10.1.0.0/16", NULL)};
  assert_true(tr_routes_same(a, 3, b, 4));
  assert_true(tr_routes_same(b, 4, a, 3));
  assert_true(tr_routes_same(a, 0, b, 0));
}

static void route_sets_differ_when_one_route_does_even_with_the_same_count(void **state)
{
  (void)state;
  /* {x, x} and {x, y}: a pairwise "every route of A is in B" check with equal counts said same */
  struct tr_route a[] = {route("10.1.0.0/16", NULL), route("10.1.0.0/16", NULL)};
  struct tr_route b[] = {route("10.1.0.0/16", NULL), route("10.2.0.0/16", NULL)};
  assert_false(tr_routes_same(a, 2, b, 2));
  assert_false(tr_routes_same(b, 2, a, 2));
  struct tr_route via[] = {route("10.1.0.0/16", "172.30.0.2")};
  assert_false(tr_routes_same(a, 1, via, 1)); /* the next hop counts */
  struct tr_route len[] = {route("10.1.0.0/24", NULL)};
  assert_false(tr_routes_same(a, 1, len, 1)); /* and the length */
  assert_false(tr_routes_same(a, 1, b, 0));
}

static void a_refresh_deletes_what_the_daemon_withdrew_and_adds_what_it_announced(void **state)
{
  (void)state;
  struct tr_route old[] = {route("10.1.0.0/16", "172.30.0.2"), route("10.2.0.0/16", "172.30.0.2"),
                           route("fd00:1::/64", "fd00:30::2")};
  struct tr_route new_routes[] = {route("10.3.0.0/16", "172.30.0.2"), route("10.1.0.0/16", "172.30.0.2"),
                                  route("fd00:1::/64", "fd00:30::2"), route("fd00:2::/64", "fd00:30::2")};
  struct tr_route_change *plan;
  size_t skipped;
  size_t n = tr_routes_plan(old, 3, new_routes, 4, 7, 9, &plan, &skipped);
  assert_int_equal(n, 3);
  assert_int_equal(skipped, 0);
  assert_false(plan[0].add); /* deletes first */
  assert_ptr_equal(plan[0].route, &old[1]);
  assert_int_equal(plan[0].ifindex, 7);
  assert_true(plan[1].add);
  assert_ptr_equal(plan[1].route, &new_routes[0]);
  assert_int_equal(plan[1].ifindex, 7);
  assert_true(plan[2].add);
  assert_ptr_equal(plan[2].route, &new_routes[3]);
  assert_int_equal(plan[2].ifindex, 9);
  free(plan);
}

/* Without an interface (the endpoint's address is on none, ifindex 0), a delete would match the
 * destination on any interface of the container, one that is not ours included. */
static void a_route_is_never_deleted_or_added_without_the_interface_of_its_family(void **state)
{
  (void)state;
  struct tr_route old[] = {route("10.1.0.0/16", "172.30.0.2"), route("fd00:1::/64", "fd00:30::2")};
  struct tr_route new_routes[] = {route("10.2.0.0/16", "172.30.0.2"), route("fd00:2::/64", "fd00:30::2")};
  struct tr_route_change *plan;
  size_t skipped;
  size_t n = tr_routes_plan(old, 2, new_routes, 2, 0, 5, &plan, &skipped);
  assert_int_equal(skipped, 2); /* the IPv4 delete and the IPv4 add */
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(plan[i].route->dst.family, AF_INET6);
    assert_int_equal(plan[i].ifindex, 5);
  }
  free(plan);
  n = tr_routes_plan(old, 2, new_routes, 2, 0, 0, &plan, &skipped);
  assert_int_equal(n, 0);
  assert_int_equal(skipped, 4);
  free(plan);
}

static void a_refresh_plan_over_thousands_of_routes_touches_only_the_difference(void **state)
{
  (void)state;
  /* old: routes 0..N-1, new: routes 100..N+99 in reverse order, each twice */
  cleanup_free struct tr_route *old = many(TR_MAX_ROUTES, 0, "172.30.0.2");
  cleanup_free struct tr_route *fwd = many(TR_MAX_ROUTES, 100, "172.30.0.2");
  cleanup_free struct tr_route *new_routes = xcalloc(2 * TR_MAX_ROUTES, sizeof *new_routes);
  for (size_t i = 0; i < TR_MAX_ROUTES; i++)
    new_routes[2 * i] = new_routes[2 * i + 1] = fwd[TR_MAX_ROUTES - 1 - i];
  struct tr_route_change *plan;
  size_t skipped, adds = 0;
  size_t n = tr_routes_plan(old, TR_MAX_ROUTES, new_routes, 2 * TR_MAX_ROUTES, 3, 4, &plan, &skipped);
  assert_int_equal(n, 200);
  for (size_t i = 0; i < n; i++)
    adds += plan[i].add;
  assert_int_equal(adds, 100);
  free(plan);
  assert_false(tr_routes_same(old, TR_MAX_ROUTES, new_routes, 2 * TR_MAX_ROUTES));
  assert_true(tr_routes_same(fwd, TR_MAX_ROUTES, new_routes, 2 * TR_MAX_ROUTES));
}

static void a_description_names_next_hops_and_stays_short(void **state)
{
  (void)state;
  struct tr_route r[] = {route("10.1.0.0/16", NULL), route("fd00:1::/64", "fd00:30::2")};
  cleanup_free char *two = tr_routes_describe(r, 2, 3);
  assert_string_equal(two, "2 route(s): 10.1.0.0/16, fd00:1::/64 via fd00:30::2");
  cleanup_free char *none = tr_routes_describe(r, 0, 3);
  assert_string_equal(none, "0 route(s)");
  cleanup_free struct tr_route *lots = many(TR_MAX_ROUTES, 0, NULL);
  cleanup_free char *text = tr_routes_describe(lots, TR_MAX_ROUTES, TR_ROUTES_SHOWN);
  assert_true(strlen(text) < 200);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_join_reply_over_the_route_cap_is_refused_with_the_count_and_the_cap),
      cmocka_unit_test(a_join_reply_at_the_route_cap_is_taken_whole),
      cmocka_unit_test(routes_the_daemon_repeats_are_given_to_docker_once_in_its_order),
      cmocka_unit_test(the_line_about_dropped_routes_names_the_count_and_the_first_few),
      cmocka_unit_test(route_sets_compare_equal_in_any_order_and_with_repeats),
      cmocka_unit_test(route_sets_differ_when_one_route_does_even_with_the_same_count),
      cmocka_unit_test(a_refresh_deletes_what_the_daemon_withdrew_and_adds_what_it_announced),
      cmocka_unit_test(a_route_is_never_deleted_or_added_without_the_interface_of_its_family),
      cmocka_unit_test(a_refresh_plan_over_thousands_of_routes_touches_only_the_difference),
      cmocka_unit_test(a_description_names_next_hops_and_stays_short),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
