#include "plg_fs.h"

#include "plg_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

char *plg_fs_dirname(const char *path)
{
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    return xstrdup(".");
  if (slash == path)
    return xstrdup("/");
  return xstrndup(path, (size_t)(slash - path));
}

int plg_fs_mkdir_p(const char *path, mode_t mode, plg_error_t *err)
{
  cleanup_free char *copy = xstrdup(path);
  for (char *p = copy + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(copy, mode) < 0 && errno != EEXIST)
      return plg_error_make(err, errno, "cannot create directory \"%s\"", copy);
    *p = '/';
  }
  if (mkdir(copy, mode) < 0 && errno != EEXIST)
    return plg_error_make(err, errno, "cannot create directory \"%s\"", copy);
  struct stat st;
  if (stat(copy, &st) < 0)
    return plg_error_make(err, errno, "cannot stat \"%s\"", copy);
  if (!S_ISDIR(st.st_mode))
    return plg_error_make(err, ENOTDIR, "\"%s\" exists and is not a directory", copy);
  return 0;
}

int plg_fs_write_all(int fd, const void *buf, size_t len)
{
  const char *data = buf;
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int fsync_dir(const char *path, plg_error_t *err)
{
  cleanup_free char *dir = plg_fs_dirname(path);
  cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0)
    return plg_error_make(err, errno, "cannot sync directory \"%s\"", dir);
  return 0;
}

/* What follows PATH in the name of its temporaries: "<path>.tmp-<pid>-<n>-<random>". */
#define TEMPORARY_INFIX ".tmp-"

/* Creates a temporary sibling of PATH under a name nobody can predict, exclusively and without
 * following a link planted there: in a directory someone else can write to, a predictable name
 * would let them point it at a file of ours. */
static int create_temporary(const char *path, mode_t mode, char **tmp, plg_error_t *err)
{
  static atomic_uint counter;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint64_t nonce;
    if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != sizeof nonce)
      nonce = (uint64_t)plg_now_ms() * 2654435761u ^ (uint64_t)getpid() << 32;
    char *name = xasprintf("%s" TEMPORARY_INFIX "%ld-%u-%016llx", path, (long)getpid(),
                           atomic_fetch_add(&counter, 1), (unsigned long long)nonce);
    int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) {
      *tmp = name;
      return fd;
    }
    int saved = errno;
    if (saved != EEXIST) {
      plg_error_make(err, saved, "cannot create \"%s\"", name);
      free(name);
      return -1;
    }
    free(name);
  }
  return plg_error_make(err, EEXIST, "cannot create a temporary file next to \"%s\"", path);
}

int plg_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, plg_error_t *err)
{
  cleanup_free char *tmp = NULL;
  int fd = create_temporary(path, mode, &tmp, err);
  if (fd < 0)
    return -1;
  if (plg_fs_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
    int saved = errno;
    close(fd);
    unlink(tmp);
    return plg_error_make(err, saved, "cannot write \"%s\"", tmp);
  }
  if (close(fd) < 0) {
    int saved = errno;
    unlink(tmp);
    return plg_error_make(err, saved, "cannot write \"%s\"", tmp);
  }
  if (rename(tmp, path) < 0) {
    int saved = errno;
    unlink(tmp);
    return plg_error_make(err, saved, "cannot replace \"%s\"", path);
  }
  return fsync_dir(path, err);
}

int plg_fs_remove_temporaries(const char *path)
{
  cleanup_free char *dir = plg_fs_dirname(path);
  const char *slash = strrchr(path, '/');
  cleanup_free char *prefix = xasprintf("%s" TEMPORARY_INFIX, slash != NULL ? slash + 1 : path);
  size_t prefix_len = strlen(prefix);
  DIR *d = opendir(dir);
  if (d == NULL)
    return 0;
  int removed = 0;
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
    struct stat st;
    /* Only plain files: a directory or link of that name is not ours to judge. */
    if (strncmp(e->d_name, prefix, prefix_len) == 0 &&
        fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        unlinkat(dirfd(d), e->d_name, 0) == 0)
      removed++;
  }
  closedir(d);
  return removed;
}

int plg_fs_read_file(const char *path, size_t max, char **data, size_t *len, plg_error_t *err)
{
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return plg_error_make(err, errno, "cannot open \"%s\"", path);
  size_t cap = 4096, used = 0;
  cleanup_free char *buf = xmalloc(cap + 1);
  for (;;) {
    if (used > max)
      return plg_error_make(err, EFBIG, "\"%s\" is larger than %zu bytes", path, max);
    if (used == cap) {
      /* one byte past MAX tells a file of exactly MAX bytes from a larger one */
      cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      buf = xrealloc(buf, cap + 1);
    }
    ssize_t n = read(fd, buf + used, cap - used);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return plg_error_make(err, errno, "cannot read \"%s\"", path);
    if (n == 0)
      break;
    used += (size_t)n;
  }
  if (used > max)
    return plg_error_make(err, EFBIG, "\"%s\" is larger than %zu bytes", path, max);
  buf[used] = '\0';
  *data = buf;
  buf = NULL;
  if (len != NULL)
    *len = used;
  return 0;
}
