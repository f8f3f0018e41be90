package io.blockquant.cli;

import io.blockquant.model.ModelFormatException;
import io.blockquant.tensor.Backends;
import java.io.IOException;
import java.io.UncheckedIOException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The blockquant command line: one subcommand per job. */
@Command(name = "blockquant", mixinStandardHelpOptions = true, version = "blockquant 0.1.0",
        description = "Distributed post-training quantization of LLMs on Apache Spark.",
        subcommands = {QuantizeCommand.class, EvalCommand.class, ReportCommand.class, ExportCommand.class, BenchCommand.class,
                SynthCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a subcommand is required");
    }

    public static void main(String[] args) {
        int code;
        try {
            code = execute(args);
        } catch (Throwable t) {
            // an Error out of a command (a class missing from a slimmed runtime, say): Spark's non-daemon threads
            // would keep this JVM alive after main returns, so it says what happened and exits
            System.err.println("blockquant: internal error: " + t);
            t.printStackTrace();
            code = 1;
        }
        System.exit(code);
    }

    /** Runs the command line and returns its exit code (tests call this instead of main). */
    public static int execute(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, line, parsed) -> {
            String oom = outOfMemory(ex);
            if (oom != null) {
                line.getErr().println("blockquant " + line.getCommandName() + ": error: " + oom);
                return 3;
            }
            // one clear line for bad input and failed I/O; the stack trace only for what is a bug of ours
            Throwable userError = userError(ex);
            line.getErr().println("blockquant " + line.getCommandName() + ": error: "
                    + (userError != null ? userError : ex).getMessage());
            if (userError == null) ex.printStackTrace(line.getErr());
            return 2;
        });
        try {
            return cl.execute(args);
        } catch (OutOfMemoryError e) {
            System.err.println("blockquant: error: " + outOfMemory(e));
            return 3;
        }
    }

    /**
     * Running out of memory, in this JVM, an executor (a task's error or a lost executor's exit code 52) or a
     * GPU, as one line naming the setting to change; null for any other error.
     */
    static String outOfMemory(Throwable ex) {
        for (Throwable t = ex; t != null; t = t.getCause() == t ? null : t.getCause()) {
            String m = String.valueOf(t.getMessage());
            boolean heap = t instanceof OutOfMemoryError || m.contains("java.lang.OutOfMemoryError");
            boolean lost = m.contains("exit code 52") || m.contains("exitCode: 52") || m.contains("exit status 52");
            String lower = m.toLowerCase(java.util.Locale.ROOT); // the CUDA backend's errors: "cudaMallocAsync (line n): out of memory"
            boolean gpu = lower.contains("cuda") && lower.contains("out of memory");
            if (!heap && !lost && !gpu) continue;
            String where = gpu ? "a GPU ran out of device memory"
                    : t instanceof OutOfMemoryError ? "this JVM ran out of heap (" + t.getMessage() + ", -Xmx "
                            + Runtime.getRuntime().maxMemory() / (1 << 20) + " MiB)"
                    : "an executor ran out of memory";
            String fix = gpu ? "use GPUs with more memory or give each task fewer calibration windows (--windows-per-task)"
                    : "raise the heap (local runs: BLOCKQUANT_HEAP, now " + System.getenv().getOrDefault("BLOCKQUANT_HEAP", "8g")
                            + "; a cluster: spark.driver.memory / spark.executor.memory) or give each task fewer windows (--windows-per-task)";
            return "out of memory: " + where + "; " + fix
                    + ". A store at --out keeps the blocks it committed: continue it with --resume";
        }
        return null;
    }

    /**
     * The error a user can act on (bad input, a file that cannot be read or written), or null for a bug.
     * A failure inside a Spark task arrives wrapped in a SparkException: its cause is what went wrong.
     */
    static Throwable userError(Throwable ex) {
        for (Throwable t = ex; t != null; t = t.getCause()) {
            if (t instanceof ModelFormatException || t instanceof IllegalArgumentException || t instanceof Backends.UnavailableException
                    || t instanceof UncheckedIOException || t instanceof IOException) {
                return t;
            }
            if (t.getCause() == t) break;
        }
        return null;
    }
}
