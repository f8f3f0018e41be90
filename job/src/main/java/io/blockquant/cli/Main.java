package io.blockquant.cli;

import io.blockquant.model.ModelFormatException;
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
        System.exit(execute(args));
    }

    /** Runs the command line and returns its exit code (tests call this instead of main). */
    public static int execute(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, line, parsed) -> {
            // one clear line for bad input and failed I/O; the stack trace only for what is a bug of ours
            Throwable userError = userError(ex);
            line.getErr().println("blockquant " + line.getCommandName() + ": error: "
                    + (userError != null ? userError : ex).getMessage());
            if (userError == null) ex.printStackTrace(line.getErr());
            return 2;
        });
        return cl.execute(args);
    }

    /**
     * The error a user can act on (bad input, a file that cannot be read or written), or null for a bug.
     * A failure inside a Spark task arrives wrapped in a SparkException: its cause is what went wrong.
     */
    static Throwable userError(Throwable ex) {
        for (Throwable t = ex; t != null; t = t.getCause()) {
            if (t instanceof ModelFormatException || t instanceof IllegalArgumentException
                    || t instanceof UncheckedIOException || t instanceof IOException) {
                return t;
            }
            if (t.getCause() == t) break;
        }
        return null;
    }
}
