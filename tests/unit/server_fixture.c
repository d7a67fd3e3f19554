#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server_fixture.h"

#include "plg_json.h"
#include "plg_socket.h"
#include "plg_util.h"
#include "test_http.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cond = PTHREAD_COND_INITIALIZER;
int meet_count;
atomic_bool slow_entered;

/* Succeeds only when N_CONCURRENT requests are inside the handler at the same moment, which a
 * server that handles one request at a time can never achieve. */
static int rendezvous(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  pthread_mutex_lock(&meet_lock);
  meet_count++;
  pthread_cond_broadcast(&meet_cond);
  int rc = 0;
  while (meet_count < N_CONCURRENT && rc == 0)
    rc = pthread_cond_timedwait(&meet_cond, &meet_lock, &deadline);
  pthread_mutex_unlock(&meet_lock);
  if (rc != 0)
    return plg_error_make(err, 0, "requests were not served concurrently");
  return 0;
}

static int echo(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)err;
  *reply = plg_json_pack("{s:O}", "Got", req);
  return 0;
}

/* A gate that handlers wait at, with flags the tests and the stopping hook set. */
pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_entered; /* handlers that reached the gate */
static bool gate_open;   /* the test lets every handler go */
bool hook_called;        /* the stopping hook ran */
int hook_probe_fd = -1;  /* a kept-alive connection the hook sends a request on */
int hook_probe_status;
char *hook_probe_body;

static void gate_reset(void)
{
  pthread_mutex_lock(&gate_lock);
  gate_entered = 0;
  gate_open = false;
  hook_called = false;
  hook_probe_fd = -1;
  hook_probe_status = 0;
  free(hook_probe_body);
  hook_probe_body = NULL;
  pthread_mutex_unlock(&gate_lock);
}

void gate_release(void)
{
  pthread_mutex_lock(&gate_lock);
  gate_open = true;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
}

/* Waits until N handlers are at the gate; false after HANG_MS. */
bool gate_wait_entered(int n)
{
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HANG_MS / 1000;
  pthread_mutex_lock(&gate_lock);
  int rc = 0;
  while (gate_entered < n && rc == 0)
    rc = pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline);
  bool ok = gate_entered >= n;
  pthread_mutex_unlock(&gate_lock);
  return ok;
}

/* Waits at the gate until the test opens it or, when WAKE_ON_HOOK, until the stopping hook ran;
 * like a mount that waits on a frozen server. */
static int wait_at_gate(bool wake_on_hook, plg_error_t *err)
{
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HANG_MS / 1000;
  pthread_mutex_lock(&gate_lock);
  gate_entered++;
  pthread_cond_broadcast(&gate_cond);
  int rc = 0;
  while (!gate_open && !(wake_on_hook && hook_called) && rc == 0)
    rc = pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline);
  bool woken = wake_on_hook && hook_called && !gate_open;
  pthread_mutex_unlock(&gate_lock);
  if (woken)
    return plg_error_make(err, 0, "woken by the stopping hook");
  if (rc != 0)
    return plg_error_make(err, 0, "the gate never opened");
  return 0;
}

static int block_until_released(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  return wait_at_gate(false, err);
}

static int block_until_stopping(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  return wait_at_gate(true, err);
}

/* The stopping hook: wakes the handlers that listen for it, and checks from inside the stop that
 * a request arriving now is refused. The probe has no body: the server answers 503 as soon as
 * it has read the headers and closes the connection, so a body sent after them could meet EPIPE. */
static void on_stopping(void *ctx)
{
  (void)ctx;
  pthread_mutex_lock(&gate_lock);
  int probe = hook_probe_fd;
  pthread_mutex_unlock(&gate_lock);
  struct test_reply r = {0};
  int status =
      probe >= 0 && test_http_exchange(probe, "POST", "/Test.Meet", "", 0, -1, &r) == 0 ? r.status : -1;
  pthread_mutex_lock(&gate_lock);
  hook_probe_status = status;
  hook_probe_body = r.body;
  hook_called = true;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
}

/* Tells that it has begun, then works until the stop has begun (the stopping hook ran): a request
 * in flight when the stop comes, which then finishes with its reply. */
static int slow(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HANG_MS / 1000;
  pthread_mutex_lock(&gate_lock);
  atomic_store(&slow_entered, true);
  pthread_cond_broadcast(&gate_cond);
  int rc = 0;
  while (!hook_called && rc == 0)
    rc = pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline);
  pthread_mutex_unlock(&gate_lock);
  if (rc != 0)
    return plg_error_make(err, 0, "the stop never began");
  *reply = plg_json_pack("{s:b}", "Done", 1);
  return 0;
}

bool slow_wait_entered(void)
{
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HANG_MS / 1000;
  pthread_mutex_lock(&gate_lock);
  int rc = 0;
  while (!atomic_load(&slow_entered) && rc == 0)
    rc = pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline);
  bool entered = atomic_load(&slow_entered);
  pthread_mutex_unlock(&gate_lock);
  return entered;
}

static const struct plg_route routes[] = {
    {"Test.Meet", rendezvous, true},
    {"Test.Slow", slow, true},
    {"Test.Echo", echo, false},
    {"Test.Block", block_until_released, true},
    {"Test.Wait", block_until_stopping, true},
};
static const struct plg_service svc = {"TestDriver", routes, 5, NULL, on_stopping};

int start_fixture(void **state, const struct plg_server_limits *limits)
{
  gate_reset();
  struct fixture *f = xcalloc(1, sizeof *f);
  f->dir = test_tmpdir();
  f->socket_path = xasprintf("%s/sub/dir/test.sock", f->dir);
  plg_error_t err = NULL;
  int fd = plg_socket_listen(f->socket_path, &err);
  if (fd < 0)
    fail_msg("listen: %s", err->msg);
  if (plg_server_start(&svc, fd, limits, &f->srv, &err) < 0)
    fail_msg("start: %s", err->msg);
  *state = f;
  return 0;
}

/* The defaults, except that replies get as long as they need to leave at the stop: under
 * valgrind, on a busy machine, 200 ms is not always enough, and the tests check the replies. */
int setup(void **state)
{
  struct plg_server_limits limits = PLG_SERVER_LIMITS_DEFAULT;
  limits.reply_flush_ms = HANG_MS;
  return start_fixture(state, &limits);
}

/* A one-second idle timeout, so that tests can watch it act. */
int setup_short_idle(void **state)
{
  struct plg_server_limits limits = PLG_SERVER_LIMITS_DEFAULT;
  limits.reply_flush_ms = HANG_MS;
  limits.idle_timeout_s = 1;
  return start_fixture(state, &limits);
}

int teardown(void **state)
{
  struct fixture *f = *state;
  plg_server_stop(f->srv, 2000);
  gate_release();
  if (plg_server_wait_handlers(HANG_MS) != 0)
    fail_msg("a handler thread outlived its test");
  unlink(f->socket_path);
  cleanup_free char *d1 = xasprintf("%s/sub/dir", f->dir);
  cleanup_free char *d2 = xasprintf("%s/sub", f->dir);
  rmdir(d1);
  rmdir(d2);
  rmdir(f->dir);
  free(f->socket_path);
  free(f->dir);
  free(f);
  return 0;
}
