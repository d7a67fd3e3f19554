/* The shared helpers for addresses from text (plg_addr.h) and for a wait on a socket that has a
 * deadline and can be cancelled (plg_poll.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_addr.h"
#include "plg_poll.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static void ports_are_decimal_numbers_from_1_to_65535(void **state)
{
  (void)state;
  const char *good[] = {"1", "4039", "65535", "004039"};
  const int want[] = {1, 4039, 65535, 4039};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int port = 0;
    plg_error_t err = NULL;
    assert_int_equal(plg_addr_parse_port("port", good[i], &port, &err), 0);
    assert_int_equal(port, want[i]);
  }
  const char *bad[] = {"0", "65536", "70000", "-1", "+80", "", "80a", " 80", "0x50", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int port = 7;
    plg_error_t err = NULL;
    if (plg_addr_parse_port("port", bad[i], &port, &err) == 0)
      fail_msg("port \"%s\" was accepted", bad[i]);
    assert_int_equal(err->status, 400);
    char want_msg[96];
    snprintf(want_msg, sizeof want_msg, "option \"port\": \"%s\" is not a port number (1-65535)", bad[i]);
    assert_string_equal(err->msg, want_msg);
    assert_int_equal(port, 7);
    plg_error_release(&err);
  }
}

static void numeric_addresses_of_both_families_become_socket_addresses(void **state)
{
  (void)state;
  struct sockaddr_storage sa;
  socklen_t len;
  assert_true(plg_addr_sockaddr("172.17.0.2", 4039, &sa, &len));
  const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
  assert_int_equal(s4->sin_family, AF_INET);
  assert_int_equal(ntohs(s4->sin_port), 4039);
  assert_int_equal(s4->sin_addr.s_addr, inet_addr("172.17.0.2"));
  assert_int_equal(len, sizeof *s4);
  assert_true(plg_addr_sockaddr("fd00::2", 1, &sa, &len));
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;
  assert_int_equal(s6->sin6_family, AF_INET6);
  assert_int_equal(ntohs(s6->sin6_port), 1);
  assert_int_equal(len, sizeof *s6);
  assert_false(plg_addr_sockaddr("localhost", 1, &sa, &len));
  assert_false(plg_addr_sockaddr("[fd00::2]", 1, &sa, &len));
  assert_false(plg_addr_sockaddr("", 1, &sa, &len));
}

static void a_wait_ends_at_its_deadline_with_zero(void **state)
{
  (void)state;
  int sp[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  assert_int_equal(plg_poll_wait(sp[0], POLLIN, plg_now_ms() + 20, -1), 0);
  assert_int_equal(plg_poll_wait(sp[0], POLLIN, plg_now_ms() - 1000, -1), 0); /* already passed */
  close(sp[0]);
  close(sp[1]);
}

static void a_ready_socket_ends_the_wait_with_its_events(void **state)
{
  (void)state;
  int sp[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  assert_int_equal(write(sp[1], "x", 1), 1);
  int ev = eventfd(0, EFD_CLOEXEC);
  assert_int_equal(plg_poll_wait(sp[0], POLLIN, plg_now_ms() + 60000, ev) & POLLIN, POLLIN);
  close(sp[1]);
  assert_true(plg_poll_wait(sp[0], POLLOUT, plg_now_ms() + 60000, ev) & (POLLHUP | POLLERR | POLLOUT));
  close(sp[0]);
  close(ev);
}

/* The deadline is a minute away: only the cancel descriptor can end this wait with ECANCELED */
static void a_cancel_descriptor_ends_the_wait_at_once_and_stays_set(void **state)
{
  (void)state;
  int sp[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  uint64_t one = 1;
  assert_int_equal(write(ev, &one, sizeof one), sizeof one);
  for (int i = 0; i < 2; i++) {
    errno = 0;
    assert_int_equal(plg_poll_wait(sp[0], POLLIN, plg_now_ms() + 60000, ev), -1);
    assert_int_equal(errno, ECANCELED);
  }
  close(ev);
  close(sp[0]);
  close(sp[1]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ports_are_decimal_numbers_from_1_to_65535),
      cmocka_unit_test(numeric_addresses_of_both_families_become_socket_addresses),
      cmocka_unit_test(a_wait_ends_at_its_deadline_with_zero),
      cmocka_unit_test(a_ready_socket_ends_the_wait_with_its_events),
      cmocka_unit_test(a_cancel_descriptor_ends_the_wait_at_once_and_stays_set),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
