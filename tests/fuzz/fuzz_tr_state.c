/* libFuzzer: arbitrary bytes as teleroute's state file. A table the loader takes must save, under
 * the one size limit, to a file that loads again to the same table; a file it refuses leaves the
 * table empty. */
#include "plg_util.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (j == NULL)
    return 0;
  struct tr_table t = {0};
  plg_error_t err = NULL;
  if (tr_table_from_json(j, &t, &err) < 0) {
    if (t.networks != NULL || t.endpoints != NULL)
      abort(); /* never half-loaded */
  } else {
    char *first = dump(&t);
    if (strlen(first) > TR_STATE_MAX_BYTES)
      abort(); /* a file under the limit loaded: what it saves stays under it (inputs are small) */
    json_t *again = json_loads(first, JSON_REJECT_DUPLICATES, NULL);
    struct tr_table u = {0};
    plg_error_t err2 = NULL;
    if (again == NULL || tr_table_from_json(again, &u, &err2) < 0)
      abort(); /* a saved table must load */
    char *second = dump(&u);
    if (strcmp(first, second) != 0)
      abort();
    free(second);
    free(first);
    json_decref(again);
    tr_table_clear(&u);
  }
  plg_error_release(&err);
  tr_table_clear(&t);
  json_decref(j);
  return 0;
}
