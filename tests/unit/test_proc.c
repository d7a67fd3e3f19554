/* Child processes: spawn, reap, wait with deadlines, kill groups, capture output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_proc.h"
#include "plg_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/* Set by ctest when the tests run under an emulator (qemu-user, for the arm64 build). */
static bool under_qemu_user(void)
{
  const char *e = getenv("PLG_TEST_EMULATOR");
  return e && strcmp(e, "qemu-user") == 0;
}

#define RUN_THREADS 16
#define RUNS_PER_THREAD 20
/* qemu-user 7.2 now and then deadlocks the child of a fork from a multithreaded guest (it turns
 * posix_spawn's vfork into a fork) before it can exec; fewer spawns keep that rare there. */
#define RUN_THREADS_EMULATED 4
#define RUNS_PER_THREAD_EMULATED 5

static bool process_exists(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d", (int)pid);
  struct stat st;
  return stat(path, &st) == 0;
}

/* Children of this process in any state, zombies included, from the ppid field of /proc/N/stat. */
static int count_my_children(void)
{
  DIR *d = opendir("/proc");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *after_comm = strrchr(buf, ')'); /* the command name may contain spaces */
    int ppid;
    if (after_comm != NULL && sscanf(after_comm, ") %*c %d", &ppid) == 1 && ppid == getpid())
      n++;
  }
  closedir(d);
  return n;
}

/* Waits up to MS for a condition the reaper thread brings about on its own schedule. */
static bool eventually(bool (*cond)(void), int ms)
{
  int64_t deadline = plg_now_ms() + ms;
  while (!cond()) {
    if (plg_now_ms() > deadline)
      return false;
    usleep(10000);
  }
  return true;
}

static bool no_children_left(void)
{
  return count_my_children() == 0;
}

static bool registry_is_empty(void)
{
  return plg_proc_registered() == 0;
}

static int run_ok(const char *const argv[], char **output)
{
  int status = -1;
  plg_error_t err = NULL;
  if (plg_proc_run(argv, 60000, output, &status, &err) < 0) /* against hangs only */
    fail_msg("%s", err->msg);
  return status;
}

static void the_exit_status_of_a_program_is_reported(void **state)
{
  (void)state;
  int status = run_ok((const char *const[]){"true", NULL}, NULL);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  status = run_ok((const char *const[]){"false", NULL}, NULL);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  assert_int_equal(plg_proc_registered(), 0);
}

static void stdout_and_stderr_are_both_captured(void **state)
{
  (void)state;
  cleanup_free char *out = NULL;
  run_ok((const char *const[]){"/bin/echo", "hello", "world", NULL}, &out);
  assert_string_equal(out, "hello world\n");
  cleanup_free char *both = NULL;
  run_ok((const char *const[]){"sh", "-c", "echo out; echo err >&2", NULL}, &both);
  assert_string_equal(both, "out\nerr\n");
  cleanup_free char *none = NULL;
  run_ok((const char *const[]){"true", NULL}, &none);
  assert_string_equal(none, "");
}

static void output_beyond_64_kib_is_dropped_without_blocking_the_child(void **state)
{
  (void)state;
  cleanup_free char *out = NULL;
  int status = run_ok((const char *const[]){"head", "-c", "1000000", "/dev/zero", NULL}, &out);
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(strlen(out), 0); /* zeros: the NUL terminator is at 0 */
  cleanup_free char *text = NULL;
  run_ok((const char *const[]){"sh", "-c", "yes | head -c 200000", NULL}, &text);
  assert_int_equal(strlen(text), 64 * 1024);
}

static void an_endless_writer_is_stopped_at_the_deadline(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int status;
  char *out = NULL;
  assert_int_equal(plg_proc_run((const char *const[]){"yes", NULL}, 300, &out, &status, &err), -1);
  assert_string_equal(err->msg, "yes did not finish within 300 ms");
  plg_error_release(&err);
  assert_int_equal(count_my_children(), 0); /* how long the stop takes: bench/proc_deadlines */
  /* One it leaves behind writing is not waited for, and dies of SIGPIPE once we stop reading. */
  cleanup_free char *text = NULL;
  status = run_ok((const char *const[]){"sh", "-c", "yes & exit 0", NULL}, &text);
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_true(strlen(text) <= 64 * 1024);
}

static void a_missing_program_fails_with_its_name_in_the_error(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int status;
  const char *const argv[] = {"plg-no-such-program", NULL};
  if (RUNNING_ON_VALGRIND || under_qemu_user()) {
    /* valgrind and qemu-user turn glibc's CLONE_VM|CLONE_VFORK into a plain fork, so the exec
     * error the child stores in shared memory never reaches posix_spawn: all we see is its exit
     * status 127. */
    assert_int_equal(plg_proc_run(argv, 1000, NULL, &status, &err), 0);
    assert_int_equal(WEXITSTATUS(status), 127);
    return;
  }
  assert_int_equal(plg_proc_run(argv, 1000, NULL, &status, &err), -1);
  assert_non_null(strstr(err->msg, "plg-no-such-program"));
  assert_int_equal(err->errno_, ENOENT);
  plg_error_release(&err);
  assert_int_equal(plg_proc_spawn(argv, NULL, &err), -1);
  assert_non_null(strstr(err->msg, "\"plg-no-such-program\": No such file or directory"));
  plg_error_release(&err);
  assert_int_equal(plg_proc_registered(), 0);
}

static void a_child_that_outlives_its_deadline_is_killed_and_reaped(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int status;
  assert_int_equal(plg_proc_run((const char *const[]){"sleep", "30", NULL}, 200, NULL, &status, &err), -1);
  assert_string_equal(err->msg, "sleep did not finish within 200 ms");
  plg_error_release(&err);
  assert_int_equal(count_my_children(), 0);
  assert_int_equal(plg_proc_registered(), 0);
}

static void a_child_that_ignores_sigterm_is_still_killed(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int status;
  cleanup_free char *out = NULL;
  const char *const argv[] = {"sh", "-c", "trap '' TERM; sleep 30", NULL};
  assert_int_equal(plg_proc_run(argv, 200, &out, &status, &err), -1);
  assert_non_null(strstr(err->msg, "did not finish within 200 ms"));
  plg_error_release(&err);
  assert_null(out);
  assert_int_equal(count_my_children(), 0); /* the sleep too: the whole group was killed */
}

static void waiting_has_a_deadline_and_a_killed_child_is_gone(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn((const char *const[]){"sleep", "30", NULL}, NULL, &err);
  assert_true(pid > 0);
  int status;
  assert_int_equal(plg_proc_wait(pid, 100, &status, &err), -1);
  assert_non_null(strstr(err->msg, "sleep (pid"));
  assert_non_null(strstr(err->msg, "did not exit within 100 ms"));
  plg_error_release(&err);
  plg_proc_kill(pid, SIGKILL);
  assert_int_equal(plg_proc_wait(pid, 5000, &status, &err), 0);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  assert_false(process_exists(pid));
  /* The entry is consumed: a second wait fails, a late kill is a no-op. */
  assert_int_equal(plg_proc_wait(pid, 0, &status, &err), -1);
  assert_non_null(strstr(err->msg, "not a child started here"));
  plg_error_release(&err);
  plg_proc_kill(pid, SIGKILL);
  assert_int_equal(plg_proc_registered(), 0);
}

static atomic_int exit_calls;
static atomic_int exit_status_seen;
static atomic_int exit_pid_seen;

static void record_exit(void *arg, pid_t pid, int wait_status)
{
  atomic_fetch_add(&exit_calls, 1);
  atomic_store(&exit_pid_seen, (int)pid);
  atomic_store(&exit_status_seen, wait_status);
  *(int *)arg = 42;
}

static void the_exit_callback_is_called_once_with_the_status(void **state)
{
  (void)state;
  atomic_store(&exit_calls, 0);
  int arg = 0;
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.on_exit = record_exit;
  opts.on_exit_arg = &arg;
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn((const char *const[]){"sh", "-c", "exit 7", NULL}, &opts, &err);
  assert_true(pid > 0);
  int status;
  assert_int_equal(plg_proc_wait(pid, 5000, &status, &err), 0);
  /* plg_proc_wait returns only after the callback did: its state may be freed now. */
  assert_int_equal(atomic_load(&exit_calls), 1);
  assert_int_equal(atomic_load(&exit_pid_seen), pid);
  assert_int_equal(atomic_load(&exit_status_seen), status);
  assert_int_equal(WEXITSTATUS(status), 7);
  assert_int_equal(arg, 42);
  /* once the reaper has handled a later child, it is past this one: the callback ran once */
  run_ok((const char *const[]){"true", NULL}, NULL);
  assert_int_equal(atomic_load(&exit_calls), 1);
}

static void a_forgotten_child_is_freed_once_it_has_been_reaped(void **state)
{
  (void)state;
  atomic_store(&exit_calls, 0);
  int arg = 0;
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.on_exit = record_exit;
  opts.on_exit_arg = &arg;
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn((const char *const[]){"sleep", "0.1", NULL}, &opts, &err);
  assert_true(pid > 0);
  plg_proc_forget(pid);
  assert_true(eventually(registry_is_empty, 5000));
  assert_int_equal(atomic_load(&exit_calls), 1);
  assert_int_equal(WEXITSTATUS(atomic_load(&exit_status_seen)), 0);
  assert_false(process_exists(pid));
}

static void *run_distinct_exits(void *arg)
{
  int runs = under_qemu_user() ? RUNS_PER_THREAD_EMULATED : RUNS_PER_THREAD;
  int base = (int)(intptr_t)arg * runs;
  for (int i = 0; i < runs; i++) {
    int code = (base + i) % 256;
    cleanup_free char *script = xasprintf("echo %d; exit %d", code, code);
    const char *const argv[] = {"sh", "-c", script, NULL};
    char *out = NULL;
    int status = -1;
    plg_error_t err = NULL;
    /* a deadline against hangs only: valgrind on a loaded machine is slow */
    int rc = plg_proc_run(argv, 120000, &out, &status, &err);
    cleanup_free char *expected = xasprintf("%d\n", code);
    bool ok = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == code && strcmp(out, expected) == 0;
    if (!ok)
      fprintf(stderr, "run %d: rc %d status %d output %s error %s\n", code, rc, status, out ? out : "(none)",
              err ? err->msg : "(none)");
    free(out);
    plg_error_release(&err);
    if (!ok)
      return (void *)1;
  }
  return NULL;
}

static void concurrent_runs_each_get_their_own_status(void **state)
{
  (void)state;
  pthread_t threads[RUN_THREADS];
  int n = under_qemu_user() ? RUN_THREADS_EMULATED : RUN_THREADS;
  for (intptr_t t = 0; t < n; t++)
    assert_int_equal(pthread_create(&threads[t], NULL, run_distinct_exits, (void *)t), 0);
  int failures = 0;
  for (int t = 0; t < n; t++) {
    void *ret;
    pthread_join(threads[t], &ret);
    failures += ret != NULL;
  }
  assert_int_equal(failures, 0);
  assert_int_equal(plg_proc_registered(), 0);
  assert_int_equal(count_my_children(), 0);
}

static void orphans_are_reaped_without_confusing_the_registry(void **state)
{
  (void)state;
  /* As a subreaper we get the orphans of our descendants, as the plugin does as PID 1. */
  if (under_qemu_user() && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    fprintf(stderr,
            "orphans_are_reaped_without_confusing_the_registry: skipped: qemu-user refuses "
            "PR_SET_CHILD_SUBREAPER (%s), so no orphan can be made to come to this process\n",
            strerror(errno));
    skip();
  }
  assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  /* the program finished; its orphan (it sleeps 30 s) is not waited for: it still runs */
  cleanup_free char *orphan_pid = NULL;
  int status = run_ok((const char *const[]){"sh", "-c", "sleep 30 & echo $!; exit 3", NULL}, &orphan_pid);
  assert_int_equal(WEXITSTATUS(status), 3);
  pid_t orphan = (pid_t)atoi(orphan_pid);
  assert_true(orphan > 0);
  assert_int_equal(kill(orphan, 0), 0);
  kill(orphan, SIGKILL);
  assert_true(eventually(no_children_left, 5000));
  status = run_ok((const char *const[]){"sh", "-c", "sleep 0.5 & exit 3", NULL}, NULL);
  assert_int_equal(WEXITSTATUS(status), 3);
  /* The orphan exits while a registered child runs: the reaper's waitid sees it first. */
  status = run_ok((const char *const[]){"sleep", "0.8", NULL}, NULL);
  assert_int_equal(WEXITSTATUS(status), 0);
  /* And one that exits while nothing is registered: the idle sweep collects it. */
  run_ok((const char *const[]){"sh", "-c", "sleep 0.2 & exit 0", NULL}, NULL);
  assert_true(eventually(no_children_left, 5000));
  assert_int_equal(plg_proc_registered(), 0);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

static bool sigterm_blocked_in_parent(void)
{
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, NULL, &mask);
  return sigismember(&mask, SIGTERM);
}

static void a_child_starts_with_no_blocked_or_ignored_signals(void **state)
{
  (void)state;
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old);
  void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
  assert_true(sigterm_blocked_in_parent());
  cleanup_free char *out = NULL;
  run_ok((const char *const[]){"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL}, &out);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  signal(SIGPIPE, old_pipe);
  unsigned long long blocked = ~0ULL, ignored = ~0ULL;
  char *blk = strstr(out, "SigBlk:"), *ign = strstr(out, "SigIgn:");
  assert_non_null(blk);
  assert_non_null(ign);
  assert_int_equal(sscanf(blk, "SigBlk: %llx", &blocked), 1);
  assert_int_equal(sscanf(ign, "SigIgn: %llx", &ignored), 1);
  assert_int_equal(blocked, 0);
  /* Other ignored signals depend on who started the test; these two we reset. */
  assert_int_equal(ignored & (1ULL << (SIGPIPE - 1)), 0);
  assert_int_equal(ignored & (1ULL << (SIGTERM - 1)), 0);
}

static void a_child_inherits_no_descriptor_but_0_1_2(void **state)
{
  (void)state;
  int leaked = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
  assert_true(leaked >= 3);
  cleanup_free char *out = NULL;
  run_ok((const char *const[]){"ls", "/proc/self/fd", NULL}, &out);
  close(leaked);
  /* 0, 1, 2 and the directory ls reads, which takes the lowest free number: 3. */
  assert_string_equal(out, "0\n1\n2\n3\n");
}

static void descriptors_can_be_given_in_any_slot(void **state)
{
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  /* Swap the test's stdout and stderr for the child: needs the low descriptors moved first. */
  int saved_out = dup(1), saved_err = dup(2);
  dup2(fds[1], 2);
  close(fds[1]);
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stdout_fd = 2; /* the pipe */
  opts.stderr_fd = 1; /* the test's stdout */
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn((const char *const[]){"sh", "-c", "echo via-stdout", NULL}, &opts, &err);
  dup2(saved_err, 2);
  close(saved_err);
  close(saved_out);
  assert_true(pid > 0);
  int status;
  assert_int_equal(plg_proc_wait(pid, 5000, &status, &err), 0);
  char buf[64] = {0};
  assert_true(read(fds[0], buf, sizeof buf - 1) > 0);
  close(fds[0]);
  assert_string_equal(buf, "via-stdout\n");
}

static sem_t callback_may_return;
static sem_t callback_entered;

static void block_the_reaper(void *arg, pid_t pid, int wait_status)
{
  (void)arg;
  (void)pid;
  (void)wait_status;
  sem_post(&callback_entered);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  sem_timedwait(&callback_may_return, &deadline);
}

static void a_child_reaped_behind_our_back_is_reported_not_awaited_forever(void **state)
{
  (void)state;
  sem_init(&callback_may_return, 0, 0);
  sem_init(&callback_entered, 0, 0);
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.on_exit = block_the_reaper;
  plg_error_t err = NULL;
  pid_t busy = plg_proc_spawn((const char *const[]){"true", NULL}, &opts, &err);
  assert_true(busy > 0);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 30;
  assert_int_equal(sem_timedwait(&callback_entered, &deadline), 0); /* the reaper is stuck in it now */
  pid_t stolen = plg_proc_spawn((const char *const[]){"true", NULL}, NULL, &err);
  assert_true(stolen > 0);
  int status;
  assert_int_equal(waitpid(stolen, &status, 0), stolen); /* what plg_main must never do */
  sem_post(&callback_may_return);
  assert_int_equal(plg_proc_wait(busy, 5000, &status, &err), 0);
  assert_int_equal(plg_proc_wait(stolen, 5000, &status, &err), -1);
  assert_non_null(strstr(err->msg, "its exit status is lost"));
  plg_error_release(&err);
  assert_int_equal(plg_proc_registered(), 0);
  sem_destroy(&callback_may_return);
  sem_destroy(&callback_entered);
}

static void exit_statuses_are_described_for_messages(void **state)
{
  (void)state;
  const struct {
    int status;
    const char *text;
  } cases[] = {
      {0, "exited with status 0"},
      {1 << 8, "exited with status 1"},
      {SIGKILL, "killed by signal 9 (Killed)"},
      {SIGSEGV | 0x80, "killed by signal 11 (Segmentation fault), core dumped"},
      {PLG_PROC_STATUS_LOST, "exited with an unknown status (reaped elsewhere)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cleanup_free char *text = plg_proc_describe_status(cases[i].status);
    assert_string_equal(text, cases[i].text);
  }
  int status = run_ok((const char *const[]){"sh", "-c", "kill -TERM $$", NULL}, NULL);
  cleanup_free char *text = plg_proc_describe_status(status);
  assert_string_equal(text, "killed by signal 15 (Terminated)");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_exit_status_of_a_program_is_reported),
      cmocka_unit_test(stdout_and_stderr_are_both_captured),
      cmocka_unit_test(output_beyond_64_kib_is_dropped_without_blocking_the_child),
      cmocka_unit_test(an_endless_writer_is_stopped_at_the_deadline),
      cmocka_unit_test(a_missing_program_fails_with_its_name_in_the_error),
      cmocka_unit_test(a_child_that_outlives_its_deadline_is_killed_and_reaped),
      cmocka_unit_test(a_child_that_ignores_sigterm_is_still_killed),
      cmocka_unit_test(waiting_has_a_deadline_and_a_killed_child_is_gone),
      cmocka_unit_test(the_exit_callback_is_called_once_with_the_status),
      cmocka_unit_test(a_forgotten_child_is_freed_once_it_has_been_reaped),
      cmocka_unit_test(concurrent_runs_each_get_their_own_status),
      cmocka_unit_test(orphans_are_reaped_without_confusing_the_registry),
      cmocka_unit_test(a_child_starts_with_no_blocked_or_ignored_signals),
      cmocka_unit_test(a_child_inherits_no_descriptor_but_0_1_2),
      cmocka_unit_test(descriptors_can_be_given_in_any_slot),
      cmocka_unit_test(a_child_reaped_behind_our_back_is_reported_not_awaited_forever),
      cmocka_unit_test(exit_statuses_are_described_for_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
