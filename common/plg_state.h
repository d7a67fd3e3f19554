/* State files, written once for both plugins: a table kept as one JSON object
 * {"version": N, "<list>": [entry, ...], ...}, saved atomically and loaded at start.
 *
 * One size limit binds saving and loading: a state that could not be loaded is never written
 * (the save fails and says why). Loading tells three cases apart:
 * - no file: an empty state;
 * - a file that cannot be read now (EIO, EACCES, ENOMEM, ...): an error for the caller, and the
 *   file stays where it is; a plugin should then refuse to start rather than run empty and
 *   overwrite it at its next save;
 * - a damaged file (not JSON, not an object, no or another version, too large, a list that is
 *   not an array): moved aside to <path>.corrupt-<unix time>, logged, and loaded as empty.
 * Entries are the plugin's to check, one at a time (plg_state_each): an invalid entry is
 * skipped and logged, and the others are kept. */
#ifndef PLG_STATE_H
#define PLG_STATE_H

#include "plg_error.h"

#include <jansson.h>
#include <stddef.h>

#define PLG_STATE_MAX_BYTES (16 * 1024 * 1024)

struct plg_state_format {
  const char *what;         /* "volume table": names the file in messages */
  int version;              /* the "version" the file carries */
  const char *const *lists; /* NULL-terminated: top-level keys that hold arrays; may be NULL */
  size_t max_bytes;         /* 0 = PLG_STATE_MAX_BYTES; tests use less */
};

/* Parses TEXT (LEN bytes) into *STATE (a new reference). Returns -1 and why when it is damaged;
 * an absent list reads as empty. Pure: the fuzzer calls it. */
int plg_state_decode(const struct plg_state_format *fmt, const char *text, size_t len, json_t **state,
                     plg_error_t *err);

/* Sets STATE's "version" to FMT's and encodes it into *TEXT (malloc'd, *LEN bytes). Returns -1
 * when the encoding would exceed the size limit, naming both sizes. */
int plg_state_encode(const struct plg_state_format *fmt, json_t *state, char **text, size_t *len,
                     plg_error_t *err);

/* plg_state_encode, then an atomic write of PATH (0600; its directory is created 0700). */
int plg_state_save(const struct plg_state_format *fmt, const char *path, json_t *state, plg_error_t *err);

/* Loads PATH into *STATE: the object, or NULL when the file does not exist or was damaged (then
 * it has been moved aside and logged). First removes the temporaries of an earlier save that a
 * crash interrupted (plg_fs_remove_temporaries): load runs once, before anything saves.
 * Returns -1 when the file cannot be read now, or a damaged file cannot be moved aside: the file
 * is left untouched. */
int plg_state_load(const struct plg_state_format *fmt, const char *path, json_t **state, plg_error_t *err);

/* Checks one entry and takes it into the plugin's table; -1 with *ERR refuses it. */
typedef int (*plg_state_entry_fn)(json_t *entry, void *arg, plg_error_t *err);

/* Calls FN for each entry of STATE's list LIST (STATE may be NULL). An entry that is not an
 * object, or that FN refuses, is logged with its place and reason and skipped. Returns how many
 * FN accepted. */
size_t plg_state_each(const struct plg_state_format *fmt, json_t *state, const char *list,
                      plg_state_entry_fn fn, void *arg);

#endif
