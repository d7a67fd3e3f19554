/* The protocol server started on a socket in a temporary directory, with test handlers: a
 * rendezvous of N_CONCURRENT requests, a slow one, an echo, and handlers that wait at a gate the
 * test (or the stopping hook) opens. Shared by test_server.c and its tests of load and stop. */
#ifndef SERVER_FIXTURE_H
#define SERVER_FIXTURE_H

#include "plg_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define N_CONCURRENT 8
/* issue 13: 600 connections that sent nothing grew the plugin to 515 threads, and every later
 * request was refused while they stayed open */
#define N_IDLE 600
/* a deadline for waits that only a broken server would reach: never a measure of speed */
#define HANG_MS 30000

struct fixture {
  char *dir;
  char *socket_path;
  struct plg_server *srv;
};

extern atomic_bool slow_entered;
extern int meet_count;
extern pthread_mutex_t gate_lock;
extern bool hook_called;      /* the stopping hook ran */
extern int hook_probe_fd;     /* a kept-alive connection the hook sends a request on */
extern int hook_probe_status; /* what that request got */
extern char *hook_probe_body;

/* Waits until the slow handler (/Test.Slow) has begun; false after HANG_MS. */
bool slow_wait_entered(void);
/* Lets every handler waiting at the gate go. */
void gate_release(void);
/* Waits until N handlers are at the gate; false after HANG_MS. */
bool gate_wait_entered(int n);

int start_fixture(void **state, const struct plg_server_limits *limits);
int setup(void **state);            /* default limits */
int setup_short_idle(void **state); /* an idle timeout of one second */
int teardown(void **state);

#endif
