import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;
import org.apache.kafka.common.utils.Exit;

/**
 * Runs Kafka's command-line tools inside the suite's JVM (ToolsSuite, GroupSuite): their main()
 * with Exit's procedures replaced, so the exit status and the output can be checked.
 */
final class ToolRunner {
    private ToolRunner() {}

    private static final class ExitCalled extends RuntimeException {
        final int status;

        ExitCalled(int status) {
            super("exit " + status);
            this.status = status;
        }
    }

    /** Makes Exit.exit (and Exit.halt too when halt is true) throw instead of ending the JVM. */
    static void trapExit(boolean halt) {
        Exit.setExitProcedure((status, message) -> {
            throw new ExitCalled(status);
        });
        if (halt) {
            Exit.setHaltProcedure((status, message) -> {
                throw new ExitCalled(status);
            });
        }
    }

    /**
     * Runs a tool's main(), capturing stdout+stderr and the status it exits with; echoes the
     * command line ("$ " + shown + args), the status and the output, indented.
     */
    static ToolResult run(String shown, Consumer<String[]> main, String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8);
        int status = 0;
        System.setOut(ps);
        System.setErr(ps);
        try {
            main.accept(args);
        } catch (ExitCalled e) {
            status = e.status;
        } catch (Throwable t) {
            t.printStackTrace(ps);
            status = 99;
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        String out = buf.toString(StandardCharsets.UTF_8);
        System.out.println("$ " + shown + String.join(" ", args) + "\n  -> exit " + status + "\n"
                + out.replaceAll("(?m)^", "  | "));
        return new ToolResult(status, out);
    }
}
