/** A tool's exit status and everything it printed (ToolRunner.run). */
final class ToolResult {
    final int status;
    final String out;

    ToolResult(int status, String out) {
        this.status = status;
        this.out = out;
    }
}
