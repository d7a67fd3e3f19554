/* A plugin for test_main, run as a child: its one call, Fake.Wait, blocks like a Mount on a frozen
 * server until the stopping hook wakes it. Its lines on stdout tell the test where it is. */
#include "plg_log.h"
#include "plg_main.h"
#include "plg_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* Far beyond any grace of the stop: only the hook can end the wait in time. */
#define WAIT_MS 120000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t woken;
static bool stopping;

static int fake_init(void **ctx, plg_error_t *err)
{
  (void)err;
  plg_cond_init_monotonic(&woken);
  *ctx = NULL;
  return 0;
}

static int handle_wait(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, WAIT_MS);
  pthread_mutex_lock(&lock);
  plg_info("fake: the handler waits");
  while (!stopping)
    if (pthread_cond_timedwait(&woken, &lock, &deadline) == ETIMEDOUT)
      break;
  bool interrupted = stopping;
  pthread_mutex_unlock(&lock);
  if (!interrupted)
    return plg_error_make(err, 0, "the wait ended without the stopping hook");
  return plg_error_make(err, 0, "interrupted: the plugin is stopping");
}

static void fake_stopping(void *ctx)
{
  (void)ctx;
  pthread_mutex_lock(&lock);
  stopping = true;
  pthread_cond_broadcast(&woken);
  pthread_mutex_unlock(&lock);
  plg_info("fake: the stopping hook ran");
}

static void fake_shutdown(void *ctx)
{
  (void)ctx;
  pthread_mutex_lock(&lock);
  bool after_hook = stopping;
  pthread_mutex_unlock(&lock);
  /* WOKEN is not destroyed: a handler that ignored the hook could still wait on it */
  plg_info("fake: shutdown, after the stopping hook: %s", after_hook ? "yes" : "no");
}

static const struct plg_route routes[] = {
    {"Fake.Wait", handle_wait, true},
};

int main(int argc, char **argv)
{
  const struct plg_plugin plugin = {
      .name = "fake",
      .version = "0",
      .implements = "FakeDriver",
      .routes = routes,
      .n_routes = 1,
      .init = fake_init,
      .stopping = fake_stopping,
      .shutdown = fake_shutdown,
  };
  return plg_main(&plugin, argc, argv);
}
