/* common/plg_net: IP literals as both plugins take them, socket addresses, bounded waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_net.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void ip_literals_come_out_canonical(void **state)
{
  (void)state;
  char ip[INET6_ADDRSTRLEN];
  int family;
  assert_true(plg_net_parse_ip("172.17.0.2", ip, &family));
  assert_string_equal(ip, "172.17.0.2");
  assert_int_equal(family, AF_INET);
  assert_true(plg_net_parse_ip("[FD00:0::0002]", ip, &family));
  assert_string_equal(ip, "fd00::2");
  assert_int_equal(family, AF_INET6);
}

/* Telepresence sends the daemon's IPv4 address IPv4-mapped for IPv6-only networks
 * (pkg/client/docker/teleroute/network.go: netip.AddrFrom16). */
static void an_ipv4_mapped_address_is_its_ipv4_address(void **state)
{
  (void)state;
  char ip[INET6_ADDRSTRLEN];
  int family;
  assert_true(plg_net_parse_ip("::ffff:172.17.0.2", ip, &family));
  assert_string_equal(ip, "172.17.0.2");
  assert_int_equal(family, AF_INET);
  assert_true(plg_net_parse_ip("[::FFFF:ac11:2]", ip, &family));
  assert_string_equal(ip, "172.17.0.2");
  assert_true(plg_net_parse_ip("::172.17.0.2", ip, &family)); /* IPv4-compatible: still IPv6 */
  assert_int_equal(family, AF_INET6);
}

static void names_and_junk_are_not_ip_literals(void **state)
{
  (void)state;
  char ip[INET6_ADDRSTRLEN];
  int family;
  const char *bad[] = {"localhost",
                       "",
                       "[]",
                       "[172.17.0.2",
                       "1.2.3",
                       "999.1.1.1",
                       "fd00::1::2",
                       "[fd00::1]:22",
                       "0123456789012345678901234567890123456789012345678901234567890"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(plg_net_parse_ip(bad[i], ip, &family));
}

static void a_socket_address_carries_the_port(void **state)
{
  (void)state;
  struct sockaddr_storage sa;
  socklen_t len;
  assert_true(plg_net_sockaddr("::ffff:10.0.0.1", 4039, &sa, &len));
  assert_int_equal(sa.ss_family, AF_INET);
  assert_int_equal(len, sizeof(struct sockaddr_in));
  assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 4039);
  assert_true(plg_net_sockaddr("fd00::2", 22, &sa, &len));
  assert_int_equal(len, sizeof(struct sockaddr_in6));
  char where[64];
  plg_net_format((struct sockaddr *)&sa, where, sizeof where);
  assert_string_equal(where, "[fd00::2]:22");
  assert_false(plg_net_sockaddr("example.com", 22, &sa, &len));
}

static void a_wait_ends_at_its_deadline_or_when_ready(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(plg_net_wait(sv[0], POLLIN, plg_now_ms() + 20), 0); /* nothing to read */
  assert_int_equal(write(sv[1], "x", 1), 1);
  assert_int_equal(plg_net_wait(sv[0], POLLIN, plg_now_ms() + 60000), 1);
  assert_int_equal(plg_net_wait(sv[0], POLLIN, plg_now_ms() - 1), 1); /* past deadline: just look */
  close(sv[0]);
  close(sv[1]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ip_literals_come_out_canonical),
      cmocka_unit_test(an_ipv4_mapped_address_is_its_ipv4_address),
      cmocka_unit_test(names_and_junk_are_not_ip_literals),
      cmocka_unit_test(a_socket_address_carries_the_port),
      cmocka_unit_test(a_wait_ends_at_its_deadline_or_when_ready),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
