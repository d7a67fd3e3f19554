/* libFuzzer: arbitrary bytes as telemount's volume table. Every volume the loader takes passed
 * the checks of a Create (its paths stay inside the export); what it takes saves under the size
 * limit and loads again to the same table. */
#include "plg_state.h"
#include "plg_util.h"
#include "tm_options.h"
#include "tm_table.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const lists[] = {"volumes", NULL};
static const struct plg_state_format format = {"volume table", 1, lists, 0};

static char *dump(const struct tm_table *t)
{
  json_t *j = tm_table_to_json(t);
  char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
  json_decref(j);
  if (text == NULL)
    abort();
  return text;
}

static void check_contained(const struct tm_table *t)
{
  for (size_t i = 0; i < t->n; i++) {
    char *remote = tm_remote_dir(&t->vols[i]->opts);
    if (strncmp(remote, TM_EXPORT_ROOT "/", strlen(TM_EXPORT_ROOT) + 1) != 0 ||
        strstr(remote, "/../") != NULL || t->vols[i]->opts.host[0] == '-')
      abort();
    free(remote);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *state = NULL;
  plg_error_t err = NULL;
  if (plg_state_decode(&format, (const char *)data, size, &state, &err) < 0) {
    plg_error_release(&err);
    return 0;
  }
  struct tm_table t;
  tm_table_init(&t);
  size_t taken = tm_table_from_state(state, &t);
  check_contained(&t);
  char *first = dump(&t);
  if (strlen(first) > PLG_STATE_MAX_BYTES)
    abort();
  json_t *again = NULL;
  if (plg_state_decode(&format, first, strlen(first), &again, &err) < 0)
    abort(); /* a saved table must decode */
  struct tm_table u;
  tm_table_init(&u);
  if (tm_table_from_state(again, &u) != taken)
    abort(); /* and every volume of it load */
  char *second = dump(&u);
  if (strcmp(first, second) != 0)
    abort();
  free(second);
  free(first);
  json_decref(again);
  json_decref(state);
  tm_table_clear(&u);
  tm_table_clear(&t);
  return 0;
}
