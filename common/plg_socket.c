#include "plg_socket.h"

#include "plg_fs.h"
#include "plg_util.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int socket_address(const char *path, struct sockaddr_un *addr, plg_error_t *err)
{
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr->sun_path)
    return plg_error_make(err, 0, "socket path \"%s\" is longer than %zu bytes", path,
                          sizeof addr->sun_path - 1);
  strcpy(addr->sun_path, path);
  return 0;
}

static bool socket_is_live(const struct sockaddr_un *addr)
{
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return false;
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
    return true;
  return errno == EAGAIN; /* backlog full: somebody is listening */
}

static int remove_stale(const char *path, const struct sockaddr_un *addr, plg_error_t *err)
{
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return plg_error_make(err, errno, "cannot inspect socket path \"%s\"", path);
  }
  if (!S_ISSOCK(st.st_mode))
    return plg_error_make(err, 0, "\"%s\" exists and is not a socket; not replacing it", path);
  if (socket_is_live(addr))
    return plg_error_make(err, 0, "another process is already serving \"%s\"", path);
  if (unlink(path) < 0 && errno != ENOENT)
    return plg_error_make(err, errno, "cannot remove stale socket \"%s\"", path);
  return 0;
}

int plg_socket_listen(const char *path, plg_error_t *err)
{
  struct sockaddr_un addr;
  if (socket_address(path, &addr, err) < 0)
    return -1;
  cleanup_free char *dir = plg_fs_dirname(path);
  if (plg_fs_mkdir_p(dir, 0755, err) < 0)
    return plg_error_wrap(err, "socket directory");
  if (remove_stale(path, &addr, err) < 0)
    return -1;

  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return plg_error_make(err, errno, "cannot create a Unix socket");
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    return plg_error_make(err, errno, "cannot bind \"%s\"", path);
  if (chmod(path, 0660) < 0 || listen(fd, 128) < 0) {
    int saved = errno;
    unlink(path);
    return plg_error_make(err, saved, "cannot listen on \"%s\"", path);
  }
  int ret = fd;
  fd = -1;
  return ret;
}
