/* The protocol server over a real Unix socket: concurrency, keep-alive, limits, idle clients,
 * the stop. (How the socket file is made: test_socket.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_json.h"
#include "plg_log.h"
#include "plg_server.h"
#include "plg_socket.h"
#include "plg_util.h"
#include "test_http.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server_fixture.h"

static void activate_answers_what_the_plugin_implements(void **state)
{
  struct fixture *f = *state;
  struct test_reply r;
  assert_int_equal(test_http_post(f->socket_path, "/Plugin.Activate", "", &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"Implements\":[\"TestDriver\"]"));
  test_reply_free(&r);
}

struct client_arg {
  const char *socket_path;
  const char *path;
  int status;
};

static void *client(void *p)
{
  struct client_arg *a = p;
  struct test_reply r;
  a->status = test_http_post(a->socket_path, a->path, "{}", &r) == 0 ? r.status : -1;
  test_reply_free(&r);
  return NULL;
}

static void requests_are_served_concurrently(void **state)
{
  struct fixture *f = *state;
  meet_count = 0;
  pthread_t threads[N_CONCURRENT];
  struct client_arg args[N_CONCURRENT];
  for (int i = 0; i < N_CONCURRENT; i++) {
    args[i] = (struct client_arg){f->socket_path, "/Test.Meet", 0};
    pthread_create(&threads[i], NULL, client, &args[i]);
  }
  for (int i = 0; i < N_CONCURRENT; i++) {
    pthread_join(threads[i], NULL);
    assert_int_equal(args[i].status, 200);
  }
}

static void a_kept_alive_connection_serves_several_requests(void **state)
{
  struct fixture *f = *state;
  int fd = test_http_connect(f->socket_path);
  assert_true(fd >= 0);
  for (int i = 0; i < 3; i++) {
    struct test_reply r;
    char body[32];
    snprintf(body, sizeof body, "{\"N\":%d}\n", i);
    assert_int_equal(test_http_exchange(fd, "POST", "/Test.Echo", body, strlen(body), -1, &r), 0);
    assert_int_equal(r.status, 200);
    char want[32];
    snprintf(want, sizeof want, "{\"N\":%d}", i);
    assert_non_null(strstr(r.body, want));
    test_reply_free(&r);
  }
  close(fd);
}

static void a_declared_oversize_body_is_refused_before_it_is_read(void **state)
{
  struct fixture *f = *state;
  int fd = test_http_connect(f->socket_path);
  struct test_reply r;
  assert_int_equal(test_http_exchange(fd, "POST", "/Test.Echo", "", 0, 50LL * 1024 * 1024 * 1024, &r), 0);
  assert_int_equal(r.status, 413);
  assert_non_null(strstr(r.body, "\"Err\""));
  test_reply_free(&r);
  close(fd);
}

static void an_oversize_body_sent_in_full_is_413(void **state)
{
  struct fixture *f = *state;
  size_t len = PLG_MAX_BODY + 4096;
  char *big = xmalloc(len);
  memset(big, ' ', len);
  int fd = test_http_connect(f->socket_path);
  struct test_reply r;
  /* Declare a small length but the server must still stop at the limit when more arrives in
   * chunks: here the declared length is the real one, just over the limit. */
  int rc = test_http_exchange(fd, "POST", "/Test.Echo", big, len, -1, &r);
  free(big);
  close(fd);
  if (rc == 0) {
    assert_int_equal(r.status, 413);
    test_reply_free(&r);
  }
  /* either way the server is still healthy */
  assert_int_equal(test_http_post(f->socket_path, "/Test.Echo", "{}", &r), 0);
  assert_int_equal(r.status, 200);
  test_reply_free(&r);
}

static void a_wrong_method_over_the_socket_is_405(void **state)
{
  struct fixture *f = *state;
  int fd = test_http_connect(f->socket_path);
  struct test_reply r;
  assert_int_equal(test_http_exchange(fd, "GET", "/Test.Echo", "", 0, -1, &r), 0);
  assert_int_equal(r.status, 405);
  test_reply_free(&r);
  close(fd);
}

static void stopping_lets_an_in_flight_request_finish_then_refuses_connections(void **state)
{
  struct fixture *f = *state;
  atomic_store(&slow_entered, false);
  pthread_t t;
  struct client_arg arg = {f->socket_path, "/Test.Slow", 0};
  pthread_create(&t, NULL, client, &arg);
  assert_true(slow_wait_entered());
  plg_server_stop(f->srv, 5000);
  f->srv = NULL;
  pthread_join(t, NULL);
  assert_int_equal(arg.status, 200);
  int fd = test_http_connect(f->socket_path);
  assert_true(fd < 0);
}

static int count_threads(void)
{
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* Room for N_IDLE client and N_IDLE server descriptors in this one process. */
static void raise_open_files_limit(void)
{
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 4 * N_IDLE) {
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  if (rl.rlim_cur < 4 * N_IDLE)
    fail_msg("this test needs %d open files, the hard limit is %llu", 4 * N_IDLE,
             (unsigned long long)rl.rlim_max);
}

static void many_idle_connections_cost_no_thread_and_requests_are_still_answered(void **state)
{
  (void)state;
  raise_open_files_limit();
  void *fx;
  start_fixture(&fx, NULL); /* after raising the limit, which bounds the server's connections */
  struct fixture *f = fx;
  int before = count_threads();
  int *idle = xcalloc(N_IDLE, sizeof *idle);
  for (int i = 0; i < N_IDLE; i++) {
    idle[i] = test_http_connect(f->socket_path);
    assert_true(idle[i] >= 0);
    if (i % 2 == 1) /* half of them begin a request and never finish it */
      assert_int_equal(send(idle[i], "POST /Test.Echo HTTP/1.1\r\nHost:", 31, MSG_NOSIGNAL), 31);
  }
  /* the listen backlog (128) is full long before N_IDLE, so most of them have been accepted */
  struct test_reply r;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(test_http_post(f->socket_path, "/Test.Echo", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    test_reply_free(&r);
  }
  int during = count_threads();
  for (int i = 0; i < N_IDLE; i++)
    close(idle[i]);
  free(idle);
  /* a thread per connection would be hundreds; a handler thread may still be on its way out */
  if (during > before + 8)
    fail_msg("%d threads with %d idle connections open, %d before", during, N_IDLE, before);
  void *p = f;
  teardown(&p);
}

/* Reads from FD until the peer closes it (0) or the test's receive timeout (-1). */
static int read_until_closed(int fd)
{
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0)
      return 0;
    if (n < 0 && errno != EINTR)
      return -1;
  }
}

static void an_idle_connection_is_closed_after_the_idle_timeout(void **state)
{
  struct fixture *f = *state;
  int silent = test_http_connect(f->socket_path);
  assert_true(silent >= 0);
  int kept = test_http_connect(f->socket_path); /* kept alive after a request, then idle */
  struct test_reply r;
  assert_int_equal(test_http_exchange(kept, "POST", "/Test.Echo", "{}", 2, -1, &r), 0);
  assert_int_equal(r.status, 200);
  test_reply_free(&r);
  assert_int_equal(read_until_closed(silent), 0);
  assert_int_equal(read_until_closed(kept), 0);
  close(silent);
  close(kept);
}

struct slow_call {
  const char *socket_path;
  const char *path;
  int status;
  char *body;
};

static void *slow_client(void *p)
{
  struct slow_call *c = p;
  struct test_reply r = {0};
  c->status = test_http_post(c->socket_path, c->path, "{}", &r) == 0 ? r.status : -1;
  c->body = r.body;
  return NULL;
}

static void a_handler_that_outlasts_the_idle_timeout_still_gets_its_reply_out(void **state)
{
  struct fixture *f = *state;
  struct slow_call call = {f->socket_path, "/Test.Block", 0, NULL};
  pthread_t t;
  pthread_create(&t, NULL, slow_client, &call);
  assert_true(gate_wait_entered(1));
  /* an idle connection opened now is closed by the idle timeout while the handler works */
  int witness = test_http_connect(f->socket_path);
  assert_true(witness >= 0);
  assert_int_equal(read_until_closed(witness), 0);
  close(witness);
  gate_release();
  pthread_join(t, NULL);
  assert_int_equal(call.status, 200);
  free(call.body);
}

static void a_blocked_handler_does_not_stall_other_requests(void **state)
{
  struct fixture *f = *state;
  enum { N_BLOCKED = 4 };
  struct slow_call calls[N_BLOCKED];
  pthread_t t[N_BLOCKED];
  for (int i = 0; i < N_BLOCKED; i++) {
    calls[i] = (struct slow_call){f->socket_path, "/Test.Block", 0, NULL};
    pthread_create(&t[i], NULL, slow_client, &calls[i]);
  }
  assert_true(gate_wait_entered(N_BLOCKED));
  for (int i = 0; i < 20; i++) {
    struct test_reply r;
    assert_int_equal(test_http_post(f->socket_path, "/Test.Echo", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    test_reply_free(&r);
  }
  gate_release();
  for (int i = 0; i < N_BLOCKED; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(calls[i].status, 200);
    free(calls[i].body);
  }
}

static int setup_two_handlers(void **state)
{
  struct plg_server_limits limits = PLG_SERVER_LIMITS_DEFAULT;
  limits.reply_flush_ms = HANG_MS;
  limits.max_handlers = 2;
  return start_fixture(state, &limits);
}

static void a_request_beyond_the_handler_limit_is_refused_with_503_and_later_ones_served(void **state)
{
  struct fixture *f = *state;
  struct slow_call calls[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    calls[i] = (struct slow_call){f->socket_path, "/Test.Block", 0, NULL};
    pthread_create(&t[i], NULL, slow_client, &calls[i]);
  }
  assert_true(gate_wait_entered(2));
  struct test_reply r;
  assert_int_equal(test_http_post(f->socket_path, "/Test.Echo", "{}", &r), 0);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "the plugin is busy: 2 requests are already being handled"));
  test_reply_free(&r);
  gate_release();
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(calls[i].status, 200);
    free(calls[i].body);
  }
  /* the handler threads end after their replies left: wait for them, not for the replies */
  assert_int_equal(plg_server_wait_handlers(HANG_MS), 0);
  assert_int_equal(test_http_post(f->socket_path, "/Test.Echo", "{}", &r), 0);
  assert_int_equal(r.status, 200);
  test_reply_free(&r);
}

static void stopping_runs_the_hook_first_and_a_woken_handler_answers_with_its_error(void **state)
{
  struct fixture *f = *state;
  int probe = test_http_connect(f->socket_path); /* open before the stop, like Docker's */
  assert_true(probe >= 0);
  pthread_mutex_lock(&gate_lock);
  hook_probe_fd = probe;
  pthread_mutex_unlock(&gate_lock);
  struct slow_call call = {f->socket_path, "/Test.Wait", 0, NULL};
  pthread_t t;
  pthread_create(&t, NULL, slow_client, &call);
  assert_true(gate_wait_entered(1));
  /* a grace longer than the test's own deadlines: only the hook can end the handler in time */
  assert_int_equal(plg_server_stop(f->srv, 10 * HANG_MS), 0);
  f->srv = NULL;
  pthread_join(t, NULL);
  assert_int_equal(call.status, 500);
  assert_non_null(strstr(call.body, "woken by the stopping hook"));
  free(call.body);
  /* the request that arrived during the stop was refused, and said why */
  assert_true(hook_called);
  assert_int_equal(hook_probe_status, 503);
  assert_non_null(strstr(hook_probe_body, "shutting down"));
  close(probe);
}

static void a_handler_that_ignores_the_hook_is_answered_by_the_stop_after_the_grace(void **state)
{
  struct fixture *f = *state;
  struct slow_call call = {f->socket_path, "/Test.Block", 0, NULL};
  pthread_t t;
  pthread_create(&t, NULL, slow_client, &call);
  assert_true(gate_wait_entered(1));
  assert_int_equal(plg_server_stop(f->srv, 100), 1); /* one handler still running */
  f->srv = NULL;
  pthread_join(t, NULL);
  assert_int_equal(call.status, 503);
  assert_non_null(strstr(call.body, "stopped before this request finished"));
  free(call.body);
  assert_int_equal(plg_server_wait_handlers(0), 1);
  gate_release(); /* it returns now, to a server that is gone: its reply is dropped */
  assert_int_equal(plg_server_wait_handlers(HANG_MS), 0);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(activate_answers_what_the_plugin_implements, setup, teardown),
      cmocka_unit_test_setup_teardown(requests_are_served_concurrently, setup, teardown),
      cmocka_unit_test_setup_teardown(a_kept_alive_connection_serves_several_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(a_declared_oversize_body_is_refused_before_it_is_read, setup, teardown),
      cmocka_unit_test_setup_teardown(an_oversize_body_sent_in_full_is_413, setup, teardown),
      cmocka_unit_test_setup_teardown(a_wrong_method_over_the_socket_is_405, setup, teardown),
      cmocka_unit_test_setup_teardown(stopping_lets_an_in_flight_request_finish_then_refuses_connections,
                                      setup, teardown),
      cmocka_unit_test(many_idle_connections_cost_no_thread_and_requests_are_still_answered),
      cmocka_unit_test_setup_teardown(an_idle_connection_is_closed_after_the_idle_timeout, setup_short_idle,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_handler_that_outlasts_the_idle_timeout_still_gets_its_reply_out,
                                      setup_short_idle, teardown),
      cmocka_unit_test_setup_teardown(a_blocked_handler_does_not_stall_other_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_request_beyond_the_handler_limit_is_refused_with_503_and_later_ones_served, setup_two_handlers,
          teardown),
      cmocka_unit_test_setup_teardown(stopping_runs_the_hook_first_and_a_woken_handler_answers_with_its_error,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_handler_that_ignores_the_hook_is_answered_by_the_stop_after_the_grace,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
