/* The `laminar` binary: the shard runtime (lm_broker_rt) serving the request handlers of
 * broker/handlers/ (lm_broker_handlers). */
#include "broker/handlers/handlers.h"
#include "broker/runtime.h"

int main(int argc, char **argv)
{
    return broker_serve_main(argc, argv, broker_handlers_setup);
}
