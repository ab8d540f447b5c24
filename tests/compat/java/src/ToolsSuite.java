import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.function.Consumer;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.SecurityDisabledException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

/**
 * Every Java check of the compat suite in one JVM (JVM start-up is the slow part under ASan):
 *   1. ProduceConsume (enable.idempotence=false) for each codec given;
 *   2. Kafka's TopicCommand (kafka-topics): --create, --list, --describe, --alter --partitions,
 *      error cases, --delete;
 *   3. Kafka's ConfigCommand (kafka-configs): --alter --add-config / --delete-config and
 *      --describe on a topic, --describe --all on the broker;
 *   3b. OpsChecks: kafka-log-dirs, kafka-configs on brokers and broker-loggers,
 *      kafka-features, kafka-topics --describe paged by DescribeTopicPartitions;
 *   4. the Admin API where the tools stop: broker-side config validation, validateOnly,
 *      incrementalAlterConfigs APPEND / SUBTRACT (to the empty list) / DELETE / SET,
 *      describeCluster, and the ACL calls (and kafka-acls) without an authorizer.
 * The tools run through their main() with Exit's procedure replaced, so their exit status and
 * everything they print are checked here. Usage: ToolsSuite BOOTSTRAP NODE_ID CODEC...
 * Exit 0 only when every check passed.
 */
public class ToolsSuite {
    static String bootstrap;
    static int failures = 0;

    static ToolResult run(Consumer<String[]> main, String... args) {
        return ToolRunner.run("", main, args);
    }

    /** TopicCommand.main() catches everything execute() throws, the exit included, so call
     * execute() itself: it ends with Exit.exit(status) in a finally block. */
    static ToolResult topics(String... args) {
        List<String> a = new ArrayList<>(List.of("--bootstrap-server", bootstrap));
        a.addAll(Arrays.asList(args));
        return run(argv -> {
            try {
                Method m = org.apache.kafka.tools.TopicCommand.class.getDeclaredMethod(
                        "execute", String[].class);
                m.setAccessible(true);
                m.invoke(null, (Object) argv);
            } catch (InvocationTargetException e) {
                if (e.getCause() instanceof RuntimeException re) throw re;
                throw new RuntimeException(e.getCause());
            } catch (ReflectiveOperationException e) {
                throw new RuntimeException(e);
            }
        }, a.toArray(new String[0]));
    }

    static ToolResult configs(String... args) {
        List<String> a = new ArrayList<>(List.of("--bootstrap-server", bootstrap));
        a.addAll(Arrays.asList(args));
        return run(kafka.admin.ConfigCommand::main, a.toArray(new String[0]));
    }

    static void check(boolean ok, String what) {
        if (ok) {
            System.out.println("ok: " + what);
        } else {
            System.out.println("FAIL: " + what);
            failures++;
        }
    }

    static long countLines(String out, String prefix) {
        return out.lines().filter(l -> l.trim().startsWith(prefix)).count();
    }

    static String describeOne(Admin admin, String topic, String name) throws Exception {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
        ConfigEntry e = c.get(name);
        return e == null ? null : e.value() + "/" + e.source();
    }

    static Throwable cause(Callable<?> f) {
        try {
            f.call();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Exception e) {
            return e;
        }
    }

    static AlterConfigOp op(String name, String value, AlterConfigOp.OpType type) {
        return new AlterConfigOp(new ConfigEntry(name, value), type);
    }

    static void alter(Admin admin, ConfigResource res, AlterConfigOp... ops) throws Exception {
        admin.incrementalAlterConfigs(Map.of(res, List.of(ops))).all().get();
    }

    static void adminChecks(String topic) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            NewTopic bad = new NewTopic("admin-bad", 1, (short) 1)
                    .configs(Map.of("retention.ms", "soon"));
            Throwable e = cause(() -> admin.createTopics(List.of(bad)).all().get());
            check(e instanceof InvalidConfigurationException
                    && e.getMessage().contains("retention.ms"),
                    "Admin createTopics with an invalid config: InvalidConfigurationException");
            NewTopic vo = new NewTopic("admin-vo", 2, (short) 1);
            e = cause(() -> admin.createTopics(List.of(vo),
                    new CreateTopicsOptions().validateOnly(true)).all().get());
            check(e == null && !admin.listTopics().names().get().contains("admin-vo"),
                    "Admin createTopics validateOnly creates nothing");

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            // The topic has cleanup.policy=compact,delete from kafka-configs above.
            alter(admin, res, op("cleanup.policy", "delete", AlterConfigOp.OpType.SUBTRACT));
            String v = describeOne(admin, topic, "cleanup.policy");
            check("compact/DYNAMIC_TOPIC_CONFIG".equals(v),
                    "incrementalAlterConfigs SUBTRACT: " + v);
            alter(admin, res, op("cleanup.policy", "delete", AlterConfigOp.OpType.APPEND));
            v = describeOne(admin, topic, "cleanup.policy");
            check("compact,delete/DYNAMIC_TOPIC_CONFIG".equals(v),
                    "incrementalAlterConfigs APPEND: " + v);
            e = cause(() -> {
                alter(admin, res, op("retention.ms", "5", AlterConfigOp.OpType.APPEND));
                return null;
            });
            check(e instanceof InvalidConfigurationException,
                    "incrementalAlterConfigs APPEND to a non-list config fails: " + e);
            // SUBTRACT of the last item leaves the empty list, which Kafka 4.x accepts (no
            // cleanup at all) and describes as "".
            alter(admin, res, op("cleanup.policy", "delete", AlterConfigOp.OpType.SUBTRACT));
            alter(admin, res, op("cleanup.policy", "compact", AlterConfigOp.OpType.SUBTRACT));
            v = describeOne(admin, topic, "cleanup.policy");
            check("/DYNAMIC_TOPIC_CONFIG".equals(v),
                    "incrementalAlterConfigs SUBTRACT of the last item: " + v);
            alter(admin, res, op("cleanup.policy", "", AlterConfigOp.OpType.DELETE),
                    op("segment.ms", "3600000", AlterConfigOp.OpType.SET));
            check("delete/DEFAULT_CONFIG".equals(describeOne(admin, topic, "cleanup.policy"))
                    && "3600000/DYNAMIC_TOPIC_CONFIG".equals(
                            describeOne(admin, topic, "segment.ms")),
                    "incrementalAlterConfigs DELETE + SET");

            // No authorizer: every ACL call fails with SecurityDisabledException, as against
            // a Kafka broker without authorizer.class.name.
            e = cause(() -> admin.describeAcls(AclBindingFilter.ANY).values().get());
            check(e instanceof SecurityDisabledException
                    && e.getMessage().contains("No Authorizer is configured on the broker"),
                    "Admin describeAcls: SecurityDisabledException: " + e);
            AclBinding acl = new AclBinding(
                    new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                    new AccessControlEntry("User:alice", "*", AclOperation.READ,
                            AclPermissionType.ALLOW));
            e = cause(() -> admin.createAcls(List.of(acl)).all().get());
            check(e instanceof SecurityDisabledException,
                    "Admin createAcls: SecurityDisabledException: " + e);
            e = cause(() -> admin.deleteAcls(List.of(AclBindingFilter.ANY)).all().get());
            check(e instanceof SecurityDisabledException,
                    "Admin deleteAcls: SecurityDisabledException: " + e);

            DescribeClusterResult dc = admin.describeCluster();
            check(dc.nodes().get().size() == 1 && dc.controller().get().id() == nodeId
                    && dc.clusterId().get() != null && !dc.clusterId().get().isEmpty(),
                    "Admin describeCluster: one node, the controller");
        }
    }

    static int nodeId;

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String node = args[1];
        nodeId = Integer.parseInt(node);
        ToolRunner.trapExit(true);

        // 1. The Java client: produce and read back, one topic per codec.
        for (int i = 2; i < args.length; i++) {
            String codec = args[i];
            long t0 = System.nanoTime();
            try {
                ProduceConsume.main(new String[] {bootstrap, "java-pc-" + codec, "3000", codec});
                check(true, "ProduceConsume " + codec + " in "
                        + (System.nanoTime() - t0) / 1_000_000 + " ms");
            } catch (Throwable t) {
                t.printStackTrace(System.out);
                check(false, "ProduceConsume " + codec + ": " + t);
            }
        }

        // 2. kafka-topics
        String t = "tools-topic";
        ToolResult r = topics("--create", "--topic", t, "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=123456");
        check(r.status == 0 && r.out.contains("Created topic " + t + "."), "topics --create");
        r = topics("--create", "--topic", t, "--partitions", "1");
        check(r.status != 0 && r.out.contains("already exists"), "topics --create twice fails");
        r = topics("--create", "--topic", "tools-rf3", "--partitions", "1",
                "--replication-factor", "3");
        check(r.status != 0 && r.out.contains("InvalidReplicationFactorException"),
                "topics --create with replication factor 3 fails");
        r = topics("--create", "--topic", "tools-bad-config", "--config", "retention.ms=soon");
        check(r.status != 0 && r.out.contains("Invalid value soon for configuration retention.ms"),
                "topics --create with an invalid config fails (checked by the tool itself)");
        r = topics("--create", "--topic", "tools-defaults");
        check(r.status == 0, "topics --create with broker defaults");
        r = topics("--list");
        check(r.status == 0 && r.out.lines().anyMatch(l -> l.equals(t))
                && r.out.lines().anyMatch(l -> l.equals("tools-defaults"))
                && r.out.lines().noneMatch(l -> l.equals("tools-rf3")), "topics --list");
        r = topics("--describe", "--topic", t);
        check(r.status == 0 && r.out.contains("PartitionCount: 3")
                && r.out.contains("ReplicationFactor: 1") && r.out.contains("retention.ms=123456")
                && countLines(r.out, "Topic: " + t + "\tPartition:") == 3
                && r.out.contains("Leader: " + node), "topics --describe");
        r = topics("--alter", "--topic", t, "--partitions", "5");
        check(r.status == 0, "topics --alter --partitions 5");
        r = topics("--describe", "--topic", t);
        check(r.out.contains("PartitionCount: 5")
                && countLines(r.out, "Topic: " + t + "\tPartition:") == 5,
                "topics --describe after --alter");
        r = topics("--alter", "--topic", t, "--partitions", "2");
        check(r.status != 0 && r.out.contains("InvalidPartitionsException"),
                "topics --alter --partitions 2 (a decrease) fails");

        // 3. kafka-configs on the topic
        r = configs("--entity-type", "topics", "--entity-name", t, "--alter", "--add-config",
                "max.message.bytes=2000,cleanup.policy=[compact,delete]");
        check(r.status == 0 && r.out.contains("Completed updating config for topic " + t),
                "configs --alter --add-config");
        r = configs("--entity-type", "topics", "--entity-name", t, "--describe");
        check(r.status == 0 && r.out.contains("Dynamic configs for topic " + t)
                && r.out.contains("max.message.bytes=2000")
                && r.out.contains("cleanup.policy=compact,delete")
                && r.out.contains("retention.ms=123456")
                && r.out.contains("DYNAMIC_TOPIC_CONFIG:max.message.bytes=2000")
                && !r.out.contains("segment.bytes"), "configs --describe (dynamic only)");
        r = configs("--entity-type", "topics", "--entity-name", t, "--alter", "--delete-config",
                "retention.ms");
        check(r.status == 0, "configs --alter --delete-config");
        r = configs("--entity-type", "topics", "--entity-name", t, "--describe", "--all");
        check(r.status == 0 && r.out.contains("All configs for topic " + t)
                && r.out.contains("segment.bytes=1073741824")
                && r.out.contains("retention.ms=604800000")
                && r.out.contains("max.message.bytes=2000"), "configs --describe --all");
        r = configs("--entity-type", "topics", "--entity-name", t, "--alter", "--add-config",
                "retention.ms=never");
        check(r.status != 0 && r.out.contains("InvalidConfigurationException"),
                "configs --alter with an invalid value fails");
        r = configs("--entity-type", "topics", "--entity-name", "no-such-topic", "--describe");
        // Kafka's tool checks the topic list first and says so, with status 0.
        check(r.out.contains("The topic 'no-such-topic' doesn't exist"),
                "configs --describe of a missing topic says it does not exist");
        r = configs("--entity-type", "brokers", "--entity-name", node, "--describe", "--all");
        check(r.status == 0 && r.out.contains("All configs for broker " + node)
                && r.out.contains("num.partitions=") && r.out.contains("log.segment.bytes="),
                "configs --describe --all on the broker");
        r = configs("--entity-type", "brokers", "--entity-name", node, "--alter", "--add-config",
                "num.partitions=7");
        check(r.status != 0 && r.out.contains("Cannot update these configs dynamically"),
                "configs --alter of a static broker config is refused");

        // 3b. The operability tools: kafka-log-dirs, kafka-configs on brokers and
        //     broker-loggers, kafka-features, kafka-topics --describe paged (OpsChecks).
        OpsChecks.run(bootstrap, nodeId, t, 5);

        // 4. The Admin API where the tools stop: broker-side config validation and the
        //    incremental APPEND / SUBTRACT operations on a list config (KIP-339).
        adminChecks(t);
        // Kafka's AclCommand (kafka-acls) without an authorizer on the broker.
        r = run(org.apache.kafka.tools.AclCommand::main, "--bootstrap-server", bootstrap,
                "--list");
        check(r.status != 0 && r.out.contains("SecurityDisabledException")
                && r.out.contains("No Authorizer is configured on the broker"),
                "acls --list: SecurityDisabledException");

        // kafka-topics --delete last, so the topic's configs were exercised first.
        r = topics("--delete", "--topic", t);
        check(r.status == 0, "topics --delete");
        r = topics("--list");
        check(r.status == 0 && r.out.lines().noneMatch(l -> l.equals(t)),
                "topics --list after --delete");
        r = topics("--delete", "--topic", t);
        check(r.status != 0, "topics --delete of a missing topic fails");

        System.out.println(failures == 0 ? "ToolsSuite: all checks passed"
                                         : "ToolsSuite: " + failures + " check(s) failed");
        System.out.flush();
        Runtime.getRuntime().halt(failures == 0 ? 0 : 1);
    }
}
