/* libFuzzer: arbitrary bytes from the daemon, as gRPC DATA in arbitrary pieces and as the
 * messages inside them (JoinResponse), down to Docker's Join reply. */
#include "tr_grpc_frame.h"
#include "tr_join.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

static void join_reply(const uint8_t *msg, size_t len)
{
  struct tr_join j;
  plg_error_t err = NULL;
  if (tr_join_decode(msg, len, &j, &err) == 0) {
    struct tr_prefix pool;
    tr_prefix_parse("172.30.0.0/16", &pool, &err);
    struct tr_route *routes = calloc(j.n_routes + 1, sizeof *routes);
    char *dropped = NULL;
    size_t n = tr_join_routes(&j, &pool, 1, routes, &dropped);
    json_t *reply = tr_join_reply(&j, routes, n);
    char *text = json_dumps(reply, 0);
    if (text == NULL)
      abort(); /* every reply must be encodable JSON */
    free(text);
    json_decref(reply);
    free(dropped);
    free(routes);
    tr_join_clear(&j);
  }
  plg_error_release(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  size_t step = data[0] % 7 + 1, off = 1;
  plg_error_t err = NULL;
  while (off < size && err == NULL) {
    size_t n = size - off < step ? size - off : step;
    if (tr_grpc_decoder_feed(&d, data + off, n, &err) == 0) {
      uint8_t *msg;
      size_t len;
      while (tr_grpc_decoder_next(&d, &msg, &len)) {
        join_reply(msg, len);
        free(msg);
      }
    }
    off += n;
  }
  plg_error_release(&err);
  tr_grpc_decoder_free(&d);
  join_reply(data + 1, size - 1);
  return 0;
}
