/* telemount's sshfs mounts, against a real sshfs and a real sftp-server on a socketpair (no
 * network). Needs root, /dev/fuse and sshfs (CI has them); skipped otherwise, and under emulation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "test_http.h"
#include "tm_config.h"
#include "tm_mountinfo.h"
#include "tm_mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SFTP_SERVER "/usr/lib/openssh/sftp-server"

static bool can_mount(void)
{
  return geteuid() == 0 && getenv("PLG_TEST_EMULATOR") == NULL && access("/dev/fuse", R_OK | W_OK) == 0 &&
         access(SFTP_SERVER, X_OK) == 0 && access("/usr/bin/sshfs", X_OK) == 0;
}

static pid_t spawn_on(int fd, const char *const argv[])
{
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 0);
    dup2(fd, 1);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* An sshfs mount of REMOTE on MNT, as an earlier run of the plugin would have left it. */
static void mount_by_hand(const char *remote, const char *mnt, pid_t *server, pid_t *sshfs)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const char *const server_argv[] = {SFTP_SERVER, NULL};
  *server = spawn_on(sv[1], server_argv);
  cleanup_free char *what = xasprintf("localhost:%s", remote);
  const char *const sshfs_argv[] = {"/usr/bin/sshfs", "-f", "-o", "slave", what, mnt, NULL};
  *sshfs = spawn_on(sv[0], sshfs_argv);
  close(sv[0]);
  close(sv[1]);
  /* the kernel signals each change of the mount table (POLLPRI on mountinfo) */
  int mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  for (int i = 0; i < 100 && !tm_is_mounted(mnt, NULL, 0); i++) {
    struct pollfd p = {.fd = mi, .events = POLLPRI};
    poll(&p, 1, 100);
  }
  close(mi);
  assert_true(tm_is_mounted(mnt, NULL, 0));
}

static void stale_mounts_are_gone_before_the_plugin_can_take_requests(void **state)
{
  (void)state;
  if (!can_mount())
    skip();
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *remote = xasprintf("%s/remote", dir);
  cleanup_free char *root = xasprintf("%s/mnt", dir);
  cleanup_free char *stale = xasprintf("%s/127.0.0.1/34439", root);
  mkdir(remote, 0700);
  cleanup_free char *mk = xasprintf("%s/127.0.0.1", root);
  mkdir(root, 0700);
  mkdir(mk, 0700);
  mkdir(stale, 0700);
  pid_t server, sshfs;
  mount_by_hand(remote, stale, &server, &sshfs);

  struct tm_config cfg = {.mount_root = root,
                          .sshfs = "sshfs",
                          .linger_ms = 5000,
                          .ping_timeout_ms = 1000,
                          .connect_timeout_ms = 5000,
                          .mount_timeout_ms = 20000,
                          .health_interval_ms = 5000,
                          .health_timeout_ms = 5000,
                          .max_conns = 1};
  struct tm_mounts *m = tm_mounts_new(&cfg);
  /* the socket listens right after this returns: the stale mount must already be gone */
  bool still = tm_is_mounted(stale, NULL, 0);
  tm_mounts_free(m);
  assert_false(still);

  kill(sshfs, SIGTERM);
  kill(server, SIGTERM);
  waitpid(sshfs, NULL, 0);
  waitpid(server, NULL, 0);
  assert_int_equal(test_rmtree(dir), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(stale_mounts_are_gone_before_the_plugin_can_take_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
