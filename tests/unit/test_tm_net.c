/* Reaching an SFTP export before sshfs does: name lookups and the SFTP greeting, each bounded by a
 * deadline whatever the other side does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "tm_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#define SILENT_DNS "127.0.0.211"

static atomic_int queries;
static int dns_fd = -1;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
#define MAX_QUERIES 8
static unsigned char last_query[MAX_QUERIES][512];
static ssize_t last_len[MAX_QUERIES];
static struct sockaddr_in last_from[MAX_QUERIES];
static int n_kept;

/* A DNS server that reads queries and answers none of them (until told to). */
static void *silent_dns(void *arg)
{
  (void)arg;
  unsigned char buf[512];
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  ssize_t n;
  while ((n = recvfrom(dns_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) > 0) {
    pthread_mutex_lock(&last_lock);
    if (n_kept < MAX_QUERIES) { /* glibc asks for A and AAAA at once */
      memcpy(last_query[n_kept], buf, (size_t)n);
      last_len[n_kept] = n;
      last_from[n_kept++] = from;
    }
    pthread_mutex_unlock(&last_lock);
    atomic_fetch_add(&queries, 1);
    fl = sizeof from;
  }
  return NULL;
}

static int thread_count(void)
{
  FILE *fp = fopen("/proc/self/status", "r");
  char line[128];
  int n = -1;
  while (fp != NULL && fgets(line, sizeof line, fp) != NULL)
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  if (fp != NULL)
    fclose(fp);
  return n;
}

/* Ends the abandoned lookup (NXDOMAIN to each of its queries) and waits for glibc's lookup threads to
 * go, so that nothing is left running when the process exits (valgrind counts it otherwise). */
static int answer_at_last(void **state)
{
  (void)state;
  if (dns_fd < 0)
    return 0;
  int before = *(int *)*state;
  pthread_mutex_lock(&last_lock);
  for (int i = 0; i < n_kept; i++) {
    unsigned char *q = last_query[i];
    if (last_len[i] < 12)
      continue;
    q[2] |= 0x80;                              /* a response */
    q[3] = (unsigned char)((q[3] & 0xf0) | 3); /* NXDOMAIN */
    sendto(dns_fd, q, (size_t)last_len[i], 0, (struct sockaddr *)&last_from[i], sizeof last_from[i]);
  }
  pthread_mutex_unlock(&last_lock);
  for (int i = 0; i < 500 && thread_count() > before; i++)
    usleep(10000); /* the lookup's detached thread ends after its answer: no event tells when */
  return 0;
}

/* In a mount namespace of this process alone, /etc/resolv.conf names the silent server, with a
 * resolver that waits 5 x 30 s before it gives up: longer than ctest lets this test run, so a
 * caller that waited for the lookup to end (as an unbounded gai_suspend did) fails the test.
 * Needs root (CI runs the unit tests as root). */
static int silent_resolver(void **state)
{
  (void)state;
  if (geteuid() != 0 || getenv("PLG_TEST_EMULATOR") != NULL)
    return 0;
  if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
    return 0;
  char conf[] = "/tmp/plg-test-resolv-XXXXXX";
  int fd = mkstemp(conf);
  const char text[] = "nameserver " SILENT_DNS "\noptions timeout:30 attempts:5\n";
  if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
    return -1;
  close(fd);
  if (mount(conf, "/etc/resolv.conf", "none", MS_BIND, NULL) < 0)
    return 0;
  unlink(conf);
  dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
  inet_pton(AF_INET, SILENT_DNS, &sa.sin_addr);
  if (bind(dns_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    return -1;
  pthread_t t;
  pthread_create(&t, NULL, silent_dns, NULL);
  pthread_detach(t);
  return 0;
}

static void a_lookup_that_never_ends_does_not_hold_the_caller(void **state)
{
  if (dns_fd < 0)
    skip(); /* not root, or emulated: no private /etc/resolv.conf */
  static int threads_before;
  threads_before = thread_count();
  *state = &threads_before;
  struct tm_addr addr;
  plg_error_t err = NULL;
  assert_int_equal(tm_net_resolve("never-answers.teleplug.test", 22, 300, -1, &addr, &err), -1);
  assert_non_null(strstr(err->msg, "no answer within 300 ms"));
  plg_error_release(&err);
  /* the query reached the server, which has not answered: the lookup still runs (the resolver
   * gives up after 150 s), and the caller did not wait for it */
  assert_true(atomic_load(&queries) > 0);
}

static void literals_are_not_looked_up(void **state)
{
  (void)state;
  struct tm_addr addr;
  plg_error_t err = NULL;
  assert_int_equal(tm_net_resolve("fd00::1", 34439, 100, -1, &addr, &err), 0);
  assert_int_equal(addr.family, AF_INET6);
  assert_string_equal(addr.text, "fd00::1");
  assert_int_equal(tm_net_resolve("172.17.0.2", 34439, 100, -1, &addr, &err), 0);
  assert_int_equal(addr.family, AF_INET);
  assert_int_equal(ntohs(((struct sockaddr_in *)&addr.sa)->sin_port), 34439);
}

/* The SFTP greeting over a socketpair: what the peer sends decides the outcome. */
static char *hello_against(const unsigned char *reply, size_t len, bool close_after)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  if (len > 0)
    assert_int_equal(write(sv[1], reply, len), (ssize_t)len);
  if (close_after)
    close(sv[1]);
  plg_error_t err = NULL;
  int rc = tm_net_sftp_hello(sv[0], 200, -1, &err);
  char *msg = rc == 0 ? NULL : xstrdup(err->msg);
  plg_error_release(&err);
  unsigned char init[9];
  if (!close_after) {
    assert_int_equal(read(sv[1], init, sizeof init), 9); /* the client spoke SSH_FXP_INIT, version 3 */
    assert_int_equal(init[4], 1);
    assert_int_equal(init[8], 3);
    close(sv[1]);
  }
  close(sv[0]);
  return msg;
}

static void the_sftp_greeting_tells_a_server_from_a_stranger(void **state)
{
  (void)state;
  static const unsigned char version[9] = {0, 0, 0, 5, 2, 0, 0, 0, 3};
  assert_null(hello_against(version, sizeof version, false));
  static const unsigned char http[9] = {'H', 'T', 'T', 'P', '/', '1', '.', '1', ' '};
  char *m = hello_against(http, sizeof http, false);
  assert_non_null(strstr(m, "did not answer as an SFTP server"));
  free(m);
  m = hello_against(NULL, 0, false); /* accepts and stays silent */
  assert_non_null(strstr(m, "did not answer within 200 ms"));
  free(m);
  m = hello_against(NULL, 0, true); /* hangs up */
  assert_non_null(strstr(m, "SFTP"));
  free(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(a_lookup_that_never_ends_does_not_hold_the_caller, answer_at_last),
      cmocka_unit_test(literals_are_not_looked_up),
      cmocka_unit_test(the_sftp_greeting_tells_a_server_from_a_stranger),
  };
  return cmocka_run_group_tests(tests, silent_resolver, NULL);
}
