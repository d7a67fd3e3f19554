/* telemount: wires settings, the socket and the VolumeDriver handler table. */
#include "plg_main.h"
#include "plg_version.h"
#include "tm_driver.h"

int main(int argc, char **argv)
{
  const struct plg_plugin plugin = {
      .name = "telemount",
      .version = PLG_VERSION,
      .implements = "VolumeDriver",
      .routes = tm_routes,
      .n_routes = TM_N_ROUTES,
      .init = tm_init,
      .stopping = tm_stopping,
      .shutdown = tm_shutdown,
  };
  return plg_main(&plugin, argc, argv);
}
