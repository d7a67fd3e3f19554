/* libFuzzer: arbitrary bytes as a state file. Decoding never crashes and gives a reason for each
 * refusal; what it accepts is an object with the expected version whose lists are arrays; the
 * per-entry walk keeps at most every entry; and an accepted state round-trips through encode and
 * decode unchanged, or is refused by encode for its size, never written in a form that loading
 * would refuse. */
#include "plg_json.h"
#include "plg_log.h"
#include "plg_state.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const lists[] = {"volumes", "networks", "endpoints", NULL};
/* a small limit, so that inputs near it are reachable */
static const struct plg_state_format fmt = {"fuzzed table", 1, lists, 64 * 1024};

/* Takes entries with a string "name", as a plugin's validation would. */
static int take_named(json_t *entry, void *arg, plg_error_t *err)
{
  const char *name;
  if (plg_json_string(entry, "name", true, &name, err) < 0)
    return -1;
  (*(size_t *)arg)++;
  return 0;
}

static void check_lists(json_t *state)
{
  for (const char *const *key = lists; *key != NULL; key++) {
    json_t *list = json_object_get(state, *key);
    if (list != NULL && !json_is_array(list))
      abort();
    size_t taken = 0;
    size_t kept = plg_state_each(&fmt, state, *key, take_named, &taken);
    if (kept != taken || kept > json_array_size(list))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int initialised;
  if (!initialised) {
    plg_log_init("fuzz");
    initialised = 1;
  }
  json_t *state = NULL;
  plg_error_t err = NULL;
  if (plg_state_decode(&fmt, (const char *)data, size, &state, &err) < 0) {
    if (state != NULL || err == NULL || err->msg == NULL || err->msg[0] == '\0')
      abort();
    plg_error_release(&err);
    return 0;
  }
  json_t *version = json_object_get(state, "version");
  if (!json_is_object(state) || !json_is_integer(version) || json_integer_value(version) != fmt.version)
    abort();
  check_lists(state);

  char *text = NULL;
  size_t len = 0;
  if (plg_state_encode(&fmt, state, &text, &len, &err) < 0) {
    if (err->errno_ == 0) /* only its size may stop a decoded state from being encoded */
      abort();
    plg_error_release(&err);
  } else {
    json_t *back = NULL;
    if (len > 64 * 1024 || plg_state_decode(&fmt, text, len, &back, &err) < 0 || !json_equal(state, back))
      abort();
    json_decref(back);
    free(text);
  }
  json_decref(state);
  return 0;
}
