/* teleroute: wires settings, the socket and the NetworkDriver handler table. */
#include "plg_main.h"
#include "plg_version.h"
#include "tr_driver.h"

int main(int argc, char **argv)
{
  const struct plg_plugin plugin = {
      .name = "teleroute",
      .version = PLG_VERSION,
      .implements = "NetworkDriver",
      .routes = tr_routes,
      .n_routes = TR_N_ROUTES,
      .init = tr_init,
      .stopping = tr_stopping,
      .shutdown = tr_shutdown,
  };
  return plg_main(&plugin, argc, argv);
}
