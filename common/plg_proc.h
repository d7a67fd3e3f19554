/* Child processes, supervised and never forgotten: started with posix_spawn (an argument vector,
 * never a shell) in a session of their own, reaped by one thread this module owns, waited for
 * with deadlines and killed as a process group.
 *
 * Nothing else in the process may call wait*(): a child reaped elsewhere loses its exit status
 * (it is reported as PLG_PROC_STATUS_LOST) and its pid may be recycled under our feet. Nor may
 * anything else start children (fork, popen, system): the reaper reaps every child, orphans
 * reparented to us as PID 1 included. */
#ifndef PLG_PROC_H
#define PLG_PROC_H

#include "plg_error.h"

#include <sys/types.h>

/* The wait status of a child that something outside this module reaped: the real one is lost. */
#define PLG_PROC_STATUS_LOST (-1)

struct plg_proc_opts {
  int stdin_fd, stdout_fd, stderr_fd; /* -1 = /dev/null; the child gets no descriptor but these */
  char *const *envp;                  /* NULL = the environment of this process */
  /* Called once, from the reaper thread, after the child was reaped and before plg_proc_wait
   * returns its status; may be NULL. It must be quick and must not wait for a child (the reaper
   * waits for it); it may spawn, kill and call plg_proc_forget. */
  void (*on_exit)(void *arg, pid_t pid, int wait_status);
  void *on_exit_arg;
};

/* Start from this, never from a zeroed struct: fd 0 is a real descriptor. */
#define PLG_PROC_OPTS_DEFAULT ((struct plg_proc_opts){.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1})

/* Starts ARGV (looked up in PATH when argv[0] has no slash) with OPTS (NULL = the defaults).
 * Returns its pid, which the caller must hand to plg_proc_wait or plg_proc_forget, or -1. */
pid_t plg_proc_spawn(const char *const argv[], const struct plg_proc_opts *opts, plg_error_t *err);

/* Waits at most TIMEOUT_MS (0 = just look) until PID has been reaped and its on_exit callback has
 * returned. Returns 0 and *WAIT_STATUS (WAIT_STATUS may be NULL), consuming the child's entry; or -1
 * on timeout (the child stays registered: wait again, or kill it first), for a pid this module does
 * not know, or for a lost status. */
int plg_proc_wait(pid_t pid, int timeout_ms, int *wait_status, plg_error_t *err);

/* Sends SIG to the child's process group. A no-op once the child has been reaped, so a recycled
 * pid is never signalled. */
void plg_proc_kill(pid_t pid, int sig);

/* The caller will never wait for PID: its entry is freed as soon as it has been reaped. */
void plg_proc_forget(pid_t pid);

/* Runs ARGV to completion within TIMEOUT_MS with stdin on /dev/null, capturing stdout and stderr
 * together (the first 64 KiB; the rest is read and dropped so the child never blocks) into *OUTPUT
 * (malloc'd, NUL-terminated, NULL on failure; OUTPUT may be NULL). A non-zero exit is not an error:
 * *WAIT_STATUS tells. When the time is up the group gets SIGTERM, 500 ms later SIGKILL, and the
 * child is reaped before the error "<argv[0]> did not finish within N ms" is returned. Finishing
 * means the program exited: a background process it left holding the output is not waited for. */
int plg_proc_run(const char *const argv[], int timeout_ms, char **output, int *wait_status, plg_error_t *err);

/* "exited with status 1", "killed by signal 9 (Killed)", for messages; malloc'd. */
char *plg_proc_describe_status(int wait_status);

/* How many children the registry holds (running, or reaped but not yet waited for or
 * forgotten): for diagnostics at shutdown and for tests. */
int plg_proc_registered(void);

#endif
