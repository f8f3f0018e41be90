package io.blockquant.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The blockquant command line: one subcommand per job. */
@Command(name = "blockquant", mixinStandardHelpOptions = true, version = "blockquant 0.1.0",
        description = "Distributed post-training quantization of LLMs on Apache Spark.",
        subcommands = {QuantizeCommand.class, EvalCommand.class, ReportCommand.class, ExportCommand.class, BenchCommand.class,
                CommandLine.HelpCommand.class})
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
            // one clear line for bad input; the stack trace only for what is a bug of ours
            line.getErr().println("blockquant " + line.getCommandName() + ": error: " + ex.getMessage());
            if (!(ex instanceof io.blockquant.model.ModelFormatException || ex instanceof IllegalArgumentException
                    || ex instanceof java.io.FileNotFoundException)) {
                ex.printStackTrace(line.getErr());
            }
            return 2;
        });
        return cl.execute(args);
    }
}
