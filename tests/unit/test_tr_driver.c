/* teleroute's Join handler never asks the daemon to join an endpoint whose CreateEndpoint did not
 * succeed here. The real daemon (telepresenceio/telepresence
 * pkg/client/docker/teleroute/server_linux.go) stores the id of an endpoint whose veth pair it
 * could not make, with nil links, and its Join of that id calls ep.vethHost.Attrs() on nil: the
 * whole daemon crashes. The "daemon" here is a TCP listener that counts the connections it gets;
 * the plugin's state is a table saved beforehand, as a plugin restart would find it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_json.h"
#include "plg_util.h"
#include "test_http.h"
#include "tr_driver.h"
#include "tr_table.h"
#include "tr_test_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NET_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NET_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define EP_KNOWN "1111111111111111111111111111111111111111111111111111111111111111"
#define EP_OTHER_NET "2222222222222222222222222222222222222222222222222222222222222222"
#define EP_NEVER "3333333333333333333333333333333333333333333333333333333333333333"

struct fixture {
  char *dir;
  char *state_file;
  int listener;
  pthread_t acceptor;
  atomic_int connections;
  void *ctx;
  bool daemon;          /* serve test daemons whose Join hangs, instead of dropping connections */
  pthread_mutex_t lock; /* PEERS, and COND when one is added */
  pthread_cond_t cond;
  struct peer *peers[8]; /* the daemons, when DAEMON */
};

/* Accepts every connection and drops it: a "daemon" that never answers, but is seen being called;
 * or, for DAEMON, serves it as a daemon that answers everything but Join. */
static void *accept_loop(void *arg)
{
  struct fixture *f = arg;
  for (;;) {
    int fd = accept(f->listener, NULL, NULL);
    if (fd < 0)
      return NULL; /* the listener was shut down */
    int n = atomic_fetch_add(&f->connections, 1);
    if (!f->daemon || n >= 8) {
      close(fd);
      continue;
    }
    struct peer *p = peer_new(fd, PEER_DAEMON);
    peer_answer(p, "Join", PEER_HANG, NULL, NULL, 0);
    peer_run(p);
    pthread_mutex_lock(&f->lock);
    f->peers[n] = p;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
  }
}

static int listen_locally(int *port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

static void add_network(struct tr_table *t, const char *id, int port)
{
  struct tr_network *n = tr_table_add_network(t, id);
  snprintf(n->opts.host, sizeof n->opts.host, "127.0.0.1");
  n->opts.port = port;
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_parse("10.213.0.0/24", &n->pools[0], &err), 0);
  assert_int_equal(tr_prefix_parse("10.213.0.1/24", &n->gateways[0], &err), 0);
  n->n_pools = n->n_gateways = 1;
}

static int setup_with(void **state, bool daemon, const char *timeout)
{
  struct fixture *f = xcalloc(1, sizeof *f);
  f->daemon = daemon;
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->cond, NULL);
  f->dir = test_tmpdir();
  assert_non_null(f->dir);
  f->state_file = xasprintf("%s/state.json", f->dir);
  int port;
  f->listener = listen_locally(&port);
  assert_int_equal(pthread_create(&f->acceptor, NULL, accept_loop, f), 0);

  /* two networks of one daemon; an endpoint created on each of them */
  struct tr_table t = {0};
  add_network(&t, NET_A, port);
  add_network(&t, NET_B, port);
  struct tr_endpoint *e = tr_table_add_endpoint(&t, EP_KNOWN, NET_A);
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_parse("10.213.0.3/24", &e->addr4, &err), 0);
  e = tr_table_add_endpoint(&t, EP_OTHER_NET, NET_B);
  assert_int_equal(tr_prefix_parse("10.213.0.4/24", &e->addr4, &err), 0);
  assert_int_equal(tr_table_save(&t, f->state_file, TR_STATE_MAX_BYTES, &err), 0);
  tr_table_clear(&t);

  setenv("STATE_DIR", f->dir, 1);
  setenv("ROUTE_REFRESH_INTERVAL", "0", 1);
  setenv("CONNECT_TIMEOUT", timeout, 1);
  setenv("CALL_TIMEOUT", timeout, 1);
  if (tr_init(&f->ctx, &err) < 0)
    fail_msg("tr_init: %s", err->msg);
  *state = f;
  return 0;
}

static int setup(void **state)
{
  return setup_with(state, false, "300ms");
}

/* Deadlines no test waits for: only the stop can end the calls. */
static int setup_daemon(void **state)
{
  return setup_with(state, true, "60s");
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tr_shutdown(f->ctx);
  shutdown(f->listener, SHUT_RDWR);
  pthread_join(f->acceptor, NULL);
  close(f->listener);
  for (size_t i = 0; i < 8; i++)
    peer_free(f->peers[i]);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->lock);
  unlink(f->state_file);
  rmdir(f->dir);
  free(f->state_file);
  free(f->dir);
  free(f);
  return 0;
}

/* The Join handler's answer to a Join of EP on NET with SandboxKey KEY: the error message
 * (malloc'd), or NULL. */
static char *join_key(struct fixture *f, const char *net, const char *ep, const char *key, int *status)
{
  const struct plg_route *route = NULL;
  for (size_t i = 0; i < TR_N_ROUTES; i++)
    if (strcmp(tr_routes[i].call, "NetworkDriver.Join") == 0)
      route = &tr_routes[i];
  assert_non_null(route);
  cleanup_json json_t *req =
      plg_json_pack("{s:s,s:s,s:s,s:{}}", "NetworkID", net, "EndpointID", ep, "SandboxKey", key, "Options");
  json_t *reply = NULL;
  plg_error_t err = NULL;
  if (route->handler(f->ctx, req, &reply, &err) == 0) {
    json_decref(reply);
    return NULL;
  }
  *status = err->status;
  char *msg = xstrdup(err->msg);
  plg_error_release(&err);
  return msg;
}

static char *join(struct fixture *f, const char *net, const char *ep, int *status)
{
  return join_key(f, net, ep, "/var/run/docker/netns/0123456789ab", status);
}

static void a_join_of_an_endpoint_never_created_is_refused_without_calling_the_daemon(void **state)
{
  struct fixture *f = *state;
  int status = 0;
  cleanup_free char *msg = join(f, NET_A, EP_NEVER, &status);
  assert_non_null(msg);
  assert_int_equal(status, 404);
  if (strstr(msg, "endpoint 333333333333 was not created on teleroute network aaaaaaaaaaaa") == NULL ||
      strstr(msg, "CreateEndpoint did not succeed") == NULL)
    fail_msg("unclear error: %s", msg);
  assert_int_equal(atomic_load(&f->connections), 0);
}

static void a_join_of_an_endpoint_created_on_another_network_is_refused_too(void **state)
{
  struct fixture *f = *state;
  int status = 0;
  cleanup_free char *msg = join(f, NET_A, EP_OTHER_NET, &status);
  assert_non_null(msg);
  assert_int_equal(status, 404);
  assert_non_null(strstr(msg, "was not created on teleroute network aaaaaaaaaaaa"));
  assert_int_equal(atomic_load(&f->connections), 0);
}

/* The control: the same call for an endpoint in the table does go to the daemon (which here
 * drops the connection, so the Join fails for that reason, not for the one above). */
static void a_join_of_a_created_endpoint_goes_to_the_daemon(void **state)
{
  struct fixture *f = *state;
  int status = 0;
  cleanup_free char *msg = join(f, NET_A, EP_KNOWN, &status);
  assert_non_null(msg);
  assert_null(strstr(msg, "was not created"));
  assert_true(atomic_load(&f->connections) > 0);
}

/* Issue 13: route refresh enters the namespace at SandboxKey and changes routes there, so a key
 * outside Docker's netns directory is refused at Join, before the daemon is asked. */
static void a_join_with_a_sandbox_key_outside_dockers_netns_directory_is_refused(void **state)
{
  struct fixture *f = *state;
  const char *keys[] = {"/proc/1/ns/net", "/var/run/docker/netns/../../../proc/1/ns/net",
                        "relative/netns/0123456789ab"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    int status = 0;
    cleanup_free char *msg = join_key(f, NET_A, EP_KNOWN, keys[i], &status);
    if (msg == NULL)
      fail_msg("a Join with SandboxKey %s succeeded", keys[i]);
    assert_int_equal(status, 400);
    if (strstr(msg, "is not a network namespace file of Docker's") == NULL || strstr(msg, keys[i]) == NULL)
      fail_msg("unclear error for %s: %s", keys[i], msg);
  }
  assert_int_equal(atomic_load(&f->connections), 0);
}

struct join_call {
  struct fixture *f;
  char *msg;
  int status;
};

static void *join_thread(void *arg)
{
  struct join_call *j = arg;
  j->msg = join(j->f, NET_A, EP_KNOWN, &j->status);
  return NULL;
}

/* Issue 13: a stop waited for calls in flight, and Docker SIGKILLs a plugin 10 s after SIGTERM.
 * tr_stopping (the stopping hook) ends a Join that hangs on a frozen daemon at once, and what
 * comes later fails at once too. */
static void the_stopping_hook_ends_a_join_that_hangs_on_a_frozen_daemon(void **state)
{
  struct fixture *f = *state;
  struct join_call j = {.f = f};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, join_thread, &j), 0);
  pthread_mutex_lock(&f->lock);
  while (f->peers[0] == NULL)
    pthread_cond_wait(&f->cond, &f->lock);
  struct peer *daemon = f->peers[0];
  pthread_mutex_unlock(&f->lock);
  peer_wait_calls(daemon, "Join", 1);
  tr_stopping(f->ctx);
  pthread_join(t, NULL);
  assert_non_null(j.msg);
  if (strstr(j.msg, "Join: CANCELLED: the plugin is stopping") == NULL)
    fail_msg("the Join did not end with the stop: %s", j.msg);
  free(j.msg);
  int status = 0;
  cleanup_free char *later = join(f, NET_B, EP_OTHER_NET, &status);
  assert_non_null(later);
  assert_non_null(strstr(later, "CANCELLED: the plugin is stopping"));
  assert_int_equal(atomic_load(&f->connections), 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          a_join_of_an_endpoint_never_created_is_refused_without_calling_the_daemon, setup, teardown),
      cmocka_unit_test_setup_teardown(a_join_of_an_endpoint_created_on_another_network_is_refused_too, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_join_of_a_created_endpoint_goes_to_the_daemon, setup, teardown),
      cmocka_unit_test_setup_teardown(a_join_with_a_sandbox_key_outside_dockers_netns_directory_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(the_stopping_hook_ends_a_join_that_hangs_on_a_frozen_daemon,
                                      setup_daemon, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
