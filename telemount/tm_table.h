/* The volume table: what users created, with the mount IDs Docker holds on each volume, and its
 * persistence. Docker forgets a volume the moment its plugin does, so this table is saved on every
 * change and never loses an entry it cannot read: a damaged file is moved aside, not ignored, and
 * a file that cannot be read now stops the plugin from starting. */
#ifndef TM_TABLE_H
#define TM_TABLE_H

#include "plg_error.h"
#include "tm_options.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct tm_volume {
  char *name;
  struct tm_opts opts;
  char *created_at; /* RFC 3339, UTC */
  char **ids;       /* Mount IDs not yet unmounted (a set) */
  size_t n_ids;
  /* The first n_earlier IDs were loaded from the state file: mounts made through an earlier run of
   * the plugin, whose sshfs ended with that run (a reboot, a crash of dockerd or of the plugin, a
   * `disable -f`). A container may still hold one, but only as a dead mount that no reconnect can
   * revive, and Docker never unmounts those it lost. They are kept for Unmount and inspect, and do
   * not hold the volume (tm_volume_held). */
  size_t n_earlier;
};

struct tm_table {
  struct tm_volume **vols;
  size_t n;
  size_t cap;
};

void tm_table_init(struct tm_table *t);
void tm_table_clear(struct tm_table *t);

struct tm_volume *tm_table_find(const struct tm_table *t, const char *name);
/* Takes ownership of a copy of OPTS; CREATED_AT NULL means now. */
struct tm_volume *tm_table_add(struct tm_table *t, const char *name, const struct tm_opts *opts,
                               const char *created_at);
void tm_table_remove(struct tm_table *t, const char *name);
/* Takes NAME out of the table without freeing it (NULL when absent), so that a failed save can
 * put it back with tm_table_put; tm_volume_free frees it for good. */
struct tm_volume *tm_table_take(struct tm_table *t, const char *name);
void tm_table_put(struct tm_table *t, struct tm_volume *v);
void tm_volume_free(struct tm_volume *v);

/* Set semantics: adding a present ID or removing an absent one changes nothing (except that an
 * earlier-run ID mounted again now counts as this run's). */
bool tm_volume_add_id(struct tm_volume *v, const char *id);
bool tm_volume_remove_id(struct tm_volume *v, const char *id);
/* How many mounts made through this run of the plugin Docker has not unmounted. */
size_t tm_volume_held(const struct tm_volume *v);

json_t *tm_table_to_json(const struct tm_table *t);
/* Takes the entries of a decoded state file (plg_state) into T, each checked as a Create would
 * check it; an invalid one is skipped and logged. Returns how many were taken. */
size_t tm_table_from_state(json_t *state, struct tm_table *t);

/* The table is saved on every change, atomically; a table the loader would refuse is never
 * written (plg_state). */
int tm_table_save(const struct tm_table *t, const char *path, plg_error_t *err);
/* A missing file is an empty table. A damaged one is moved aside to "<path>.corrupt-<time>",
 * logged, and the table starts empty. An entry that fails the checks of a Create (a hand-edited
 * file cannot smuggle in what Create would refuse) is skipped and logged; the others are kept.
 * -1 when the file cannot be read now (EIO, EACCES...): it is left untouched, and the plugin must
 * not start, or its next save would overwrite every volume. */
int tm_table_load(struct tm_table *t, const char *path, plg_error_t *err);

#endif
