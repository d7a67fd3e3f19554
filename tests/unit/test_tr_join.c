/* The daemon's JoinResponse turned into Docker's Join reply: next hops per family, the legacy `via`,
 * connected routes, gateways left out, the interface, routes that would shadow the network's own pools, and
 * every malformed reply refused. The replies are built with the generated protobuf-c code, as the
 * daemon's would be on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_json.h"
#include "plg_util.h"
#include "teleroute.pb-c.h"
#include "tr_join.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A JoinResponse under construction; its bytes live in the builder. */
struct builder {
  Telepresence__Teleroute__JoinResponse r;
  ProtobufCBinaryData routes[8];
  uint8_t store[24][18];
  size_t used;
};

static void builder_init(struct builder *b, const char *src_name, const char *dst_prefix)
{
  memset(b, 0, sizeof *b);
  telepresence__teleroute__join_response__init(&b->r);
  b->r.interface_src_name = (char *)src_name;
  b->r.interface_dst_prefix = (char *)dst_prefix;
  b->r.routes = b->routes;
}

static ProtobufCBinaryData raw(struct builder *b, const uint8_t *data, size_t n)
{
  assert_true(b->used < sizeof b->store / sizeof b->store[0]);
  assert_true(n <= sizeof b->store[0]);
  uint8_t *p = b->store[b->used++];
  memcpy(p, data, n);
  return (ProtobufCBinaryData){.len = n, .data = p};
}

/* Go's netip binary form of "ADDR" (4 or 16 bytes), or of "ADDR/LEN" (one more byte). */
static ProtobufCBinaryData bytes_of(struct builder *b, const char *text)
{
  char ip[64];
  snprintf(ip, sizeof ip, "%s", text);
  char *slash = strchr(ip, '/');
  if (slash != NULL)
    *slash = '\0';
  uint8_t buf[17];
  size_t n = 0;
  if (inet_pton(AF_INET, ip, buf) == 1)
    n = 4;
  else if (inet_pton(AF_INET6, ip, buf) == 1)
    n = 16;
  else
    fail_msg("bad test address %s", text);
  if (slash != NULL)
    buf[n++] = (uint8_t)atoi(slash + 1);
  return raw(b, buf, n);
}

static void add_route(struct builder *b, const char *prefix)
{
  assert_true(b->r.n_routes < sizeof b->routes / sizeof b->routes[0]);
  b->routes[b->r.n_routes++] = bytes_of(b, prefix);
}

static void add_raw_route(struct builder *b, const uint8_t *data, size_t n)
{
  assert_true(b->r.n_routes < sizeof b->routes / sizeof b->routes[0]);
  b->routes[b->r.n_routes++] = raw(b, data, n);
}

static uint8_t *pack(const struct builder *b, size_t *len)
{
  *len = telepresence__teleroute__join_response__get_packed_size(&b->r);
  uint8_t *out = xmalloc(*len ? *len : 1);
  assert_int_equal(telepresence__teleroute__join_response__pack(&b->r, out), *len);
  return out;
}

/* The Join reply Docker would get for B on a network with POOLS (texts); *DROPPED as the routes
 * step names it (NULL when nothing was dropped). */
static json_t *reply_with_pools(const struct builder *b, const char *const *pools, size_t n_pools,
                                char **dropped)
{
  size_t len;
  cleanup_free uint8_t *bytes = pack(b, &len);
  struct tr_join j;
  plg_error_t err = NULL;
  if (tr_join_decode(bytes, len, &j, &err) < 0)
    fail_msg("the JoinResponse was refused: %s", err->msg);
  struct tr_prefix p[4];
  assert_true(n_pools <= 4);
  for (size_t i = 0; i < n_pools; i++)
    assert_int_equal(tr_prefix_parse(pools[i], &p[i], &err), 0);
  struct tr_route *routes = xcalloc(j.n_routes ? j.n_routes : 1, sizeof *routes);
  size_t n = tr_join_routes(&j, p, n_pools, routes, dropped);
  json_t *reply = tr_join_reply(&j, routes, n);
  free(routes);
  tr_join_clear(&j);
  return reply;
}

static void expect_reply(const struct builder *b, const char *want_json)
{
  char *dropped;
  cleanup_json json_t *got = reply_with_pools(b, NULL, 0, &dropped);
  assert_null(dropped);
  cleanup_json json_t *want = json_loads(want_json, 0, NULL);
  assert_non_null(want);
  if (!json_equal(got, want)) {
    cleanup_free char *g = json_dumps(got, JSON_SORT_KEYS);
    cleanup_free char *w = json_dumps(want, JSON_SORT_KEYS);
    fail_msg("reply %s, expected %s", g, w);
  }
}

/* The decode of BYTES must fail with a message that contains NEEDLE, and leave nothing behind. */
static void expect_bytes_refused(const uint8_t *bytes, size_t len, const char *needle)
{
  struct tr_join j;
  plg_error_t err = NULL;
  if (tr_join_decode(bytes, len, &j, &err) == 0) {
    tr_join_clear(&j);
    fail_msg("a JoinResponse that should fail with \"%s\" was accepted", needle);
  }
  assert_non_null(err);
  if (strstr(err->msg, needle) == NULL)
    fail_msg("error \"%s\" does not contain \"%s\"", err->msg, needle);
  plg_error_release(&err);
  assert_null(j.src_name);
  assert_null(j.routes);
  assert_int_equal(j.n_routes, 0);
}

static void expect_refused(const struct builder *b, const char *needle)
{
  size_t len;
  cleanup_free uint8_t *bytes = pack(b, &len);
  expect_bytes_refused(bytes, len, needle);
}

static void a_single_family_reply_routes_via_via_ip_v4(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "10.0.0.0/16");
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                   "{\"Destination\":\"10.0.0.0/16\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"}],"
                   "\"DisableGatewayService\":true}");
}

static void a_dual_stack_reply_routes_each_family_via_its_own_next_hop(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/108");
  add_route(&b, "10.0.0.0/16");
  add_route(&b, "fd00:10::/64");
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  b.r.via_ip_v6 = bytes_of(&b, "fd00:30::2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                   "{\"Destination\":\"fd00:96::/108\",\"RouteType\":0,\"NextHop\":\"fd00:30::2\"},"
                   "{\"Destination\":\"10.0.0.0/16\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                   "{\"Destination\":\"fd00:10::/64\",\"RouteType\":0,\"NextHop\":\"fd00:30::2\"}],"
                   "\"DisableGatewayService\":true}");
}

static void the_legacy_via_serves_routes_of_its_own_family_only(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/108");
  b.r.via = bytes_of(&b, "172.30.0.2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                   "{\"Destination\":\"fd00:96::/108\",\"RouteType\":1}],"
                   "\"DisableGatewayService\":true}");

  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/108");
  b.r.via = bytes_of(&b, "fd00:30::2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":1},"
                   "{\"Destination\":\"fd00:96::/108\",\"RouteType\":0,\"NextHop\":\"fd00:30::2\"}],"
                   "\"DisableGatewayService\":true}");
}

static void a_per_family_via_wins_over_the_legacy_via(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/108");
  b.r.via = bytes_of(&b, "172.30.0.9");
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                   "{\"Destination\":\"fd00:96::/108\",\"RouteType\":1}],"
                   "\"DisableGatewayService\":true}");
}

static void a_family_without_a_next_hop_gets_connected_routes(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/108");
  b.r.via_ip_v6 = bytes_of(&b, "fd00:30::2");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":1},"
                   "{\"Destination\":\"fd00:96::/108\",\"RouteType\":0,\"NextHop\":\"fd00:30::2\"}],"
                   "\"DisableGatewayService\":true}");

  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":[{\"Destination\":\"10.96.0.0/12\",\"RouteType\":1}],"
                   "\"DisableGatewayService\":true}");
}

/* Seen on the real engine (dockerd 20.10): a Gateway from the teleroute endpoint becomes the
 * container's default route whenever that endpoint is the container's gateway endpoint, and no one
 * answers at the network's IPAM gateway. See tests/e2e/teleroute_network.sh. */
static void gateways_are_never_given_to_docker(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  b.r.gw_ip_v4 = bytes_of(&b, "172.30.0.1/16");
  b.r.gw_ip_v6 = bytes_of(&b, "fd00:30::1/64");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":[],\"DisableGatewayService\":true}");

  builder_init(&b, "vethd1", "tpd");
  b.r.gw_ip_v6 = bytes_of(&b, "fd00:30::1/64");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":[],\"DisableGatewayService\":true}");
}

static void the_gateway_service_is_disabled_whatever_disable_gw_says(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  b.r.disable_gw = true;
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":[],\"DisableGatewayService\":true}");
  builder_init(&b, "vethd1", "tpd");
  b.r.disable_gw = false; /* what the real daemon sends */
  b.r.gw_ip_v4 = bytes_of(&b, "172.30.0.1/16");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},"
                   "\"StaticRoutes\":[],\"DisableGatewayService\":true}");
}

static void the_interface_is_named_to_docker(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "veth-0123456789", "tp.d_");
  expect_reply(&b, "{\"InterfaceName\":{\"SrcName\":\"veth-0123456789\",\"DstPrefix\":\"tp.d_\"},"
                   "\"StaticRoutes\":[],\"DisableGatewayService\":true}");
}

static void no_interface_is_named_when_the_src_name_is_empty(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "", "tpd");
  add_route(&b, "10.96.0.0/12");
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  expect_reply(&b, "{\"StaticRoutes\":["
                   "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"}],"
                   "\"DisableGatewayService\":true}");
  builder_init(&b, "", "");
  expect_reply(&b, "{\"StaticRoutes\":[],\"DisableGatewayService\":true}");
}

static void a_route_overlapping_a_pool_of_the_network_is_dropped_and_named(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "172.18.5.0/24"); /* inside the pool */
  add_route(&b, "172.0.0.0/8");   /* around the pool */
  add_route(&b, "fd00:1::/80");   /* inside the IPv6 pool */
  add_route(&b, "fd00:2::/64");
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  b.r.via_ip_v6 = bytes_of(&b, "fd00:30::2");
  const char *pools[] = {"172.18.0.0/16", "fd00:1::/64"};
  char *dropped = NULL;
  cleanup_json json_t *got = reply_with_pools(&b, pools, 2, &dropped);
  cleanup_free char *d = dropped;
  assert_non_null(d);
  assert_string_equal(d, "3 route(s): 172.18.5.0/24, 172.0.0.0/8, fd00:1::/80");
  cleanup_json json_t *want =
      json_loads("{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},\"StaticRoutes\":["
                 "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"},"
                 "{\"Destination\":\"fd00:2::/64\",\"RouteType\":0,\"NextHop\":\"fd00:30::2\"}],"
                 "\"DisableGatewayService\":true}",
                 0, NULL);
  assert_true(json_equal(got, want));
}

static void routes_of_a_family_the_network_lacks_are_left_out(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:96::/64"); /* an IPv4-only network: the container has no IPv6 there */
  b.r.via_ip_v4 = bytes_of(&b, "172.30.0.2");
  const char *pools[] = {"172.18.0.0/16"};
  char *dropped = NULL;
  cleanup_json json_t *got = reply_with_pools(&b, pools, 1, &dropped);
  assert_null(dropped); /* not an overlap: nothing to warn about */
  cleanup_json json_t *want =
      json_loads("{\"InterfaceName\":{\"SrcName\":\"vethd1\",\"DstPrefix\":\"tpd\"},\"StaticRoutes\":["
                 "{\"Destination\":\"10.96.0.0/12\",\"RouteType\":0,\"NextHop\":\"172.30.0.2\"}],"
                 "\"DisableGatewayService\":true}",
                 0, NULL);
  assert_true(json_equal(got, want));
}

static void a_route_clear_of_the_pools_is_kept_and_nothing_is_named(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_route(&b, "fd00:2::/64");
  const char *pools[] = {"172.18.0.0/16", "fd00:1::/64"};
  char *dropped = (char *)"not touched";
  cleanup_json json_t *got = reply_with_pools(&b, pools, 2, &dropped);
  assert_null(dropped);
  assert_int_equal(json_array_size(json_object_get(got, "StaticRoutes")), 2);
}

static void an_address_of_3_bytes_in_via_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  b.r.via = raw(&b, (const uint8_t[]){172, 30, 0}, 3);
  expect_refused(&b, "JoinResponse.via: an address of 3 bytes");
  builder_init(&b, "vethd1", "tpd");
  b.r.via_ip_v6 = raw(&b, (const uint8_t[5]){0xfd}, 5);
  expect_refused(&b, "JoinResponse.via_ip_v6: an address of 5 bytes");
}

static void a_route_of_4_bytes_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_route(&b, "10.96.0.0/12");
  add_raw_route(&b, (const uint8_t[]){10, 0, 0, 0}, 4);
  expect_refused(&b, "JoinResponse.routes[1]: a prefix of 4 bytes");
}

static void a_route_with_a_length_beyond_its_family_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_raw_route(&b, (const uint8_t[]){10, 0, 0, 0, 33}, 5);
  expect_refused(&b, "JoinResponse.routes[0]: a prefix length of 33");
}

static void an_empty_route_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  add_raw_route(&b, (const uint8_t[1]){0}, 0);
  expect_refused(&b, "JoinResponse.routes[0] is empty");
}

static void an_interface_name_over_15_characters_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "veth-01234567890", "tpd");
  expect_refused(&b, "invalid interface");
  builder_init(&b, "vethd1", "tpd-01234567890x");
  expect_refused(&b, "invalid interface");
}

static void an_interface_name_with_a_slash_or_a_space_is_refused(void **state)
{
  (void)state;
  const char *bad[] = {"../eth0", "a/b", "veth d", "veth\n", "v%d"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct builder b;
    builder_init(&b, bad[i], "tpd");
    expect_refused(&b, "invalid interface");
    builder_init(&b, "vethd1", bad[i]);
    expect_refused(&b, "invalid interface");
  }
}

static void an_address_of_the_wrong_family_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  b.r.via_ip_v4 = bytes_of(&b, "fd00:30::2");
  expect_refused(&b, "wrong family");
  builder_init(&b, "vethd1", "tpd");
  b.r.via_ip_v6 = bytes_of(&b, "172.30.0.2");
  expect_refused(&b, "wrong family");
  builder_init(&b, "vethd1", "tpd");
  b.r.gw_ip_v4 = bytes_of(&b, "fd00:30::1/64");
  expect_refused(&b, "wrong family");
  builder_init(&b, "vethd1", "tpd");
  b.r.gw_ip_v6 = bytes_of(&b, "172.30.0.1/16");
  expect_refused(&b, "wrong family");
}

static void a_gateway_that_is_not_a_prefix_is_refused(void **state)
{
  (void)state;
  struct builder b;
  builder_init(&b, "vethd1", "tpd");
  b.r.gw_ip_v4 = bytes_of(&b, "172.30.0.1");
  expect_refused(&b, "JoinResponse.gw_ip_v4: a prefix of 4 bytes");
}

static void undecodable_bytes_are_refused(void **state)
{
  (void)state;
  /* field 1 (a string) declaring 5 bytes of which 1 is there */
  expect_bytes_refused((const uint8_t[]){0x0a, 0x05, 'v'}, 3, "cannot be decoded");
  /* wire type 7 does not exist */
  expect_bytes_refused((const uint8_t[]){0x0f, 0x00}, 2, "cannot be decoded");
  /* field 3 (bytes) sent as a varint */
  expect_bytes_refused((const uint8_t[]){0x18, 0x01}, 2, "cannot be decoded");
}

static void an_empty_message_is_a_reply_with_nothing_in_it(void **state)
{
  (void)state;
  struct tr_join j;
  plg_error_t err = NULL;
  assert_int_equal(tr_join_decode((const uint8_t *)"", 0, &j, &err), 0);
  assert_int_equal(j.n_routes, 0);
  struct tr_route r[1];
  char *dropped;
  assert_int_equal(tr_join_routes(&j, NULL, 0, r, &dropped), 0);
  cleanup_json json_t *got = tr_join_reply(&j, r, 0);
  tr_join_clear(&j);
  cleanup_json json_t *want = json_loads("{\"StaticRoutes\":[],\"DisableGatewayService\":true}", 0, NULL);
  assert_true(json_equal(got, want));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_single_family_reply_routes_via_via_ip_v4),
      cmocka_unit_test(a_dual_stack_reply_routes_each_family_via_its_own_next_hop),
      cmocka_unit_test(the_legacy_via_serves_routes_of_its_own_family_only),
      cmocka_unit_test(a_per_family_via_wins_over_the_legacy_via),
      cmocka_unit_test(a_family_without_a_next_hop_gets_connected_routes),
      cmocka_unit_test(gateways_are_never_given_to_docker),
      cmocka_unit_test(the_gateway_service_is_disabled_whatever_disable_gw_says),
      cmocka_unit_test(the_interface_is_named_to_docker),
      cmocka_unit_test(no_interface_is_named_when_the_src_name_is_empty),
      cmocka_unit_test(a_route_overlapping_a_pool_of_the_network_is_dropped_and_named),
      cmocka_unit_test(a_route_clear_of_the_pools_is_kept_and_nothing_is_named),
      cmocka_unit_test(an_address_of_3_bytes_in_via_is_refused),
      cmocka_unit_test(a_route_of_4_bytes_is_refused),
      cmocka_unit_test(a_route_with_a_length_beyond_its_family_is_refused),
      cmocka_unit_test(an_empty_route_is_refused),
      cmocka_unit_test(an_interface_name_over_15_characters_is_refused),
      cmocka_unit_test(an_interface_name_with_a_slash_or_a_space_is_refused),
      cmocka_unit_test(an_address_of_the_wrong_family_is_refused),
      cmocka_unit_test(a_gateway_that_is_not_a_prefix_is_refused),
      cmocka_unit_test(undecodable_bytes_are_refused),
      cmocka_unit_test(an_empty_message_is_a_reply_with_nothing_in_it),
      cmocka_unit_test(routes_of_a_family_the_network_lacks_are_left_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
