/* A wait on a socket (plg_net_wait_cancellable) and a connect (plg_net_connect_cancellable) that a
 * descriptor ends at once: what lets teleroute's stop end a connect in progress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_net.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static int set_eventfd(void)
{
  int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  uint64_t one = 1;
  assert_int_equal(write(ev, &one, sizeof one), sizeof one);
  return ev;
}

/* The deadline is a minute away: only the cancel descriptor can end these waits with ECANCELED. */
static void a_cancel_descriptor_ends_the_wait_at_once_and_stays_set(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int ev = set_eventfd();
  for (int i = 0; i < 2; i++) {
    errno = 0;
    assert_int_equal(plg_net_wait_cancellable(sv[0], POLLIN, plg_now_ms() + 60000, ev), -1);
    assert_int_equal(errno, ECANCELED);
  }
  close(ev);
  close(sv[0]);
  close(sv[1]);
}

static void without_a_cancel_it_is_the_wait_of_plg_net_wait(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* never written */
  assert_int_equal(plg_net_wait_cancellable(sv[0], POLLIN, plg_now_ms() + 20, ev), 0);
  assert_int_equal(plg_net_wait_cancellable(sv[0], POLLIN, plg_now_ms() + 20, -1), 0);
  assert_int_equal(write(sv[1], "x", 1), 1);
  assert_int_equal(plg_net_wait_cancellable(sv[0], POLLIN, plg_now_ms() + 60000, ev), 1);
  close(ev);
  close(sv[0]);
  close(sv[1]);
}

/* TEST-NET-1 (192.0.2.0/24) is never routed: the connect is in progress until its deadline, a
 * minute away, unless the cancel ends it; where the kernel refuses at once (no route), the error
 * is that instead, and no wait happened. */
static void a_cancel_descriptor_ends_a_connect_in_progress(void **state)
{
  (void)state;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
  inet_pton(AF_INET, "192.0.2.1", &sa.sin_addr);
  int ev = set_eventfd();
  plg_error_t err = NULL;
  assert_int_equal(
      plg_net_connect_cancellable((struct sockaddr *)&sa, sizeof sa, 60000, true, ev, "192.0.2.1:9", &err),
      -1);
  if (err->errno_ != ENETUNREACH && err->errno_ != EHOSTUNREACH) {
    assert_int_equal(err->errno_, ECANCELED);
    assert_non_null(strstr(err->msg, "gave up connecting to 192.0.2.1:9"));
  }
  plg_error_release(&err);
  close(ev);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_cancel_descriptor_ends_the_wait_at_once_and_stays_set),
      cmocka_unit_test(without_a_cancel_it_is_the_wait_of_plg_net_wait),
      cmocka_unit_test(a_cancel_descriptor_ends_a_connect_in_progress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
