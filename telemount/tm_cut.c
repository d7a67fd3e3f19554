#include "tm_cut.h"

#include "plg_util.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static bool is_socket_link(int dirfd, const char *name)
{
  char target[64];
  ssize_t n = readlinkat(dirfd, name, target, sizeof target - 1);
  if (n < 0)
    return false;
  target[n] = '\0';
  return strncmp(target, "socket:[", 8) == 0;
}

/* 1 when FD (our duplicate) is a TCP socket and was shut down, 0 when it is another socket. */
static int cut_if_tcp(int fd)
{
  int proto = 0;
  socklen_t len = sizeof proto;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0 || proto != IPPROTO_TCP)
    return 0;
  shutdown(fd, SHUT_RDWR);
  return 1;
}

int tm_cut_tcp(pid_t pid, plg_error_t *err)
{
  cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0)
    return plg_error_make(err, errno, "cannot open a pidfd for process %d", (int)pid);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return plg_error_make(err, errno, "cannot list %s", path);
  int cut = 0, rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    char *end;
    long target = strtol(de->d_name, &end, 10);
    if (*end != '\0' || end == de->d_name || !is_socket_link(dirfd(d), de->d_name))
      continue;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)target, 0);
    if (fd < 0 && errno == EBADF)
      continue; /* closed meanwhile */
    if (fd < 0) {
      rc = plg_error_make(err, errno, "cannot take a duplicate of socket %ld of process %d (pidfd_getfd)",
                          target, (int)pid);
      break;
    }
    cut += cut_if_tcp(fd);
    close(fd);
  }
  closedir(d);
  return rc < 0 ? -1 : cut;
}
