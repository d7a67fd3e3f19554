#include "tm_readahead.h"

#include "plg_util.h"
#include "tm_mountinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* "major:minor" as the kernel prints it: the only text that goes into the sysfs path. */
static bool is_device(const char *dev)
{
  size_t major = strspn(dev, "0123456789");
  return major > 0 && dev[major] == ':' && dev[major + 1] != '\0' &&
         strspn(dev + major + 1, "0123456789") == strlen(dev + major + 1);
}

/* Returns 0 or -errno. */
static int write_knob(const char *dev, int kb)
{
  char path[96], value[16];
  snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
  int n = snprintf(value, sizeof value, "%d\n", kb);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = write(fd, value, (size_t)n) == n ? 0 : -errno;
  close(fd);
  return rc;
}

struct private_write {
  const char *dev;
  int kb;
  int rc;
  const char *step;
};

/* unshare(CLONE_NEWNS) on a thread gives that thread alone a copy of the mount table: making its
 * copy of /sys writable (read-only is a flag of the mount, not of sysfs) is seen by no one else,
 * and the copy goes away when the thread ends. */
static void *write_in_private_sysfs(void *arg)
{
  struct private_write *w = arg;
  w->step = "unshare the mount namespace";
  if (unshare(CLONE_NEWNS) < 0) {
    w->rc = -errno;
    return NULL;
  }
  w->step = "make the private mount table private";
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
    w->rc = -errno;
    return NULL;
  }
  w->step = "make a private /sys writable";
  if (mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
    w->rc = -errno;
    return NULL;
  }
  w->step = "write read_ahead_kb";
  w->rc = write_knob(w->dev, w->kb);
  return NULL;
}

int tm_readahead_set(const char *mountpoint, int kb, plg_error_t *err)
{
  char dev[32];
  if (!tm_mount_device(mountpoint, dev, sizeof dev) || !is_device(dev))
    return plg_error_make(err, 0, "%s is not a mount point", mountpoint);
  int rc = write_knob(dev, kb);
  if (rc == -EROFS || rc == -EACCES) {
    struct private_write w = {dev, kb, 0, ""};
    pthread_t t;
    if ((rc = pthread_create(&t, NULL, write_in_private_sysfs, &w)) != 0)
      return plg_error_make(err, rc, "cannot start a thread to set the readahead of %s", mountpoint);
    pthread_join(t, NULL);
    if (w.rc < 0)
      return plg_error_make(err, -w.rc, "cannot %s for /sys/class/bdi/%s (the readahead of %s)", w.step, dev,
                            mountpoint);
    return 0;
  }
  if (rc < 0)
    return plg_error_make(err, -rc, "cannot write /sys/class/bdi/%s/read_ahead_kb (the readahead of %s)", dev,
                          mountpoint);
  return 0;
}
