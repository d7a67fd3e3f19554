/* libFuzzer: arbitrary bytes as teleroute's state file. What the loader takes must save, under the
 * one size limit, to a file that loads again to the same table. */
#include "plg_util.h"
#include "plg_state.h"
#include "tr_table.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *dump(const struct tr_table *t)
{
  json_t *j = tr_table_to_json(t);
  char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
  json_decref(j);
  if (text == NULL)
    abort();
  return text;
}

static const char *const lists[] = {"networks", "endpoints", NULL};
static const struct plg_state_format format = {"network table", 1, lists, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *state = NULL;
  plg_error_t err = NULL;
  if (plg_state_decode(&format, (const char *)data, size, &state, &err) < 0) {
    plg_error_release(&err);
    return 0;
  }
  /* whatever entries pass their checks are taken whole; what is taken saves and loads again to
   * the same table (an invalid entry never comes back as a valid one) */
  struct tr_table t = {0};
  size_t taken = tr_table_from_state(state, &t);
  char *first = dump(&t);
  if (strlen(first) > TR_STATE_MAX_BYTES)
    abort(); /* a file under the limit loaded: what it saves stays under it (inputs are small) */
  json_t *again = NULL;
  if (plg_state_decode(&format, first, strlen(first), &again, &err) < 0)
    abort(); /* a saved table must decode */
  struct tr_table u = {0};
  if (tr_table_from_state(again, &u) != taken)
    abort(); /* and every entry of it load */
  char *second = dump(&u);
  if (strcmp(first, second) != 0)
    abort();
  free(second);
  free(first);
  json_decref(again);
  json_decref(state);
  tr_table_clear(&u);
  tr_table_clear(&t);
  return 0;
}
