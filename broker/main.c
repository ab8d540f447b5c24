/* The `laminar` binary. The request handlers live in broker/handlers/ (lm_broker_handlers);
 * until that library exists the runtime serves no API and closes every connection on its
 * first request, as Kafka does for an unknown API key. */
#include <stddef.h>

#include "broker/log.h"
#include "broker/runtime.h"

#ifdef LAMINAR_HAVE_HANDLERS
/* Provided by lm_broker_handlers: registers every API handler (and start/flush hooks). */
int broker_handlers_setup(struct broker_dispatch *d, struct broker_config *cfg);
#endif

static int setup(struct broker_dispatch *d, struct broker_config *cfg)
{
#ifdef LAMINAR_HAVE_HANDLERS
    return broker_handlers_setup(d, cfg);
#else
    (void)d;
    (void)cfg;
    BLOG_WARN("built without request handlers: every request is answered by closing");
    return 0;
#endif
}

int main(int argc, char **argv)
{
    return broker_serve_main(argc, argv, setup);
}
