/* File-system helpers shared by both plugins: directories, and state files written atomically. */
#ifndef PLG_FS_H
#define PLG_FS_H

#include "plg_error.h"

#include <stddef.h>
#include <sys/types.h>

/* The directory part of PATH ("." when it has none); the caller frees it. */
char *plg_fs_dirname(const char *path);

/* mkdir -p: creates PATH and its missing parents with MODE; existing directories are fine. */
int plg_fs_mkdir_p(const char *path, mode_t mode, plg_error_t *err);

/* Writes all LEN bytes to FD (restarting after a signal); -1 with errno on a failed write. */
int plg_fs_write_all(int fd, const void *data, size_t len);

/* Replaces PATH with DATA so that a crash leaves either the old or the new content, never a
 * torn file: write a temporary sibling (a unique name, created with O_EXCL|O_NOFOLLOW), fsync
 * it, rename it over PATH, fsync the directory. Concurrent writers never share a temporary. */
int plg_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, plg_error_t *err);

/* Removes the temporaries of PATH that a writer killed between creating and renaming them left
 * behind (plain files named "<path>.tmp-..."). Only for a moment when nobody writes PATH, such as
 * a plugin's start. Returns how many it removed. */
int plg_fs_remove_temporaries(const char *path);

/* Reads a whole file of at most MAX bytes into a NUL-terminated buffer the caller frees.
 * Returns -1 with errno ENOENT in the error when the file does not exist. */
int plg_fs_read_file(const char *path, size_t max, char **data, size_t *len, plg_error_t *err);

#endif
