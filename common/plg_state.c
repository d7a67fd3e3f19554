#include "plg_state.h"

#include "plg_fs.h"
#include "plg_json.h"
#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Numbered names tried after <path>.corrupt-<time> when files damaged in the same second pile up. */
#define ASIDE_TRIES 100

static size_t max_bytes(const struct plg_state_format *fmt)
{
  return fmt->max_bytes > 0 ? fmt->max_bytes : PLG_STATE_MAX_BYTES;
}

int plg_state_decode(const struct plg_state_format *fmt, const char *text, size_t len, json_t **state,
                     plg_error_t *err)
{
  if (len > max_bytes(fmt))
    return plg_error_make(err, EFBIG, "%zu bytes, more than the %zu a state file may hold", len,
                          max_bytes(fmt));
  json_error_t jerr;
  cleanup_json json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (j == NULL)
    return plg_error_make(err, 0, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
  if (!json_is_object(j))
    return plg_error_make(err, 0, "not an object");
  json_t *version = json_object_get(j, "version");
  if (!json_is_integer(version))
    return plg_error_make(err, 0, "no version number");
  if (json_integer_value(version) != fmt->version)
    return plg_error_make(err, 0, "version %lld, expected %d", (long long)json_integer_value(version),
                          fmt->version);
  for (const char *const *key = fmt->lists; key != NULL && *key != NULL; key++) {
    json_t *list = json_object_get(j, *key);
    if (list != NULL && !json_is_array(list))
      return plg_error_make(err, 0, "\"%s\" is %s, not an array", *key, plg_json_kind(list));
  }
  *state = j;
  j = NULL;
  return 0;
}

int plg_state_encode(const struct plg_state_format *fmt, json_t *state, char **text, size_t *len,
                     plg_error_t *err)
{
  json_object_set_new(state, "version", json_integer(fmt->version));
  char *out = json_dumps(state, JSON_INDENT(1) | JSON_SORT_KEYS);
  if (out == NULL)
    return plg_error_make(err, 0, "cannot encode the %s", fmt->what);
  size_t n = strlen(out);
  if (n > max_bytes(fmt)) {
    free(out);
    return plg_error_make(err, EFBIG, "the %s would take %zu bytes, more than the %zu a state file may hold",
                          fmt->what, n, max_bytes(fmt));
  }
  *text = out;
  *len = n;
  return 0;
}

int plg_state_save(const struct plg_state_format *fmt, const char *path, json_t *state, plg_error_t *err)
{
  cleanup_free char *text = NULL;
  size_t len;
  if (plg_state_encode(fmt, state, &text, &len, err) < 0)
    return plg_error_wrap(err, "not saved to %s", path);
  cleanup_free char *dir = plg_fs_dirname(path);
  if (plg_fs_mkdir_p(dir, 0700, err) < 0 || plg_fs_write_atomic(path, text, len, 0600, err) < 0)
    return plg_error_wrap(err, "cannot save the %s", fmt->what);
  return 0;
}

/* Renames PATH to <path>.corrupt-<time>, or a numbered variant, never replacing an earlier one. */
static int move_aside(const char *path, char **aside, plg_error_t *err)
{
  long now = (long)time(NULL);
  for (int i = 0; i < ASIDE_TRIES; i++) {
    char *name =
        i == 0 ? xasprintf("%s.corrupt-%ld", path, now) : xasprintf("%s.corrupt-%ld-%d", path, now, i);
    int rc = renameat2(AT_FDCWD, path, AT_FDCWD, name, RENAME_NOREPLACE);
    if (rc < 0 && errno == EINVAL) { /* a file system without RENAME_NOREPLACE: check, then rename */
      struct stat st;
      if (lstat(name, &st) == 0)
        errno = EEXIST;
      else
        rc = rename(path, name);
    }
    if (rc == 0) {
      *aside = name;
      return 0;
    }
    int saved = errno;
    free(name);
    if (saved != EEXIST)
      return plg_error_make(err, saved, "cannot move \"%s\" aside", path);
  }
  return plg_error_make(err, EEXIST, "cannot move \"%s\" aside: too many damaged copies", path);
}

/* A read that failed because of the file itself (too large), not because of the moment. */
static bool is_damage(const plg_error_t e)
{
  return e->errno_ == EFBIG;
}

int plg_state_load(const struct plg_state_format *fmt, const char *path, json_t **state, plg_error_t *err)
{
  *state = NULL;
  cleanup_free char *text = NULL;
  size_t len = 0;
  cleanup_error plg_error_t damage = NULL;
  int leftovers = plg_fs_remove_temporaries(path);
  if (leftovers > 0)
    plg_info("removed %d unfinished temporary copies of %s left by an earlier crash", leftovers, path);
  if (plg_fs_read_file(path, max_bytes(fmt), &text, &len, &damage) < 0) {
    if (damage->errno_ == ENOENT)
      return 0;
    if (!is_damage(damage)) {
      *err = damage;
      damage = NULL;
      return plg_error_wrap(err, "cannot read the %s (left in place)", fmt->what);
    }
  } else if (plg_state_decode(fmt, text, len, state, &damage) == 0) {
    return 0;
  }
  cleanup_free char *aside = NULL;
  if (move_aside(path, &aside, err) < 0)
    return plg_error_wrap(err, "the %s is damaged (%s)", fmt->what, damage->msg);
  plg_error("the %s %s is damaged (%s); moved it to %s and starting without it", fmt->what, path, damage->msg,
            aside);
  return 0;
}

size_t plg_state_each(const struct plg_state_format *fmt, json_t *state, const char *list,
                      plg_state_entry_fn fn, void *arg)
{
  json_t *entries = state != NULL ? json_object_get(state, list) : NULL;
  size_t kept = 0, i;
  json_t *entry;
  json_array_foreach(entries, i, entry)
  {
    plg_error_t err = NULL;
    if (!json_is_object(entry))
      plg_error_make(&err, 0, "%s, not an object", plg_json_kind(entry));
    else if (fn(entry, arg, &err) == 0) {
      kept++;
      continue;
    }
    plg_warn("%s: skipped %s[%zu]: %s", fmt->what, list, i,
             err != NULL ? err->msg : "refused without a reason");
    plg_error_release(&err);
  }
  return kept;
}
