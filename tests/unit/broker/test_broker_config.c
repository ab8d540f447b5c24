/* Config: server.properties parsing, Kafka's precedence rules, flag overrides, bad values,
 * listener parsing, request header parsing and the partition -> shard hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/config.h"
#include "broker/reqhdr.h"
#include "broker/runtime.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

static char *write_props(const char *text)
{
    char *path = strdup("/tmp/laminar-config-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void defaults_are_kafkas(void **state)
{
    (void)state;
    struct broker_config c;
    broker_config_init(&c);
    assert_int_equal(broker_config_finish(&c), 0);
    assert_int_equal(c.socket_request_max_bytes, 104857600);
    assert_int_equal(c.message_max_bytes, 1048588);
    assert_int_equal(c.connections_max_idle_ms, 600000);
    assert_int_equal(c.num_partitions, 1);
    assert_true(c.auto_create_topics_enable);
    assert_int_equal(c.log_segment_bytes, 1073741824);
    assert_int_equal(c.log_retention_ms, 168ll * 3600 * 1000);
    assert_int_equal(c.log_retention_bytes, -1);
    assert_int_equal(c.listeners[0].port, 9092);
    assert_int_equal(c.advertised_count, 1);
    broker_config_deinit(&c);
}

static void file_then_flags(void **state)
{
    (void)state;
    char *path = write_props("# Kafka server.properties\n"
                             "! another comment\n"
                             "node.id = 7\n"
                             "listeners=PLAINTEXT://127.0.0.1:9192,INTERNAL://[::1]:9193\n"
                             "listener.security.protocol.map=INTERNAL:PLAINTEXT,"
                             "PLAINTEXT:PLAINTEXT\n"
                             "log.dirs=/a,/b\n"
                             "num.partitions: 16\n"
                             "log.retention.hours=1\n"
                             "log.retention.minutes=30\n"
                             "auto.create.topics.enable false\n"
                             "socket.request.max.bytes=\\\n"
                             "  2048\n"
                             "process.roles=broker,controller\n"
                             "controller.listener.names=INTERNAL\n"
                             "num.network.threads=3\n");
    struct broker_config c;
    broker_config_init(&c);
    assert_int_equal(broker_config_load_file(&c, path), 0);
    /* flags override the file */
    assert_int_equal(broker_config_set(&c, "node.id", "9"), 0);
    assert_int_equal(broker_config_set_kv(&c, "compression.type=zstd"), 0);
    assert_int_equal(broker_config_set_kv(&c, "connections.max.idle.ms=1500"), 0);
    assert_int_equal(broker_config_finish(&c), 0);
    assert_int_equal(c.connections_max_idle_ms, 1500);
    assert_int_equal(c.node_id, 9);
    assert_int_equal(c.listeners_count, 2);
    assert_string_equal(c.listeners[0].host, "127.0.0.1");
    assert_int_equal(c.listeners[0].port, 9192);
    assert_string_equal(c.listeners[1].name, "INTERNAL");
    assert_string_equal(c.listeners[1].host, "::1");
    assert_int_equal(c.listeners[1].port, 9193);
    assert_int_equal(c.advertised_count, 2); /* defaults to listeners */
    assert_int_equal(c.log_dirs_count, 2);
    assert_string_equal(c.log_dirs[1], "/b");
    assert_int_equal(c.num_partitions, 16);
    assert_int_equal(c.log_retention_ms, 30ll * 60 * 1000); /* minutes beat hours */
    assert_false(c.auto_create_topics_enable);
    assert_int_equal(c.socket_request_max_bytes, 2048); /* continuation line */
    assert_string_equal(broker_config_get(&c, "compression.type"), "zstd");
    assert_string_equal(broker_config_get(&c, "process.roles"), "broker,controller");
    assert_int_equal(c.process_roles, BROKER_ROLE_BROKER | BROKER_ROLE_CONTROLLER);
    assert_string_equal(c.inter_broker_listener, "PLAINTEXT");
    /* num.network.threads is ignored, reported once */
    assert_int_equal(broker_config_ignored_count(&c), 1);
    assert_int_equal(broker_config_finish(&c), 0);
    assert_int_equal(broker_config_ignored_count(&c), 1);
    broker_config_deinit(&c);
    unlink(path);
    free(path);
}

static void retention_ms_wins(void **state)
{
    (void)state;
    struct broker_config c;
    broker_config_init(&c);
    assert_int_equal(broker_config_set(&c, "log.retention.ms", "1234"), 0);
    assert_int_equal(broker_config_set(&c, "log.retention.hours", "5"), 0);
    assert_int_equal(broker_config_finish(&c), 0);
    assert_int_equal(c.log_retention_ms, 1234);
    broker_config_deinit(&c);
}

static void bad_values_rejected(void **state)
{
    (void)state;
    struct broker_config c;
    broker_config_init(&c);
    assert_int_equal(broker_config_set(&c, "num.partitions", "many"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "num.partitions", "0"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "socket.request.max.bytes", "4294967296"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "auto.create.topics.enable", "yes"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "listeners", "127.0.0.1:9092"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "listeners", "PLAINTEXT://h:99999"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "laminar.io", "kqueue"), LM_E_CONFIG);
    assert_int_equal(broker_config_set_kv(&c, "novalue"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&c, "laminar.io", "epoll"), 0);
    assert_int_equal(c.io_mode, BROKER_IO_EPOLL);
    assert_int_equal(broker_config_load_file(&c, "/nonexistent/server.properties"), LM_E_IO);
    broker_config_deinit(&c);
}

/* Applies kv pairs ("key=value", NULL-terminated) to a fresh config; returns the check's code. */
static int check_with(const char *const *kvs)
{
    struct broker_config c;
    broker_config_init(&c);
    for (size_t i = 0; kvs[i] != NULL; i++)
        assert_int_equal(broker_config_set_kv(&c, kvs[i]), 0);
    int rc = broker_config_check_supported(&c);
    /* finish runs the same check */
    assert_int_equal(broker_config_finish(&c), rc);
    broker_config_deinit(&c);
    return rc;
}

#define CHECK(...) check_with((const char *const[]){__VA_ARGS__, NULL})

static void unsupported_security_refused(void **state)
{
    (void)state;
    /* TLS listeners, by name or through the map, need a keystore (broker/security/tls.h;
     * tests/unit/security/test_tls.c covers the settings themselves). */
    assert_int_equal(CHECK("listeners=SASL_SSL://127.0.0.1:9092"), LM_E_CONFIG);
    assert_int_equal(CHECK("listeners=SSL://127.0.0.1:9092"), LM_E_CONFIG);
    assert_int_equal(CHECK("listeners=SSL://127.0.0.1:9092", "ssl.keystore.location=/nonexistent"),
                     LM_E_CONFIG);
    /* SASL_PLAINTEXT is served, except on a controller listener */
    assert_int_equal(
        CHECK("listeners=sasl_plaintext://127.0.0.1:9092", "sasl.enabled.mechanisms=SCRAM-SHA-512"),
        0);
    /* ... with a mechanism laminar serves, and PLAIN's users */
    assert_int_equal(CHECK("listeners=sasl_plaintext://127.0.0.1:9092"), LM_E_CONFIG);
    assert_int_equal(CHECK("listeners=sasl_plaintext://127.0.0.1:9092",
                           "sasl.enabled.mechanisms=SCRAM-SHA-512,GSSAPI"),
                     LM_E_UNSUPPORTED);
    assert_int_equal(
        CHECK("listeners=sasl_plaintext://127.0.0.1:9092", "sasl.enabled.mechanisms=PLAIN"),
        LM_E_CONFIG);
    assert_int_equal(CHECK("listeners=sasl_plaintext://127.0.0.1:9092",
                           "sasl.enabled.mechanisms=GSSAPI",
                           "listener.name.sasl_plaintext.sasl.enabled.mechanisms= PLAIN ",
                           "listener.name.sasl_plaintext.plain.sasl.jaas.config=x"),
                     0);
    assert_int_equal(CHECK("listeners=CONTROLLER://:9093", "controller.listener.names=CONTROLLER",
                           "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT"),
                     LM_E_UNSUPPORTED);
    assert_int_equal(CHECK("listeners=PLAINTEXT://:9092,SSL://:9093"), LM_E_CONFIG);
    assert_int_equal(
        CHECK("listeners=EXTERNAL://:9092", "listener.security.protocol.map=EXTERNAL:SASL_SSL"),
        LM_E_CONFIG);
    /* an SSL controller listener is served (node-to-node TLS) and needs its keystore */
    assert_int_equal(CHECK("listeners=CONTROLLER://:9093", "controller.listener.names=CONTROLLER",
                           "listener.security.protocol.map=CONTROLLER:SSL"),
                     LM_E_CONFIG);
    /* The map can remap a protocol's own name, too. */
    assert_int_equal(
        CHECK("listeners=PLAINTEXT://:9092", "listener.security.protocol.map=PLAINTEXT:SSL"),
        LM_E_CONFIG);
    assert_int_equal(CHECK("advertised.listeners=SSL://h:9092"), LM_E_CONFIG); /* not listened */
    /* A listener name with no protocol, and a malformed map, are configuration errors. */
    assert_int_equal(CHECK("listeners=EXTERNAL://:9092"), LM_E_CONFIG);
    assert_int_equal(
        CHECK("listeners=EXTERNAL://:9092", "listener.security.protocol.map=OTHER:PLAINTEXT"),
        LM_E_CONFIG);
    assert_int_equal(CHECK("listener.security.protocol.map=PLAINTEXT:TLS"), LM_E_CONFIG);
    assert_int_equal(CHECK("listener.security.protocol.map=PLAINTEXT"), LM_E_CONFIG);
    /* TLS, SASL and quota keys (the authorizer's are served: broker/security/authorizer.h). */
    static const char *const refused[] = {
        "ssl.keymanager.algorithm=SunX509",
        "ssl.engine.factory.class=com.example.Factory",
        "sasl.kerberos.service.name=kafka",
        "sasl.jaas.config=x",
        "sasl.server.callback.handler.class=com.example.Handler",
        "listener.name.sasl_ssl.sasl.jaas.config=x",
        "listener.name.external.plain.sasl.server.callback.handler.class=x",
        "listener.name.external.ssl.secure.random.implementation=SHA1PRNG",
        "listener.name.external.connections.max.reauth.ms=60000",
        "security.inter.broker.protocol=SSL",
        "principal.builder.class=com.example.Builder",
        "delegation.token.secret.key=s3cret",
        "client.quota.callback.class=com.example.Quota",
        "quota.producer.default=1048576",
        "controller.quota.window.num=5",
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(refused); i++) {
        print_message("refused: %s\n", refused[i]);
        assert_int_equal(CHECK(refused[i]), LM_E_UNSUPPORTED);
    }
}

static void harmless_settings_start(void **state)
{
    (void)state;
    /* The SASL keys laminar reads (broker/handlers/sasl_api.c checks their values) */
    assert_int_equal(CHECK("sasl.enabled.mechanisms=PLAIN", "connections.max.reauth.ms=3600000",
                           "sasl.mechanism.inter.broker.protocol=PLAIN",
                           "sasl.mechanism.controller.protocol=PLAIN",
                           "security.inter.broker.protocol=SASL_PLAINTEXT",
                           "listeners=SASL_PLAINTEXT://:9092",
                           "listener.name.sasl_plaintext.plain.sasl.jaas.config=x",
                           "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=x",
                           "listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-256"),
                     0);
    assert_int_equal(CHECK("listeners=PLAINTEXT://:9092"), 0);
    /* Kafka 4's config/server.properties (combined mode, CONTROLLER mapped by the user). */
    assert_int_equal(CHECK("process.roles=broker,controller", "node.id=1",
                           "controller.quorum.bootstrap.servers=localhost:9093",
                           "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
                           "inter.broker.listener.name=PLAINTEXT",
                           "advertised.listeners=PLAINTEXT://localhost:9092,"
                           "CONTROLLER://localhost:9093",
                           "controller.listener.names=CONTROLLER",
                           "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:"
                           "PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
                     0);
    /* config/controller.properties: no map, the controller listener defaults to PLAINTEXT. */
    assert_int_equal(CHECK("listeners=CONTROLLER://:9093", "controller.listener.names=CONTROLLER",
                           "advertised.listeners=CONTROLLER://localhost:9093"),
                     0);
    /* Case-insensitive listener names, spaces in the map (trimmed, as Kafka's Csv does). */
    assert_int_equal(CHECK("listeners=internal://:9092",
                           "listener.security.protocol.map=INTERNAL : plaintext , SSL:SSL"),
                     0);
    assert_int_equal(CHECK("listeners=internal://:9092",
                           "listener.security.protocol.map=INTERNAL : SSL , SSL:SSL"),
                     LM_E_CONFIG);
    /* ssl.* keys laminar reads are accepted without a TLS listener, as Kafka does. */
    assert_int_equal(CHECK("ssl.keystore.location=/etc/k.pem", "ssl.client.auth=required",
                           "listener.name.external.ssl.keystore.location=/k"),
                     0);
    /* Empty values and Kafka's defaults ask for nothing. */
    assert_int_equal(
        CHECK("ssl.keystore.location=", "sasl.enabled.mechanisms=", "authorizer.class.name=",
              "super.users=", "security.inter.broker.protocol=PLAINTEXT",
              "connections.max.reauth.ms=0", "quota.window.num=11", "quota.window.size.seconds=1",
              "controller.quota.window.num=11",
              /* served: the client quota's sampled window (broker/security/quota.h) */
              "quota.window.num=20", "quota.window.size.seconds=2",
              "principal.builder.class=org.apache.kafka.common.security."
              "authenticator.DefaultKafkaPrincipalBuilder"),
        0);
    /* Neighbours that are not security or quota settings. */
    assert_int_equal(CHECK("max.connections=100", "listener.name.plaintext.max.connections=10",
                           "replication.quota.window.num=11", "sslish.key=1",
                           "allow.everyone.if.no.acl.found=true"),
                     0);
}

/* Applies kv pairs to a fresh config and finishes it (asserting it passes) into *c. */
static void finish_with(struct broker_config *c, const char *const *kvs)
{
    broker_config_init(c);
    for (size_t i = 0; kvs[i] != NULL; i++)
        assert_int_equal(broker_config_set_kv(c, kvs[i]), 0);
    assert_int_equal(broker_config_finish(c), 0);
}

#define FINISH(c, ...) finish_with(c, (const char *const[]){__VA_ARGS__, NULL})

static void listener_roles(void **state)
{
    (void)state;
    struct broker_config c;
    /* Kafka 4's combined config/server.properties: the controller listener is advertised for
     * the quorum but is not a broker listener; PLAINTEXT is the inter-broker listener. */
    FINISH(&c, "process.roles=broker,controller", "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
           "inter.broker.listener.name=PLAINTEXT",
           "advertised.listeners=CONTROLLER://ctl.example:9093,PLAINTEXT://cli.example:9092",
           "controller.listener.names=CONTROLLER",
           "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT");
    assert_int_equal(c.process_roles, BROKER_ROLE_BROKER | BROKER_ROLE_CONTROLLER);
    assert_int_equal(c.controller_listener_names_count, 1);
    assert_string_equal(c.controller_listener_names[0], "CONTROLLER");
    assert_string_equal(c.inter_broker_listener, "PLAINTEXT");
    assert_true(broker_config_is_controller_listener(&c, "controller"));
    assert_false(broker_config_is_controller_listener(&c, "PLAINTEXT"));
    /* advertised endpoints by listener name; an unknown name gets the first broker one */
    assert_string_equal(broker_config_advertised_for(&c, "CONTROLLER")->host, "ctl.example");
    assert_string_equal(broker_config_advertised_for(&c, "plaintext")->host, "cli.example");
    assert_string_equal(broker_config_advertised_for(&c, "OTHER")->host, "cli.example");
    broker_config_deinit(&c);

    /* A client listener and an internal one, named explicitly (no process.roles). */
    FINISH(&c, "listeners=CLIENT://127.0.0.1:9092,INTERNAL://127.0.0.1:9093",
           "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
           "inter.broker.listener.name=internal");
    assert_int_equal(c.process_roles, 0);
    assert_string_equal(c.inter_broker_listener, "internal");
    assert_int_equal(broker_config_advertised_for(&c, "INTERNAL")->port, 9093);
    broker_config_deinit(&c);
    /* No inter.broker.listener.name and no PLAINTEXT listener, without roles: none, no error
     * (laminar's single-node start); with the broker role Kafka's check applies. */
    FINISH(&c, "listeners=CLIENT://127.0.0.1:9092",
           "listener.security.protocol.map=CLIENT:PLAINTEXT");
    assert_string_equal(c.inter_broker_listener, "");
    broker_config_deinit(&c);
    assert_int_equal(CHECK("process.roles=broker,controller",
                           "listeners=CLIENT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                           "controller.listener.names=CONTROLLER",
                           "listener.security.protocol.map=CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
                     LM_E_CONFIG);
    /* ... which naming the listener satisfies */
    assert_int_equal(CHECK("process.roles=broker,controller",
                           "listeners=CLIENT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                           "controller.listener.names=CONTROLLER",
                           "inter.broker.listener.name=CLIENT",
                           "listener.security.protocol.map=CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
                     0);
    /* Kafka 3.x broker-only config/kraft/broker.properties */
    assert_int_equal(CHECK("process.roles=broker", "listeners=PLAINTEXT://localhost:9092",
                           "inter.broker.listener.name=PLAINTEXT",
                           "controller.listener.names=CONTROLLER",
                           "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:"
                           "PLAINTEXT"),
                     0);

    /* Refused as Kafka refuses them (each one error line, LM_E_CONFIG). */
    static const char *const bad[][6] = {
        /* both ways of naming the inter-broker listener */
        {"inter.broker.listener.name=PLAINTEXT", "security.inter.broker.protocol=PLAINTEXT"},
        /* an inter-broker listener with no protocol */
        {"inter.broker.listener.name=OTHER"},
        {"listeners=PLAINTEXT://:9092", "inter.broker.listener.name=REPL",
         "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPL:PLAINTEXT"},
        /* advertised names must be listeners' */
        {"listeners=PLAINTEXT://:9092,INTERNAL://:9093",
         "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,EXT:PLAINTEXT",
         "advertised.listeners=EXT://h:9092"},
        /* 0.0.0.0 is not an address to advertise, given or inherited from listeners */
        {"advertised.listeners=PLAINTEXT://0.0.0.0:9092"},
        {"listeners=PLAINTEXT://0.0.0.0:9092"},
        {"process.roles=brokers"},
        {"process.roles=broker,broker"},
        /* controller-only: every listener a controller listener */
        {"process.roles=controller", "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
         "controller.listener.names=CONTROLLER"},
        {"process.roles=controller", "listeners=CONTROLLER://:9093",
         "listener.security.protocol.map=CONTROLLER:PLAINTEXT"},
        /* broker-only: controller listeners named, none of them served here */
        {"process.roles=broker", "listeners=PLAINTEXT://:9092"},
        {"process.roles=broker", "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
         "controller.listener.names=CONTROLLER"},
        /* combined: the controller listener must be a listener */
        {"process.roles=broker,controller", "listeners=PLAINTEXT://:9092",
         "controller.listener.names=CONTROLLER"},
        /* a broker needs a broker listener */
        {"process.roles=broker,controller", "listeners=CONTROLLER://:9093",
         "controller.listener.names=CONTROLLER"},
        /* the inter-broker listener cannot be a controller listener */
        {"listeners=PLAINTEXT://:9092,CONTROLLER://:9093", "controller.listener.names=CONTROLLER",
         "inter.broker.listener.name=CONTROLLER"},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(bad); i++) {
        const char *kvs[7] = {0};
        for (size_t k = 0; k < 6 && bad[i][k] != NULL; k++)
            kvs[k] = bad[i][k];
        print_message("refused case %zu\n", i);
        assert_int_equal(check_with(kvs), LM_E_CONFIG);
    }
}

static void request_header_fixed_and_tags(void **state)
{
    (void)state;
    /* api_key 3, version 12, correlation 0x01020304, client_id "ab", tags: 2 fields */
    const uint8_t v2[] = {0, 3, 0, 12, 1, 2, 3, 4, 0, 2, 'a', 'b', 2, 0, 1, 0xee, 5, 0, 9};
    struct broker_reqhdr h;
    assert_int_equal(broker_reqhdr_parse_fixed(v2, sizeof(v2), &h), 0);
    assert_int_equal(h.api_key, 3);
    assert_int_equal(h.api_version, 12);
    assert_int_equal(h.correlation_id, 0x01020304);
    assert_int_equal(h.client_id_len, 2);
    assert_memory_equal(h.client_id, "ab", 2);
    size_t off = h.size_bytes;
    assert_int_equal(broker_reqhdr_skip_tags(v2, sizeof(v2), &off), 0);
    assert_int_equal(off, sizeof(v2) - 1); /* one body byte left */
    /* tags out of order, truncated tag payload */
    const uint8_t bad_order[] = {2, 5, 0, 1, 0};
    off = 0;
    assert_int_equal(broker_reqhdr_skip_tags(bad_order, sizeof(bad_order), &off), LM_E_TAG_ORDER);
    const uint8_t trunc[] = {1, 0, 9, 1};
    off = 0;
    assert_int_equal(broker_reqhdr_skip_tags(trunc, sizeof(trunc), &off), LM_E_TRUNCATED);
    /* null client id; client id longer than the frame; frame shorter than the fixed part */
    const uint8_t null_id[] = {0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff};
    assert_int_equal(broker_reqhdr_parse_fixed(null_id, sizeof(null_id), &h), 0);
    assert_null(h.client_id);
    assert_int_equal(h.client_id_len, -1);
    const uint8_t long_id[] = {0, 18, 0, 0, 0, 0, 0, 1, 0, 50, 'x'};
    assert_int_equal(broker_reqhdr_parse_fixed(long_id, sizeof(long_id), &h), LM_E_TRUNCATED);
    assert_int_equal(broker_reqhdr_parse_fixed(long_id, 9, &h), LM_E_TRUNCATED);
}

static void partition_shard_is_stable(void **state)
{
    (void)state;
    /* FNV-1a 64 of "orders" + big-endian partition, mod n: fixed values, never process
     * dependent (partition ownership must survive restarts). */
    uint32_t counts[4] = {0};
    for (int32_t p = 0; p < 400; p++) {
        uint32_t s = broker_partition_shard("orders", 6, p, 4);
        assert_true(s < 4);
        assert_int_equal(s, broker_partition_shard("orders", 6, p, 4));
        counts[s]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(counts[i] > 60); /* spread, not all on one shard */
    assert_int_equal(broker_partition_shard("orders", 6, 0, 1), 0);
    /* reference value computed independently (python: fnv1a64(b"t" + b"\0\0\0\1") % 7) */
    assert_int_equal(broker_partition_shard("t", 1, 1, 7), 0x12cb5a26aed230a0ull % 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_kafkas),
        cmocka_unit_test(file_then_flags),
        cmocka_unit_test(retention_ms_wins),
        cmocka_unit_test(bad_values_rejected),
        cmocka_unit_test(unsupported_security_refused),
        cmocka_unit_test(harmless_settings_start),
        cmocka_unit_test(listener_roles),
        cmocka_unit_test(request_header_fixed_and_tags),
        cmocka_unit_test(partition_shard_is_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
