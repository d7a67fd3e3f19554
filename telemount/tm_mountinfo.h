/* The kernel's mount table (/proc/self/mountinfo): whether a path is a mount point right now,
 * read without touching the mounted file system (a frozen FUSE server would block a stat). */
#ifndef TM_MOUNTINFO_H
#define TM_MOUNTINFO_H

#include <stdbool.h>
#include <stddef.h>

/* Looks PATH up in TEXT (mountinfo format); copies its fstype into FSTYPE when found. */
bool tm_mountinfo_find(const char *text, const char *path, char *fstype, size_t fstype_size);

/* The same against /proc/self/mountinfo. */
bool tm_is_mounted(const char *path, char *fstype, size_t fstype_size);

/* The device ("major:minor") of the mount on PATH in TEXT, or in /proc/self/mountinfo. */
bool tm_mountinfo_device(const char *text, const char *path, char *dev, size_t dev_size);
bool tm_mount_device(const char *path, char *dev, size_t dev_size);

/* Mount points in TEXT strictly below PREFIX with FSTYPE, deepest first; a NULL-terminated
 * array the caller frees with plg_strv_free. */
char **tm_mountinfo_below(const char *text, const char *prefix, const char *fstype);
char **tm_mountinfo_list_below(const char *prefix, const char *fstype);

#endif
